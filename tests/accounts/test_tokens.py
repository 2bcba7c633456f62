"""API tokens: hashed at rest, shown once, scoped, expiring, revocable; 401 without credentials, 403 without role."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from provenance.accounts import services
from provenance.accounts.models import ApiToken
from tests.factories import user_with_role

pytestmark = pytest.mark.django_db


def bearer(secret: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def test_a_token_is_stored_hashed_and_shown_once_on_the_page(client: Client) -> None:
    client.force_login(user_with_role("viewer"))

    created = client.post("/account/tokens/", {"name": "ci gate", "scope": "read", "days": 30})
    secret = created.content.decode().split('<pre class="mono">')[1].split("</pre>")[0]
    listed = client.get("/account/tokens/")
    row = ApiToken.objects.get()

    assert created.status_code == 201 and secret.startswith("prv_")
    assert secret not in listed.content.decode() and row.prefix in listed.content.decode()
    assert row.digest == hashlib.sha256(secret.encode()).hexdigest() and secret not in str(row.__dict__)
    assert timedelta(days=29) < row.expires_at - timezone.now() <= timedelta(days=30)


def test_the_api_answers_401_with_www_authenticate_and_one_error_shape() -> None:
    client = Client()
    none = client.get("/api/v1/artifacts/")
    junk = client.get("/api/v1/artifacts/", **bearer("prv_nothing_here"))
    malformed = client.get("/api/v1/artifacts/", HTTP_AUTHORIZATION="Bearer")

    for answer in (none, junk, malformed):
        assert answer.status_code == 401 and answer["WWW-Authenticate"] == 'Bearer realm="provenance"'
        assert set(answer.json()) == {"error", "detail"}
    assert none.json()["error"] == "not_authenticated"
    assert junk.json()["error"] == malformed.json()["error"] == "token_invalid"


def test_scope_role_expiry_and_revocation() -> None:
    client = Client()
    operator = user_with_role("operator")
    reader = services.create_token(operator, name="read", scope="read").secret
    writer = services.create_token(operator, name="write", scope="write").secret
    nobody = services.create_token(user_with_role(None, "no-role"), name="x", scope="write").secret
    body = {"name": "k", "pem": "not a key"}

    read_ok = client.get("/api/v1/sources/", **bearer(reader))
    read_writes = client.post("/api/v1/policies/dry-run/", {"source": "x"}, content_type="application/json",
                              **bearer(reader))
    write_ok = client.post("/api/v1/policies/dry-run/", {"source": "x"}, content_type="application/json",
                           **bearer(writer))
    beyond_role = client.post("/api/v1/public-keys/", body, content_type="application/json", **bearer(writer))
    no_role = client.get("/api/v1/sources/", **bearer(nobody))

    assert read_ok.status_code == 200
    assert read_writes.status_code == 403 and read_writes.json()["error"] == "token_scope"
    assert write_ok.status_code == 400  # allowed through; the policy text itself is refused
    assert beyond_role.status_code == 403 and beyond_role.json()["error"] == "permission_denied"
    assert no_role.status_code == 403

    token = ApiToken.objects.get(name="read")
    assert token.last_used_at is not None
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/v1/sources/", **bearer(reader)).status_code == 401
    services.revoke_token(ApiToken.objects.get(name="write"))
    assert client.get("/api/v1/sources/", **bearer(writer)).status_code == 401


def test_tokens_over_the_api_are_created_shown_once_and_revoked_by_their_owner() -> None:
    client = Client()
    viewer = user_with_role("viewer")
    first = services.create_token(viewer, name="bootstrap", scope="write").secret
    other = services.create_token(user_with_role("viewer", "someone-else"), name="theirs").token

    created = client.post("/api/v1/tokens/", {"name": "pipeline", "scope": "read", "days": 7},
                          content_type="application/json", **bearer(first))
    listed = client.get("/api/v1/tokens/", **bearer(first))
    theirs = client.delete(f"/api/v1/tokens/{other.pk}/", **bearer(first))
    mine = client.delete(f"/api/v1/tokens/{created.json()['id']}/", **bearer(first))
    too_long = client.post("/api/v1/tokens/", {"name": "x", "days": 5000}, content_type="application/json",
                           **bearer(first))

    assert created.status_code == 201 and created.json()["token"].startswith("prv_")
    assert all("token" not in row for row in listed.json()["results"])
    assert {row["name"] for row in listed.json()["results"]} == {"bootstrap", "pipeline"}
    assert theirs.status_code == 404 and ApiToken.objects.get(pk=other.pk).revoked_at is None
    assert mine.status_code == 204 and ApiToken.objects.get(name="pipeline").revoked_at is not None
    assert too_long.status_code == 400
    assert client.get("/api/v1/tokens/", **bearer(created.json()["token"])).status_code == 401


def test_failed_logins_are_rate_limited(settings: object, client: Client) -> None:
    from django.core.cache import cache

    cache.clear()
    settings.PROVENANCE_LOGIN_ATTEMPTS = 3  # type: ignore[attr-defined]
    user_with_role("viewer", "target")
    answers = [client.post("/login/", {"username": "target", "password": "wrong"}).status_code for _ in range(3)]
    locked = client.post("/login/", {"username": "target", "password": "test-password"})
    basic = Client().get("/api/v1/sources/", HTTP_AUTHORIZATION="Basic dGFyZ2V0OnRlc3QtcGFzc3dvcmQ=")

    assert answers == [200, 200, 429]  # the third failure reaches the limit
    assert locked.status_code == 429 and b"Too many failed logins" in locked.content
    assert basic.status_code in (401, 403)  # the right password, refused while locked out
    cache.clear()
    assert client.post("/login/", {"username": "target", "password": "test-password"}).status_code == 302
