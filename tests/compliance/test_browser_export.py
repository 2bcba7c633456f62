"""Export from a filtered fleet page in a real browser: the downloaded CSV holds exactly the filtered rows."""

from __future__ import annotations

import csv
import io

import pytest

from provenance.artifacts.models import Artifact
from tests.factories import UserFactory
from tests.policies.fleet import APP_WORKFLOW, INTRUDER, make_fleet

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_export_from_the_filtered_fleet_page_holds_the_filtered_rows(browser, live_server, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    fleet = make_fleet()
    signed = [fleet.image("myorg/app", signers=(APP_WORKFLOW,), tag=f"v{i}") for i in range(3)]
    failed = fleet.image("myorg/tool", signers=(INTRUDER,))
    Artifact.objects.filter(pk=failed.pk).update(status="failed")
    UserFactory(username="alice")
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page.goto(f"{live_server.url}/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "test-password")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#artifact-table")
    page.click("a[href='?status=verified']")
    # A selector, not wait_for_function: the page's CSP forbids eval, which Playwright's polling uses.
    page.wait_for_selector("#fleet-export:has-text('verified')")
    with page.expect_download() as download:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))

    assert sorted(r["digest"] for r in rows) == sorted(a.digest for a in signed)
    assert {r["signature_status"] for r in rows} == {"verified"}
