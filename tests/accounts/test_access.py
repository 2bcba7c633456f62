"""Who may use what: every page and endpoint, walked from the URL configuration and the router, for anonymous,
viewer, operator and admin users; CSRF on every state change (htmx too)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from provenance.accounts import services as account_services
from provenance.accounts.models import AuditEvent
from provenance.artifacts.models import Artifact
from provenance.policies import services as policy_services
from provenance.sources import services as source_services
from provenance.trust import services as trust_services
from tests.factories import make_sigstore, trust_root_for, user_with_role

pytestmark = pytest.mark.django_db

DIGEST = "sha256:" + "ab" * 32
POLICY = """apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {name: walk-policy}
spec:
  images: [{glob: "registry.test/**"}]
  authorities: [{keyless: {url: "https://fulcio.test", identities: [{issuer: "https://issuer.test", subject: "me"}]}}]
"""
KEY_PEM = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

# (method, route name, required role; None: anyone). Every route of the URL configuration (but the Django admin,
# which needs staff) is listed here; a route missing from this table fails the test. The token the walk names is
# another user's: anyone may revoke their own (tests/accounts/test_tokens.py), only an admin someone else's.
PAGES = [
    ("GET", "healthz", None), ("GET", "login", None),
    ("GET", "dashboard", "viewer"), ("GET", "artifact-detail", "viewer"), ("GET", "artifact-trust", "viewer"),
    ("GET", "source-new", "operator"), ("POST", "source-new", "operator"),
    ("GET", "source-detail", "viewer"), ("POST", "source-scan", "operator"),
    ("GET", "trust", "viewer"), ("POST", "trust", "admin"),
    ("GET", "policy-list", "viewer"), ("GET", "policy-new", "operator"), ("POST", "policy-new", "operator"),
    ("GET", "policy-detail", "viewer"), ("POST", "policy-detail", "operator"), ("GET", "policy-export", "viewer"),
    ("POST", "policy-delete", "operator"), ("GET", "policy-jobs", "viewer"), ("GET", "coverage", "viewer"),
    ("GET", "tokens", "viewer"), ("POST", "tokens", "viewer"), ("POST", "token-revoke", "admin"),
    ("GET", "users", "admin"), ("POST", "users", "admin"), ("GET", "audit", "viewer"),
    ("GET", "git-source-list", "viewer"), ("GET", "git-source-new", "operator"), ("POST", "git-source-new", "operator"),
    ("GET", "git-source-detail", "viewer"), ("POST", "git-source-fetch", "operator"),
    ("GET", "git-commit-detail", "viewer"),
    ("GET", "monitor-events", "viewer"), ("GET", "monitor-logs", "viewer"), ("POST", "monitor-logs", "operator"),
    ("GET", "monitor-log-detail", "viewer"), ("POST", "monitor-log-detail", "operator"),
    ("GET", "monitor-identities", "viewer"), ("POST", "monitor-identities", "operator"),
    ("POST", "monitor-identity-delete", "operator"), ("GET", "monitor-allowlist", "viewer"),
    ("POST", "monitor-allowlist", "operator"), ("POST", "monitor-allowlist-delete", "operator"),
    ("GET", "monitor-rules", "viewer"), ("POST", "monitor-rules", "operator"), ("GET", "monitor-rule-detail", "viewer"),
    ("POST", "monitor-rule-detail", "operator"), ("POST", "monitor-rule-delete", "operator"),
    ("POST", "monitor-rule-test", "operator"),
    ("GET", "compliance", "viewer"), ("GET", "compliance-export", "viewer"),
    ("GET", "compliance-export-schema", "viewer"), ("GET", "compliance-pack", "viewer"),
    ("GET", "compliance-signing-key", "viewer"), ("POST", "compliance-signing-key-rotate", "admin"),
    ("GET", "artifact-vsa", "viewer"), ("POST", "artifact-vsa-push", "operator"),
]
API = [
    ("GET", "api-root", "viewer"), ("GET", "api-schema", "viewer"), ("GET", "api-docs", "viewer"),
    ("GET", "artifact-list", "viewer"), ("GET", "api:artifact-detail", "viewer"),
    ("GET", "source-list", "viewer"), ("POST", "source-list", "operator"), ("GET", "api:source-detail", "viewer"),
    ("POST", "api:source-scan", "operator"), ("GET", "source-tag-history", "viewer"),
    ("GET", "scan-list", "viewer"), ("GET", "scan-detail", "viewer"),
    ("GET", "trustroot-list", "viewer"), ("POST", "trustroot-list", "admin"), ("GET", "trustroot-detail", "viewer"),
    ("POST", "trustroot-initialize", "admin"), ("POST", "trustroot-refresh", "admin"),
    ("GET", "api:policy-list", "viewer"), ("POST", "api:policy-list", "operator"),
    ("GET", "policy-coverage", "viewer"), ("POST", "policy-dry-run", "operator"), ("GET", "policy-verdict", "viewer"),
    ("GET", "api:policy-detail", "viewer"), ("PUT", "api:policy-detail", "operator"),
    ("PATCH", "api:policy-detail", "operator"), ("DELETE", "api:policy-detail", "operator"),
    ("GET", "api:policy-export", "viewer"),
    ("GET", "publickey-list", "viewer"), ("POST", "publickey-list", "admin"), ("GET", "publickey-detail", "viewer"),
    ("DELETE", "publickey-detail", "admin"),
    ("GET", "apitoken-list", "viewer"), ("POST", "apitoken-list", "viewer"), ("GET", "apitoken-detail", "admin"),
    ("DELETE", "apitoken-detail", "admin"),
    ("GET", "auditevent-list", "viewer"), ("GET", "auditevent-detail", "viewer"),
    ("GET", "api-check", "viewer"), ("POST", "api-admission", "viewer"),
    ("GET", "gitsource-list", "viewer"), ("POST", "gitsource-list", "operator"), ("GET", "gitsource-detail", "viewer"),
    ("POST", "gitsource-fetch", "operator"), ("GET", "commit-list", "viewer"), ("GET", "commit-detail", "viewer"),
    ("GET", "event-list", "viewer"), ("GET", "event-detail", "viewer"),
    ("GET", "monitoredlog-list", "viewer"), ("POST", "monitoredlog-list", "operator"),
    ("GET", "monitoredlog-detail", "viewer"),
    ("GET", "watchedidentity-list", "viewer"), ("POST", "watchedidentity-list", "operator"),
    ("GET", "watchedidentity-detail", "viewer"), ("DELETE", "watchedidentity-detail", "operator"),
    ("GET", "alertrule-list", "viewer"), ("POST", "alertrule-list", "operator"), ("GET", "alertrule-detail", "viewer"),
    ("PUT", "alertrule-detail", "operator"), ("PATCH", "alertrule-detail", "operator"),
    ("DELETE", "alertrule-detail", "operator"), ("POST", "alertrule-send-test", "operator"),
    ("GET", "delivery-list", "viewer"), ("GET", "delivery-detail", "viewer"),
    ("GET", "api-compliance-export", "viewer"), ("GET", "api-compliance-pack", "viewer"),
    ("GET", "api-compliance-report", "viewer"), ("GET", "api-compliance-signing-key", "viewer"),
    ("GET", "api-artifact-vsa", "viewer"),
]
LAST = [("POST", "logout", None)]  # last: it ends the session
RANK = {None: 0, "viewer": 1, "operator": 2, "admin": 3}


def _routes() -> Iterator[tuple[str, str, str, object]]:
    """(key, route regex, kind, callback) for every route; the API's are keyed ``api:name`` where names clash."""
    def walk(patterns: list, prefix: str) -> Iterator[tuple[str, object, str]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if str(pattern.pattern) == "admin/":
                    continue
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and "format" not in str(pattern.pattern):
                yield prefix + str(pattern.pattern), pattern.callback, pattern.name or ""
    page_names = {name for _, name, _ in PAGES}
    for route, callback, name in walk(get_resolver().url_patterns, ""):
        kind = "api" if route.startswith("api/") and name != "api-docs" else "page"  # the docs: a page for people
        key = f"api:{name}" if kind == "api" and name in page_names else name
        yield key, route, kind, callback


@pytest.fixture
def world() -> dict[str, str]:
    """One of everything a URL can name, and the values its parameters take."""
    root = trust_root_for(make_sigstore())
    source = source_services.create_source(name="walk", kind="image", location="registry.test/app:1", trust_root=root)
    scan = source_services.start_scan(source)
    Artifact.objects.create(source=source, repository="registry.test/app", digest=DIGEST)
    policy = policy_services.save_policy(POLICY)
    trust_services.add_public_key(name="walk-key", pem=KEY_PEM)
    owner = user_with_role("viewer", "token-owner")
    token = account_services.create_token(owner, name="walk").token
    event = AuditEvent.objects.first()
    assert event is not None
    return {"digest": DIGEST, "pk_source": str(source.pk), "pk_scan": str(scan.pk), "pk_policy": str(policy.pk),
            "name_root": root.name, "name_key": "walk-key", "pk_token": str(token.pk), "pk_audit": str(event.pk)}


def _url(key: str, route: str, world: dict[str, str]) -> str:
    resource = key.split(":")[-1].split("-")[0]
    values = {"digest": world["digest"], "name": world["name_key"] if resource == "publickey" else world["name_root"]}
    pk = {"source": "pk_source", "scan": "pk_scan", "policy": "pk_policy", "apitoken": "pk_token",
          "token": "pk_token", "auditevent": "pk_audit"}.get(resource, "pk_source")
    values["pk"] = world[pk]
    path = route
    while (start := path.find("(?P<")) >= 0:  # a regex group: replace it, nested parentheses and all
        name = path[start + 4:path.index(">", start)]
        depth, end = 0, start
        for end in range(start, len(path)):
            depth += {"(": 1, ")": -1}.get(path[end], 0)
            if depth == 0:
                break
        path = path[:start] + values[name] + path[end + 1:]
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], path)
    return "/" + path.replace("^", "").replace("$", "")


def test_the_table_lists_every_route_and_method() -> None:
    declared = {(m, n) for m, n, _ in PAGES + API + LAST}
    names = {n for _, n, _ in PAGES + API + LAST}
    missing = set()
    for key, _, _, callback in _routes():
        actions = getattr(callback, "actions", None)
        if actions:  # a viewset route: each of its methods (DRF adds HEAD, GET's twin, on a first request)
            missing |= {(m.upper(), key) for m in actions if m != "head" and (m.upper(), key) not in declared}
        elif key not in names:
            missing.add(("*", key))
    assert missing == set(), f"routes without a declared role: {sorted(missing)}"


@pytest.mark.parametrize("persona", [None, "viewer", "operator", "admin"])
def test_every_page_and_endpoint_answers_as_its_role_says(persona: str | None, world: dict[str, str]) -> None:
    client = Client()
    if persona is not None:
        client.force_login(user_with_role(persona))
    routes = {key: (route, kind) for key, route, kind, _ in _routes()}
    wrong = []
    for method, key, role in PAGES + API + LAST:
        route, kind = routes[key]
        url = _url(key, route, world)
        sid = transaction.savepoint()
        try:
            response = client.generic(method, url, data="{}", content_type="application/json")
        finally:
            transaction.savepoint_rollback(sid)
        status = response.status_code
        allowed = RANK[persona] >= RANK[role]
        if role is None:
            ok = status not in (401, 403) and not _to_login(response)
        elif persona is None:
            ok = (status == 401 and response.get("WWW-Authenticate", "").startswith("Bearer")
                  and _error(response) == "not_authenticated") if kind == "api" else _to_login(response)
        elif allowed:
            ok = status not in (401, 403) and not _to_login(response) and status < 500
        elif key == "apitoken-detail":  # another user's token is not even listed for them
            ok = status == 404
        else:
            ok = status == 403 and (kind != "api" or _error(response) == "permission_denied")
        if not ok:
            wrong.append(f"{method} {url} as {persona}: {status}")
    assert wrong == [], "\n".join(wrong)


def _error(response: object) -> str:
    """The error code of an API answer (``{"error": code, "detail": ...}``); the schema answers in YAML."""
    text = response.content.decode()  # type: ignore[attr-defined]
    try:
        return str(json.loads(text)["error"])
    except ValueError:
        return str(yaml.safe_load(text)["error"])


def _to_login(response: object) -> bool:
    return getattr(response, "status_code", 0) == 302 and response["Location"].startswith("/login/")  # type: ignore[index]


def test_every_state_change_needs_the_csrf_token(world: dict[str, str]) -> None:
    """A session (browser) without the CSRF token changes nothing, for pages, htmx requests and the API alike."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with_role("admin"))
    routes = {key: (route, kind) for key, route, kind, _ in _routes()}
    unprotected = []
    for method, key, role in PAGES + API + LAST:
        if method == "GET" or (role is None and key != "logout"):
            continue
        url = _url(key, routes[key][0], world)
        for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
            before = AuditEvent.objects.count()
            response = client.generic(method, url, data="{}", content_type="application/json", **headers)
            if response.status_code != 403 or AuditEvent.objects.count() != before:
                unprotected.append(f"{method} {url} {headers}: {response.status_code}")
    assert unprotected == []


def test_with_the_token_a_session_change_goes_through() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with_role("viewer"))
    client.get("/account/tokens/")
    token = client.cookies["csrftoken"].value

    created = client.post("/api/v1/tokens/", {"name": "ci"}, content_type="application/json",
                          HTTP_X_CSRFTOKEN=token)

    assert created.status_code == 201 and created.json()["token"].startswith("prv_")
