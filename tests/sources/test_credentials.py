"""Registry credentials: encrypted at rest, never shown or logged; basic and bearer registries; wrong
credentials fail the source clearly and lose nothing."""

from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet

from provenance.artifacts.models import Artifact, Evidence, Tag
from provenance.core.credentials import CredentialBox, CredentialsError
from provenance.sources import services
from provenance.sources.models import Scan, Source
from provenance.sources.tasks import scan_source
from tests.factories import UserFactory, make_sigstore, trust_root_for
from tests.plugins.registry import CosignCli, RegistryServer, make_image, push_image, unique_repository

pytestmark = pytest.mark.django_db


def run(source: Source) -> Scan:
    scan = Scan.objects.create(source=source)
    scan_source.apply(args=[scan.pk])
    scan.refresh_from_db()
    return scan


def authed_source(server: RegistryServer, repo: str, password: str | None = None) -> Source:
    return services.create_source(
        name=f"auth-{repo}", kind=Source.Kind.REPOSITORY, location=f"{server.host}/{repo}", is_insecure=True,
        trust_root=trust_root_for(make_sigstore()), username=server.username or "",
        password=server.password if password is None else password,
    )


@pytest.mark.integration
@pytest.mark.parametrize("server_fixture", ["basic_auth_registry", "token_auth_registry"])
def test_authenticated_registries_are_ingested_with_stored_credentials(
    request: pytest.FixtureRequest, server_fixture: str, cosign_cli: CosignCli, caplog: pytest.LogCaptureFixture,
    client,
) -> None:
    server: RegistryServer = request.getfixturevalue(server_fixture)
    repo = unique_repository("auth")
    with server.authed_client() as registry_client:
        digest = push_image(registry_client, repo, make_image(), "v1")
    cosign_cli.sign(f"{server.host}/{repo}@{digest}", "--registry-username", server.username,
                    "--registry-password", server.password)
    source = authed_source(server, repo)
    caplog.set_level(logging.DEBUG)

    scan = run(source)

    assert (scan.state, scan.errors) == (Scan.State.DONE, 0), scan.problems
    assert Evidence.objects.get(artifact__source=source).covers_digest == str(digest)
    source.refresh_from_db()
    assert source.has_credentials and server.password not in source.encrypted_password
    assert server.password not in caplog.text
    client.force_login(UserFactory())
    for url in (f"/api/v1/sources/{source.pk}/", f"/sources/{source.pk}/", "/api/v1/scans/"):
        body = client.get(url).content.decode()
        assert server.password not in body and source.encrypted_password not in body, url
    assert client.get(f"/api/v1/sources/{source.pk}/").json()["has_credentials"] is True


@pytest.mark.integration
@pytest.mark.parametrize("server_fixture", ["basic_auth_registry", "token_auth_registry"])
def test_wrong_credentials_fail_the_source_clearly_and_lose_nothing(
    request: pytest.FixtureRequest, server_fixture: str
) -> None:
    server: RegistryServer = request.getfixturevalue(server_fixture)
    repo = unique_repository("wrong")
    with server.authed_client() as registry_client:
        push_image(registry_client, repo, make_image(), "v1")
    source = authed_source(server, repo)
    assert run(source).state == Scan.State.DONE
    before = (list(Artifact.objects.filter(source=source).values_list("digest", "status")),
              list(Tag.objects.filter(artifact__source=source).values_list("name", flat=True)))

    services.set_credentials(source, username=server.username or "", password="not-the-password")
    scan = run(source)

    assert (scan.state, scan.error_code) == (Scan.State.FAILED, "authentication_failed")
    source.refresh_from_db()
    assert source.last_error.startswith("authentication_failed: authentication failed for")
    assert "not-the-password" not in source.last_error + scan.error
    after = (list(Artifact.objects.filter(source=source).values_list("digest", "status")),
             list(Tag.objects.filter(artifact__source=source).values_list("name", flat=True)))
    assert after == before and before[0]


def test_api_takes_credentials_but_never_returns_them(client) -> None:
    root = trust_root_for(make_sigstore())
    client.force_login(UserFactory())
    response = client.post("/api/v1/sources/", {
        "name": "private", "kind": "repository", "location": "registry.example.test/team/app", "trust_root": root.name,
        "username": "robot", "password": "s3cret-token", "tag_pattern": "v*",
    }, content_type="application/json")
    assert response.status_code == 201, response.content
    assert "s3cret-token" not in response.content.decode() and "robot" not in response.content.decode()
    assert response.json()["has_credentials"] is True
    source = Source.objects.get(name="private")
    assert services.credential_box().decrypt(source.encrypted_password) == "s3cret-token"


def test_the_form_never_renders_a_stored_password(client) -> None:
    client.force_login(UserFactory())
    root = trust_root_for(make_sigstore())
    response = client.post("/sources/new/", {
        "name": "form", "kind": "image", "location": "127.0.0.1:9/app:v1", "trust_root": root.pk,
        "username": "robot", "password": "hunter2-form", "is_insecure": "on", "is_scheduled": "on",
    })
    assert response.status_code == 302
    source = Source.objects.get(name="form")
    assert source.has_credentials
    page = client.get("/sources/new/").content.decode() + client.get(f"/sources/{source.pk}/").content.decode()
    assert "hunter2-form" not in page and source.encrypted_password not in page
    assert "credentials stored (encrypted)" in page


def test_credentials_are_refused_without_a_key_outside_debug(settings) -> None:
    settings.DEBUG = settings.DEMO = settings.TESTING = False
    settings.PROVENANCE_FERNET_KEY = ""
    root = trust_root_for(make_sigstore())
    with pytest.raises(CredentialsError) as caught:
        services.create_source(name="nokey", kind=Source.Kind.IMAGE, location="registry.example.test/app:v1",
                               trust_root=root, username="robot", password="pw")
    assert caught.value.code == "credentials_key_missing" and "PROVENANCE_FERNET_KEY" in caught.value.message
    assert not Source.objects.filter(name="nokey").exists()  # nothing half-stored

    settings.PROVENANCE_FERNET_KEY = "not a key"
    with pytest.raises(CredentialsError) as invalid:
        services.credential_box()
    assert invalid.value.code == "credentials_key_invalid" and "not a key" not in invalid.value.message

    key = Fernet.generate_key().decode()
    settings.PROVENANCE_FERNET_KEY = key
    source = services.create_source(name="withkey", kind=Source.Kind.IMAGE, location="registry.example.test/a:1",
                                    trust_root=root, username="robot", password="pw")
    assert CredentialBox([key]).decrypt(source.encrypted_password) == "pw"


def test_keys_rotate_and_a_lost_key_is_a_clear_error(settings) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = CredentialBox([old]).encrypt("pw")
    assert CredentialBox([new, old]).decrypt(token) == "pw"
    assert CredentialBox([new, old]).encrypt("pw") != token
    with pytest.raises(CredentialsError) as caught:
        CredentialBox([new]).decrypt(token)
    assert caught.value.code == "credentials_undecryptable"
    assert "hidden" in repr(CredentialBox([new]))

    settings.PROVENANCE_FERNET_KEY = old
    source = services.create_source(name="rotated", kind=Source.Kind.IMAGE, location="127.0.0.1:9/app:1",
                                    trust_root=trust_root_for(make_sigstore()), username="u", password="pw",
                                    is_insecure=True)
    settings.PROVENANCE_FERNET_KEY = new
    scan = run(source)
    assert (scan.state, scan.error_code) == (Scan.State.FAILED, "credentials_undecryptable")


def test_the_admin_never_shows_stored_credentials(admin_client) -> None:
    source = services.create_source(name="admin-view", kind=Source.Kind.IMAGE, location="127.0.0.1:9/app:1",
                                    trust_root=trust_root_for(make_sigstore()), username="robot",
                                    password="admin-secret", is_insecure=True)
    page = admin_client.get(f"/admin/sources/source/{source.pk}/change/").content.decode()
    assert "robot" in page
    assert "admin-secret" not in page and source.encrypted_password not in page
