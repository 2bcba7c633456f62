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


# -- the fleet: places, search, pages, widths ---------------------------------------------------------------------


def _login(browser, live_server, *, width: int = 1366, javascript: bool = True):
    from tests.factories import UserFactory

    user = UserFactory(username="fleet-viewer")
    context = browser.new_context(viewport={"width": width, "height": 800}, java_script_enabled=javascript)
    page = context.new_page()
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "test-password")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#artifact-table")
    return page


def _no_horizontal_overflow(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def _shared_digest_fleet():
    from provenance.artifacts.models import Artifact
    from tests.artifacts.test_fleet_page import fill, make_source
    from tests.artifacts.test_places import DIGEST

    ghcr = make_source("ghcr", "ghcr.io/acme/app:v1")
    mirror = make_source("mirror", "registry.example/mirror/app:v1")
    good = Artifact.objects.create(source=ghcr, repository="acme/app", digest=DIGEST, status="verified")
    bad = Artifact.objects.create(source=mirror, repository="mirror/app", digest=DIGEST, status="failed",
                                  status_code="identity_mismatch", status_reason="signed by someone else")
    fill(ghcr, 620)
    return good, bad


def test_search_filters_live_and_without_javascript(browser, live_server):
    _shared_digest_fleet()
    page = _login(browser, live_server)
    assert "620" not in page.inner_text("#fleet-total") and "622" in page.inner_text("#fleet-total")
    page.fill("input[name=repository_prefix]", "mirror/")
    page.wait_for_selector("#fleet-total b:text-is('1')")  # selectors: the CSP forbids wait_for_function's eval
    page.wait_for_url("**/?*repository_prefix=mirror%2F*")
    table = page.inner_text("#artifact-table")
    assert "mirror/app" in table and "registry.example" in table and "✘ failed" in table
    page.select_option("select[name=status]", "verified")
    page.wait_for_selector("#fleet-total b:text-is('0')")
    page.context.close()
    # no JavaScript: the same form is a plain GET
    plain = _login(browser, live_server, javascript=False)
    plain.fill("input[name=repository_prefix]", "acme/app")
    plain.click("#fleet-search button[type=submit]")
    plain.wait_for_url("**/?*repository_prefix=acme%2Fapp*")
    assert plain.inner_text("#fleet-total").startswith("1 ") and "ghcr.io" in plain.inner_text("#artifact-table")
    plain.context.close()


def test_pages_past_500(browser, live_server):
    _shared_digest_fleet()
    page = _login(browser, live_server)
    seen: set[str] = set()
    for _ in range(7):
        # places, not digests: the shared digest is listed twice, once per place
        places = page.eval_on_selector_all("#artifact-table td.digest a", "els => els.map(e => e.getAttribute('href'))")
        assert places and not seen & set(places)
        seen |= set(places)
        if page.query_selector("a[rel=next]") is None:
            break
        page.click("a[rel=next]")
        page.wait_for_selector(f'#artifact-table td.digest a[href="{places[0]}"]', state="detached")
    assert len(seen) == 622 and page.query_selector("a[rel=next]") is None and "cursor=" in page.url


def test_same_digest_in_two_repositories_is_two_pages(browser, live_server):
    good, bad = _shared_digest_fleet()
    page = _login(browser, live_server)
    page.goto(f"{live_server.url}/artifacts/{good.digest}/")
    places = page.inner_text("#digest-places")
    assert "ghcr.io/acme/app" in places and "registry.example/mirror/app" in places
    page.click(f"#digest-places a[href='/artifacts/{bad.pk}/']")
    page.wait_for_url(f"**/artifacts/{bad.pk}/")
    assert "✘ failed" in page.inner_text("#trust-panel") and "someone else" in page.inner_text("#trust-panel")
    page.click(f"#also-in a[href='/artifacts/{good.pk}/']")
    page.wait_for_url(f"**/artifacts/{good.pk}/")
    assert "✔ verified" in page.inner_text("#trust-panel") and "ghcr.io/acme/app@" in page.inner_text("#place-name")
    page.context.close()


@pytest.mark.parametrize("width", [390, 1366])
def test_artifact_and_fleet_pages_fit_the_window(browser, live_server, demo, width):
    from provenance.artifacts.models import Artifact

    page = _login(browser, live_server, width=width)
    assert _no_horizontal_overflow(page), "fleet page"
    if width >= 1366:  # wide enough: the fleet table itself fits, every column in view without scrolling it
        assert page.eval_on_selector("#artifact-table .table-wide", "e => e.scrollWidth <= e.clientWidth")
    icon = page.evaluate("fetch(document.querySelector('link[rel=icon]').href)"
                         ".then(r => r.status + r.headers.get('content-type'))")
    assert icon.startswith("200image/svg"), icon  # the favicon is ours, served locally
    for tag in ("signed", "wrong-identity", "multiarch"):
        image = next(i for i in demo.images if i.tag == tag)
        artifact = Artifact.objects.get(digest=str(image.digest), parent__isnull=True)
        page.goto(f"{live_server.url}/artifacts/{artifact.pk}/")
        page.wait_for_selector("#trust-panel")
        assert _no_horizontal_overflow(page), (tag, width, page.evaluate("document.documentElement.scrollWidth"))
        if os.environ.get("PROVENANCE_SCREENSHOT_DIR"):
            page.screenshot(path=f"{os.environ['PROVENANCE_SCREENSHOT_DIR']}/artifact-{tag}-{width}.png",
                            full_page=True)
    # the pictures render (drawn bars, sized to the window) and fit too
    page.goto(f"{live_server.url}/coverage/")
    for chart in ("#coverage-chart", "#verdict-chart"):
        box = page.eval_on_selector(f"{chart} svg", "e => e.getBoundingClientRect().width")
        drawn = page.eval_on_selector_all(f"{chart} rect.segment", "els => els.filter(e => e.getBBox().width > 0)"
                                          ".length")
        assert 300 < box <= width and drawn >= 2, (chart, box, drawn)
    assert _no_horizontal_overflow(page), "coverage page"
    page.context.close()
