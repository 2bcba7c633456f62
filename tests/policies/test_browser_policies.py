"""The policy import page in a real browser: the dry-run preview swaps in with htmx, then saving works."""

from __future__ import annotations

import pytest

from provenance.policies.models import Policy
from tests.factories import UserFactory
from tests.policies.fleet import APP_WORKFLOW, INTRUDER, issue_policy, make_fleet

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

def test_preview_then_save_a_policy(browser, live_server):
    fleet = make_fleet()
    fleet.image("myorg/app", signers=(APP_WORKFLOW,))
    fleet.image("myorg/tool", signers=(INTRUDER,))
    UserFactory(username="alice")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/policies/new/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "test-password")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#policy-form")
    page.fill("#id_source", issue_policy())
    page.click("button[value=preview]")
    # A selector, not wait_for_function: the page's CSP forbids eval, which Playwright's polling uses.
    page.wait_for_selector("#dry-run:has-text('Dry run')")
    assert page.url.endswith("/policies/new/")  # swapped in place, no navigation
    preview = page.inner_text("#dry-run")
    assert "2 would change status" in preview and "someone-else" in preview
    assert not Policy.objects.exists()

    page.fill("#id_source", issue_policy().replace("default allow = false", "default allow = = false"))
    page.click("button[value=preview]")
    page.wait_for_selector("#policy-error")
    assert "line 23" in page.inner_text("#policy-error")

    page.fill("#id_source", issue_policy())
    page.click("button[value=save]")
    page.wait_for_url("**/policies/*/")
    assert "require-sigstore-signatures" in page.inner_text("h1")
    assert Policy.objects.get().version == 1
    page.close()
