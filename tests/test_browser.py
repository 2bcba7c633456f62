"""Pages in a real browser: Debian's Chromium driven by Playwright against a live server on 127.0.0.1."""

from __future__ import annotations

import os

import pytest

from provenance.sources import services
from provenance.sources.demo import load_demo

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

@pytest.fixture
def demo(settings, tmp_path):
    loaded = load_demo(tmp_path)
    services.claim_scan(loaded.scan.pk)
    services.run_scan(loaded.scan.pk)  # in-process: this test is about pages, the worker has its own test
    return loaded


def test_fleet_page_and_artifact_page_show_verdicts_and_reasons(browser, live_server, demo):
    page = browser.new_page(viewport={"width": 1280, "height": 760})  # the README screenshot's size
    page.goto(f"{live_server.url}/")
    page.fill("#id_username", demo.username)
    page.fill("#id_password", demo.password)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#artifact-table")
    table = page.inner_text("#artifact-table")
    assert "demo-fleet" in table
    assert table.count("✔ verified") >= 2 and "✘ failed" in table and "○ unsigned" in table
    if os.environ.get("PROVENANCE_SCREENSHOT"):
        page.screenshot(path=os.environ["PROVENANCE_SCREENSHOT"])

    # htmx: filtering swaps only the table and pushes the URL
    page.click("a[href='?status=failed']")
    page.wait_for_url("**/?status=failed")
    # A selector, not wait_for_function: the page's CSP forbids eval, which Playwright's polling uses.
    page.wait_for_selector("#artifact-table:not(:has-text('✔ verified'))")
    assert "wrong-identity" in page.inner_text("#artifact-table")

    wrong = next(i for i in demo.images if i.tag == "wrong-identity")
    page.goto(f"{live_server.url}/artifacts/{wrong.digest}/")
    panel = page.inner_text("#trust-panel")
    assert "✘ failed" in panel and "someone-else" in panel

    signed = next(i for i in demo.images if i.tag == "signed")
    page.goto(f"{live_server.url}/artifacts/{signed.digest}/")
    body = page.inner_text("main")
    assert "✔ verified" in page.inner_text("#trust-panel")
    assert "https://slsa.dev/provenance/v1" in body and "inclusion promised" in body
    graph = page.inner_text("#attestation-graph")
    assert "https://github.com/actions/runner/github-hosted" in graph and "SBOM, 1 component" in graph
    assert "openssl" in page.inner_text("#sbom")
    if os.environ.get("PROVENANCE_ARTIFACT_SCREENSHOT"):
        page.screenshot(path=os.environ["PROVENANCE_ARTIFACT_SCREENSHOT"], full_page=True)
    page.close()


def test_pages_require_login(client, live_server):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
