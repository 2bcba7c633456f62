"""Web hardening: a CSP without inline script that htmx works under (real Chromium), no framing, HSTS behind TLS,
`check --deploy` clean with production settings, and a trust-root refresh that honours PROVENANCE_SIGSTORE_TUF."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from provenance.sources import services
from provenance.sources.demo import load_demo
from provenance.trust.models import TrustRoot
from tests.factories import UserFactory, user_with_role

ROOT = Path(__file__).resolve().parents[2]
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[^>]+\s(on[a-z]+|hx-on[:-][^=\s]*)\s*=", re.IGNORECASE)


def test_templates_have_no_inline_script_or_event_handlers() -> None:
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        assert not INLINE_SCRIPT.search(text), f"inline <script> in {path}"
        assert not EVENT_HANDLER.search(text), f"inline event handler in {path}"
        assert "javascript:" not in text, path


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/login/", "/", "/api/docs/", "/admin/login/", "/api/v1/"])
def test_every_page_has_the_csp_and_refuses_framing(client, url) -> None:
    client.force_login(UserFactory())
    response = client.get(url)
    policy = response["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    # Only the API docs page (Swagger UI) may apply inline styles; no page may run inline script or eval.
    assert ("'unsafe-inline'" in policy) is (url == "/api/docs/") and "unsafe-eval" not in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
def test_the_api_docs_page_loads_its_script_as_a_file(client) -> None:
    client.force_login(UserFactory())
    page = client.get("/api/docs/").content.decode()
    assert not INLINE_SCRIPT.search(page)
    script = re.search(r'<script src="([^"]*script=[^"]*)"', page)
    assert script is not None
    answer = client.get(script.group(1).replace("&amp;", "&"))
    assert answer.status_code == 200 and answer["Content-Type"].startswith("application/javascript")


@pytest.mark.django_db
def test_hsts_is_sent_on_https_only(settings) -> None:
    settings.SECURE_HSTS_SECONDS = 31_536_000
    assert "Strict-Transport-Security" not in Client().get("/healthz")
    sts = Client().get("/healthz", secure=True)["Strict-Transport-Security"]
    assert sts == "max-age=31536000; includeSubDomains; preload"


def _production(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PROVENANCE_")
           and k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    return {**env, "SECRET_KEY": "x" * 60 + "production-like-secret-key-for-the-deploy-check",
            "DJANGO_SETTINGS_MODULE": "provenance.settings", "ALLOWED_HOSTS": "provenance.example.com",
            "PROVENANCE_DATA_DIR": extra.pop("data_dir"), **extra}


@pytest.mark.parametrize("behind_proxy", ["0", "1"])
def test_check_deploy_is_clean_with_production_settings(tmp_path, behind_proxy) -> None:
    env = _production(data_dir=str(tmp_path), PROVENANCE_BEHIND_PROXY=behind_proxy)
    security = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--tag", "security",
                               "--fail-level", "WARNING"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
    assert security.returncode == 0 and "no issues" in security.stdout, security.stdout + security.stderr
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    # Every check, not only security's: nothing but OpenAPI schema-generation notes (drf_spectacular.*), which
    # describe the API document, not the deployment.
    issues = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("?: (")]
    assert [i for i in issues if not i.startswith("?: (drf_spectacular.")] == [], done.stdout + done.stderr


def test_production_defaults_are_closed(tmp_path) -> None:
    probe = ("from django.conf import settings as s; import django; django.setup(); "
             "print(s.DEBUG, s.PROVENANCE_ALLOW_PRIVATE_REGISTRIES, s.PROVENANCE_LAYOUT_DIRS, s.SECURE_HSTS_SECONDS,"
             " s.SESSION_COOKIE_SECURE)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=_production(data_dir=str(tmp_path)),
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False", "[]", "31536000", "True"], done.stderr


@pytest.mark.django_db
def test_the_trust_root_refresh_honours_the_tuf_setting(client, settings) -> None:
    row = TrustRoot.objects.create(name="tuf-root", document="{}", tuf_url="https://tuf.invalid/")
    settings.PROVENANCE_SIGSTORE_TUF = False
    client.force_login(user_with_role("operator"))
    assert client.post(f"/api/v1/trust-roots/{row.name}/refresh/").status_code == 403
    client.force_login(user_with_role("admin"))
    response = client.post(f"/api/v1/trust-roots/{row.name}/refresh/")
    assert response.status_code == 409
    assert response.json()["error"] == "tuf_disabled" and "PROVENANCE_SIGSTORE_TUF" in response.json()["detail"]
    row.refresh_from_db()
    assert row.refresh_error == ""  # nothing was tried


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_pages_and_htmx_work_under_the_csp_in_chromium(browser, live_server, tmp_path) -> None:
    demo = load_demo(tmp_path)
    services.claim_scan(demo.scan.pk)
    services.run_scan(demo.scan.pk)
    page = browser.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text or "Refused to" in message.text else None)
    page.goto(f"{live_server.url}/")
    page.fill("#id_username", demo.username)
    page.fill("#id_password", demo.password)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#artifact-table")
    page.click("a[href='?status=failed']")  # an htmx swap
    page.wait_for_url("**/?status=failed")
    page.wait_for_selector("#artifact-table:not(:has-text('✔ verified'))")  # no eval: the CSP forbids it
    assert page.evaluate("typeof htmx") == "object" and page.evaluate("htmx.config.allowEval") is False
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info", timeout=15_000)
    assert violations == []
    page.close()
