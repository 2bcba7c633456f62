"""RegistryClient against a real registry (distribution 2.8) and, for failures on demand, a scripted server."""

from __future__ import annotations

import json
import time

import pytest

from provenance.core.errors import (
    AuthenticationError,
    MalformedEvidenceError,
    NotFoundError,
    RegistryError,
    TransientError,
)
from provenance.core.oci import MANIFEST_ACCEPT, Manifest, Registry, RegistryClient, load_json_object
from provenance.core.types import Digest, MediaType
from tests.plugins.registry import (
    RegistryServer,
    Scripted,
    ScriptedServer,
    make_image,
    make_index,
    push_image,
    unique_repository,
)

# --------------------------------------------------------------------------------------------------------------
# Against the real registry


@pytest.mark.integration
def test_reads_pushed_image_by_tag_and_by_digest(registry: RegistryServer) -> None:
    repo, image = unique_repository(), make_image()
    with registry.client() as client:
        pushed = push_image(client, repo, image, "v1")
        by_tag = client.get_manifest(repo, "v1")
        by_digest = client.get_manifest(repo, pushed)
        by_digest_string = client.get_manifest(repo, str(pushed))

    assert pushed == image.digest
    assert isinstance(by_tag, Manifest)
    assert by_tag.digest == by_digest.digest == by_digest_string.digest == image.digest
    assert by_tag.data == image.manifest
    assert by_tag.media_type == MediaType.OCI_MANIFEST
    assert not by_tag.is_index
    assert by_tag.config is not None and by_tag.config.digest == Digest.of(image.config)
    assert [layer.digest for layer in by_tag.layers] == [Digest.of(image.layer)]
    assert by_tag.json["schemaVersion"] == 2


@pytest.mark.integration
def test_reads_docker_v2_manifest(registry: RegistryServer) -> None:
    repo, image = unique_repository(), make_image(media_type=MediaType.DOCKER_MANIFEST)
    with registry.client() as client:
        push_image(client, repo, image, "docker")
        manifest = client.get_manifest(repo, "docker")
    assert manifest.media_type == MediaType.DOCKER_MANIFEST
    assert manifest.digest == image.digest


@pytest.mark.integration
def test_reads_index_and_its_children(registry: RegistryServer) -> None:
    repo = unique_repository()
    amd64, arm64 = make_image(), make_image()
    index = make_index((amd64, "linux/amd64"), (arm64, "linux/arm64"))
    with registry.client() as client:
        push_image(client, repo, amd64)
        push_image(client, repo, arm64)
        index_digest = client.push_manifest(repo, "multi", index, MediaType.OCI_INDEX)
        manifest = client.get_manifest(repo, "multi")
        children = [client.get_manifest(repo, child.digest) for child in manifest.manifests]

    assert manifest.is_index and manifest.digest == index_digest == Digest.of(index)
    assert [child.digest for child in children] == [amd64.digest, arm64.digest]
    assert [dict(d.platform or {}) for d in manifest.manifests] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64"},
    ]


@pytest.mark.integration
def test_head_manifest_returns_digest_or_none(registry: RegistryServer) -> None:
    repo, image = unique_repository(), make_image()
    with registry.client() as client:
        push_image(client, repo, image, "v1")
        assert client.head_manifest(repo, "v1") == image.digest
        assert client.head_manifest(repo, image.digest) == image.digest
        assert client.head_manifest(repo, "absent") is None
        assert client.head_manifest(repo, Digest.of(b"nothing")) is None


@pytest.mark.integration
def test_heads_and_gets_reuse_one_kept_alive_connection(registry: RegistryServer, monkeypatch) -> None:
    """A HEAD's empty body is read to its end: otherwise each HEAD closed its connection and the next one
    opened another (a re-scan is mostly HEADs)."""
    from provenance.core import oci

    repo, image = unique_repository(), make_image()
    opened = []
    connect = oci._GuardedBackend.connect_tcp

    def counted(self, *args, **kwargs):
        opened.append(args)
        return connect(self, *args, **kwargs)

    with registry.client() as pusher:
        push_image(pusher, repo, image, "v1")
    monkeypatch.setattr(oci._GuardedBackend, "connect_tcp", counted)
    with registry.client() as client:
        for _ in range(10):
            assert client.head_manifest(repo, "v1") == image.digest
            assert client.head_manifest(repo, "absent") is None
            assert client.get_manifest(repo, image.digest).digest == image.digest
    assert len(opened) == 1


@pytest.mark.integration
def test_a_conditional_get_answers_none_while_the_tag_names_the_known_digest(registry: RegistryServer) -> None:
    repo, image, other = unique_repository(), make_image(), make_image()
    with registry.client() as client:
        push_image(client, repo, image, "v1")
        assert client.get_manifest_if_changed(repo, "v1", image.digest) is None  # 304 Not Modified
        moved = client.get_manifest_if_changed(repo, "v1", other.digest)
        assert moved is not None and moved.digest == image.digest and moved.data == image.manifest
        with pytest.raises(NotFoundError):
            client.get_manifest_if_changed(repo, "absent", image.digest)


def test_a_registry_that_ignores_the_condition_just_sends_the_manifest(fake_registry: ScriptedServer) -> None:
    image = make_image()
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(200, image.manifest, {
        "Content-Type": image.media_type, "Docker-Content-Digest": str(image.digest)}))
    with fake_registry.client(allow_private=True) as client:
        manifest = client.get_manifest_if_changed("app", "v1", image.digest)
    assert manifest is not None and manifest.digest == image.digest
    assert fake_registry.requests[-1].headers["If-None-Match"] == f'"{image.digest}"'


@pytest.mark.integration
def test_lists_every_tag(registry: RegistryServer) -> None:
    repo, image = unique_repository(), make_image()
    with registry.client() as client:
        for tag in ("v1", "v2", "latest", f"{image.digest.tag_prefix}.sig"):
            push_image(client, repo, image, tag)
        tags = client.list_tags(repo)
    assert sorted(tags) == sorted(["v1", "v2", "latest", f"{image.digest.tag_prefix}.sig"])


@pytest.mark.integration
def test_missing_things_raise_not_found(registry: RegistryServer) -> None:
    repo, image = unique_repository(), make_image()
    with registry.client() as client:
        push_image(client, repo, image, "v1")
        with pytest.raises(NotFoundError, match="not found on"):
            client.get_manifest(repo, "absent")
        with pytest.raises(NotFoundError):
            client.get_manifest(repo, Digest.of(b"nothing"))
        with pytest.raises(NotFoundError):
            client.get_blob(repo, Digest.of(b"nothing"))
        with pytest.raises(NotFoundError):
            client.list_tags(unique_repository())


@pytest.mark.integration
def test_get_blob_returns_checked_bytes(registry: RegistryServer) -> None:
    repo, image = unique_repository(), make_image()
    with registry.client() as client:
        push_image(client, repo, image)
        assert client.get_blob(repo, Digest.of(image.layer)) == image.layer
        assert client.push_blob(repo, image.layer) == Digest.of(image.layer)  # already there: skipped


@pytest.mark.integration
def test_size_caps_apply_to_real_answers(registry: RegistryServer) -> None:
    repo, image = unique_repository(), make_image()
    with registry.client() as client:
        push_image(client, repo, image, "v1")
        with pytest.raises(MalformedEvidenceError) as blob_err:
            client.get_blob(repo, Digest.of(image.config), max_bytes=10)
    with registry.client(max_manifest_bytes=10) as small:
        with pytest.raises(MalformedEvidenceError) as manifest_err:
            small.get_manifest(repo, "v1")
    assert blob_err.value.code == manifest_err.value.code == "too_large"


@pytest.mark.integration
def test_registry_without_referrers_api_answers_none(registry: RegistryServer) -> None:
    repo, image = unique_repository(), make_image()
    with registry.client() as client:
        push_image(client, repo, image, "v1")
        assert client.referrers(repo, image.digest) is None


@pytest.mark.integration
def test_manifest_with_missing_blob_is_refused(registry: RegistryServer) -> None:
    repo, image = unique_repository(), make_image()
    with registry.client() as client, pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN"):
        client.push_manifest(repo, "v1", image.manifest, image.media_type)


@pytest.mark.integration
def test_push_manifest_by_wrong_digest_is_refused_locally(registry: RegistryServer) -> None:
    image = make_image()
    with registry.client() as client, pytest.raises(MalformedEvidenceError) as err:
        client.push_manifest(unique_repository(), Digest.of(b"other"), image.manifest, image.media_type)
    assert err.value.code == "digest_mismatch"


@pytest.mark.integration
def test_client_and_layout_share_the_registry_protocol(registry: RegistryServer) -> None:
    with registry.client() as client:
        assert isinstance(client, Registry)


# -- authentication against real registries ---------------------------------------------------------------------


@pytest.mark.integration
def test_basic_auth_with_credentials(basic_auth_registry: RegistryServer) -> None:
    repo, image = unique_repository(), make_image()
    with basic_auth_registry.authed_client() as client:
        push_image(client, repo, image, "v1")
        assert client.get_manifest(repo, "v1").digest == image.digest
        assert client.list_tags(repo) == ["v1"]


@pytest.mark.integration
def test_basic_auth_refuses_wrong_password_without_leaking_it(basic_auth_registry: RegistryServer) -> None:
    wrong = "not-the-password-4711"
    with basic_auth_registry.client(username="provenance", password=wrong) as client:
        with pytest.raises(AuthenticationError) as err:
            client.list_tags(unique_repository())
    assert str(err.value).startswith(f"authentication failed for {basic_auth_registry.host}")
    assert wrong not in str(err.value)
    assert wrong not in repr(client)


@pytest.mark.integration
def test_basic_auth_registry_refuses_anonymous_client(basic_auth_registry: RegistryServer) -> None:
    with basic_auth_registry.client() as client, pytest.raises(AuthenticationError, match="requires credentials"):
        client.get_manifest(unique_repository(), "v1")


@pytest.mark.integration
def test_bearer_tokens_are_fetched_and_cached_per_scope(token_auth_registry: RegistryServer) -> None:
    service = token_auth_registry.token_service
    assert service is not None
    repo, image = unique_repository(), make_image()
    before = len(service.requests)  # the token service is shared by the session's tests
    with token_auth_registry.authed_client() as client:
        push_image(client, repo, image, "v1")
        after_push = len(service.requests) - before
        for _ in range(5):
            assert client.get_manifest(repo, "v1").digest == image.digest
        assert client.get_blob(repo, Digest.of(image.layer)) == image.layer
        after_reads = len(service.requests) - before
        client.list_tags(repo)

    assert after_push == 1  # one token for repository:<repo>:pull,push
    assert after_reads == 2  # and one for :pull, reused for every read
    assert len(service.requests) - before == after_reads
    assert service.requests[before + 1]["scope"] == [f"repository:{repo}:pull"]
    assert service.requests[before + 1]["service"] == [service.service]


@pytest.mark.integration
def test_bearer_auth_with_wrong_password_fails_cleanly(token_auth_registry: RegistryServer) -> None:
    wrong = "not-the-password-0815"
    with token_auth_registry.client(username="provenance", password=wrong) as client:
        with pytest.raises(AuthenticationError) as err:
            client.get_manifest(unique_repository(), "v1")
    assert "token service refused the credentials" in str(err.value)
    assert wrong not in str(err.value)


# --------------------------------------------------------------------------------------------------------------
# Against a scripted server: answers a real registry gives only when something is wrong


def _manifest_bytes() -> bytes:
    return make_image("fixed").manifest


def test_blob_with_wrong_bytes_is_rejected(fake_registry: ScriptedServer) -> None:
    wanted = Digest.of(b"the real layer")
    fake_registry.add("GET", f"/v2/app/blobs/{wanted}", Scripted(200, b"a substituted layer"))
    with fake_registry.client() as client, pytest.raises(MalformedEvidenceError) as err:
        client.get_blob("app", wanted)
    assert err.value.code == "digest_mismatch"
    assert str(Digest.of(b"a substituted layer")) in str(err.value)


def test_manifest_by_digest_with_wrong_bytes_is_rejected(fake_registry: ScriptedServer) -> None:
    wanted = Digest.of(b"{}")
    fake_registry.add("GET", f"/v2/app/manifests/{wanted}", Scripted(200, _manifest_bytes()))
    with fake_registry.client() as client, pytest.raises(MalformedEvidenceError) as err:
        client.get_manifest("app", wanted)
    assert err.value.code == "digest_mismatch"


def test_manifest_by_tag_must_match_docker_content_digest(fake_registry: ScriptedServer) -> None:
    headers = {"Docker-Content-Digest": str(Digest.of(b"something else")), "Content-Type": MediaType.OCI_MANIFEST}
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(200, _manifest_bytes(), headers))
    with fake_registry.client() as client, pytest.raises(MalformedEvidenceError) as err:
        client.get_manifest("app", "v1")
    assert err.value.code == "digest_mismatch"


def test_manifest_request_accepts_all_manifest_types(fake_registry: ScriptedServer) -> None:
    data = _manifest_bytes()
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(200, data, {"Content-Type": "application/json"}))
    with fake_registry.client() as client:
        manifest = client.get_manifest("app", "v1")
    accept = fake_registry.requests[0].headers["Accept"]
    for media_type in (MediaType.OCI_INDEX, MediaType.OCI_MANIFEST, MediaType.DOCKER_LIST, MediaType.DOCKER_MANIFEST):
        assert media_type in accept
    assert accept == MANIFEST_ACCEPT
    # The digest-covered mediaType field wins over a generic Content-Type.
    assert manifest.media_type == MediaType.OCI_MANIFEST
    assert manifest.digest == Digest.of(data)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"a":' * 100 + b"1" + b"}" * 100, "nested deeper"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
    ],
)
def test_malformed_manifest_json_is_rejected(fake_registry: ScriptedServer, body: bytes, reason: str) -> None:
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(200, body))
    with fake_registry.client() as client, pytest.raises(MalformedEvidenceError, match=reason) as err:
        client.get_manifest("app", "v1")
    assert err.value.code == "malformed_manifest"


def test_declared_oversize_body_is_refused_before_reading(fake_registry: ScriptedServer) -> None:
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(200, b"{}", declared_length=10_000_000))
    with fake_registry.client(max_manifest_bytes=1024) as client, pytest.raises(MalformedEvidenceError) as err:
        client.get_manifest("app", "v1")
    assert err.value.code == "too_large"
    assert "10000000 bytes" in str(err.value)


def test_undeclared_oversize_body_is_cut_off_while_streaming(fake_registry: ScriptedServer) -> None:
    digest = Digest.of(b"x")
    fake_registry.add("GET", f"/v2/app/blobs/{digest}", Scripted(200, b"x" * 200_000, stream=True))
    with fake_registry.client() as client, pytest.raises(MalformedEvidenceError) as err:
        client.get_blob("app", digest, max_bytes=50_000)
    assert err.value.code == "too_large"


def test_server_error_then_success_is_retried(fake_registry: ScriptedServer) -> None:
    data = _manifest_bytes()
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(500, b"oops"), Scripted(502), Scripted(200, data))
    with fake_registry.client(retries=3) as client:
        assert client.get_manifest("app", "v1").digest == Digest.of(data)
    assert len(fake_registry.requests) == 3


def test_retry_after_is_honoured(fake_registry: ScriptedServer) -> None:
    data = _manifest_bytes()
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(429, headers={"Retry-After": "1"}), Scripted(200, data))
    started = time.monotonic()
    with fake_registry.client(retries=1) as client:
        client.get_manifest("app", "v1")
    assert time.monotonic() - started >= 0.9


def test_long_retry_after_gives_up_at_once(fake_registry: ScriptedServer) -> None:
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(503, headers={"Retry-After": "3600"}))
    with fake_registry.client(retries=3) as client, pytest.raises(TransientError, match="HTTP 503"):
        client.get_manifest("app", "v1")
    assert len(fake_registry.requests) == 1


def test_persistent_server_errors_become_transient(fake_registry: ScriptedServer) -> None:
    fake_registry.add(
        "GET", "/v2/app/tags/list", Scripted(500, b'{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}')
    )
    with fake_registry.client(retries=2) as client, pytest.raises(TransientError) as err:
        client.list_tags("app")
    assert len(fake_registry.requests) == 3
    # Only the status and the OCI error code: a registry's error text is never repeated.
    assert "disk on fire" not in str(err.value) and "UNKNOWN" in str(err.value) and err.value.code == "transient"


def test_other_client_errors_are_permanent(fake_registry: ScriptedServer) -> None:
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(400, b'{"errors":[{"code":"TAG_INVALID"}]}'))
    fake_registry.add("GET", "/v2/app/manifests/v2", Scripted(403, b'{"errors":[{"code":"DENIED"}]}'))
    with fake_registry.client() as client:
        with pytest.raises(RegistryError, match="TAG_INVALID") as bad:
            client.get_manifest("app", "v1")
        with pytest.raises(AuthenticationError, match="DENIED"):
            client.get_manifest("app", "v2")
    assert not isinstance(bad.value, TransientError | AuthenticationError | NotFoundError)
    assert len(fake_registry.requests) == 2  # not retried


def test_timeout_becomes_transient(silent_server: str) -> None:
    started = time.monotonic()
    with RegistryClient(silent_server, insecure=True, timeout=0.3, retries=0) as client:
        with pytest.raises(TransientError, match="timed out"):
            client.get_manifest("app", "v1")
    assert time.monotonic() - started < 3


def test_unreachable_registry_becomes_transient(closed_port: str) -> None:
    with RegistryClient(closed_port, insecure=True, retries=1, backoff=0.01) as client:
        with pytest.raises(TransientError) as err:
            client.get_manifest("app", "v1")
    assert f"could not reach {closed_port}" in str(err.value)
    assert "ConnectError" in str(err.value)
    assert err.value.__cause__ is not None


def test_tags_follow_link_pagination(fake_registry: ScriptedServer) -> None:
    link = {"Link": '</v2/app/tags/list?n=2&last=b>; rel="next"'}
    fake_registry.add(
        "GET",
        "/v2/app/tags/list",
        Scripted(200, json.dumps({"name": "app", "tags": ["a", "b"]}).encode(), link),
        Scripted(200, json.dumps({"name": "app", "tags": ["c"]}).encode()),
    )
    with fake_registry.client() as client:
        assert client.list_tags("app", page_size=2) == ["a", "b", "c"]
    assert fake_registry.requests[1].path == "/v2/app/tags/list?n=2&last=b"


def test_pagination_link_to_another_host_is_refused(fake_registry: ScriptedServer) -> None:
    link = {"Link": '<http://attacker.invalid/v2/app/tags/list?last=b>; rel="next"'}
    fake_registry.add("GET", "/v2/app/tags/list", Scripted(200, b'{"tags":["a"]}', link))
    with fake_registry.client() as client, pytest.raises(RegistryError, match="another host"):
        client.list_tags("app")


def test_referrers_api_lists_descriptors_and_filters(fake_registry: ScriptedServer) -> None:
    subject = Digest.of(b"image")
    entries = [
        {"mediaType": MediaType.OCI_MANIFEST, "digest": str(Digest.of(b"a")), "size": 1, "artifactType": "x/sig"},
        {"mediaType": MediaType.OCI_MANIFEST, "digest": str(Digest.of(b"b")), "size": 1, "artifactType": "x/sbom"},
    ]
    body = json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": entries}).encode()
    fake_registry.add("GET", f"/v2/app/referrers/{subject}", Scripted(200, body))
    with fake_registry.client() as client:
        assert client.referrers("app", subject) == entries
        assert client.referrers("app", subject, artifact_type="x/sig") == entries[:1]
    assert fake_registry.requests[1].path.endswith("?artifactType=x%2Fsig")


def test_bearer_challenge_without_credentials_fetches_anonymous_token(fake_registry: ScriptedServer) -> None:
    data = _manifest_bytes()
    challenge = {
        "WWW-Authenticate": f'Bearer realm="{fake_registry.url}/token",service="fake",scope="repository:app:pull"'
    }
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(401, headers=challenge), Scripted(200, data))
    fake_registry.add("GET", "/token", Scripted(200, b'{"token": "t0k3n", "expires_in": 300}'))
    with fake_registry.client() as client:
        client.get_manifest("app", "v1")
        fake_registry.add("GET", "/v2/app/manifests/v2", Scripted(200, data))
        client.get_manifest("app", "v2")
    token_request, retried, cached = fake_registry.requests[1:]
    assert token_request.path == "/token?service=fake&scope=repository%3Aapp%3Apull"
    assert "Authorization" not in token_request.headers
    assert retried.headers["Authorization"] == cached.headers["Authorization"] == "Bearer t0k3n"


def test_token_refused_after_auth_is_authentication_error(fake_registry: ScriptedServer) -> None:
    challenge = {"WWW-Authenticate": f'Bearer realm="{fake_registry.url}/token",service="fake"'}
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(401, headers=challenge))
    fake_registry.add("GET", "/token", Scripted(200, b'{"token": "secret-token-value"}'))
    with fake_registry.client() as client, pytest.raises(AuthenticationError) as err:
        client.get_manifest("app", "v1")
    assert "secret-token-value" not in str(err.value)
    assert len(fake_registry.requests) == 3  # challenge, token, one retry


def test_bad_names_are_refused_before_any_request(fake_registry: ScriptedServer) -> None:
    with fake_registry.client() as client:
        for repository in ("../etc", "App", "a//b", "a?b"):
            with pytest.raises(MalformedEvidenceError) as err:
                client.get_manifest(repository, "v1")
            assert err.value.code == "bad_reference"
        with pytest.raises(MalformedEvidenceError):
            client.get_manifest("app", "v1/../../x")
        with pytest.raises(MalformedEvidenceError):
            client.get_manifest("app", "sha256:abc")
    assert fake_registry.requests == []


def test_load_json_object_limits_depth() -> None:
    assert load_json_object(b'{"a": [{"b": 1}]}', max_depth=3) == {"a": [{"b": 1}]}
    with pytest.raises(MalformedEvidenceError, match="deeper than 2"):
        load_json_object(b'{"a": [{"b": 1}]}', max_depth=2)
