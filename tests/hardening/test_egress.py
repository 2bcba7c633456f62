"""Egress rules: redirects stay within the registry (or go to allowed blob storage), private addresses are refused
unless allowed, and a registry's error body is never kept."""

from __future__ import annotations

import pytest

from provenance.core.errors import EgressRefusedError, NotFoundError, RegistryError, TransientError
from provenance.core.oci import RegistryClient, is_public_address
from provenance.core.types import Digest
from provenance.sources.models import Scan
from tests.hardening.conftest import Hostile, measured, problem_codes, report, scan
from tests.plugins.registry import Scripted, ScriptedServer

SECRET = b"<html>internal admin console: root password hunter2</html>"


@pytest.fixture
def elsewhere() -> ScriptedServer:
    """A second server: the "other host" a hostile registry redirects to (an internal service, say)."""
    server = ScriptedServer()
    yield server
    server.close()


def _blob(server: ScriptedServer, data: bytes, *answers: Scripted) -> Digest:
    digest = Digest.of(data)
    server.add("GET", f"/v2/app/blobs/{digest}", *answers)
    return digest


def test_redirect_to_another_host_is_refused_and_never_requested(fake_registry, elsewhere) -> None:
    data = b"payload"
    digest = _blob(fake_registry, data, Scripted(307, b"", {"Location": f"{elsewhere.url}/internal?x=1"}))
    elsewhere.add("GET", "/internal", Scripted(200, data))
    with fake_registry.client() as client, pytest.raises(RegistryError) as err:
        client.get_blob("app", digest)
    assert err.value.code == "redirect_refused"
    assert "127.0.0.1" in err.value.message and "/internal" not in err.value.message
    assert elsewhere.requests == []


def test_redirect_within_the_origin_is_followed(fake_registry) -> None:
    data = b"payload"
    digest = _blob(fake_registry, data, Scripted(302, b"", {"Location": "/storage/blob"}))
    fake_registry.add("GET", "/storage/blob", Scripted(200, data))
    with fake_registry.client() as client:
        assert client.get_blob("app", digest) == data


def test_redirect_to_an_allowed_storage_host_is_followed_without_credentials(fake_registry, elsewhere) -> None:
    data = b"payload"
    digest = _blob(fake_registry, data, Scripted(307, b"", {"Location": f"{elsewhere.url}/bucket/blob?sig=abc"}))
    elsewhere.add("GET", "/bucket/blob", Scripted(200, data))
    with fake_registry.client(username="u", password="p", redirect_hosts=("127.0.0.1",)) as client:
        client._uses_basic = True  # credentials go up front, as after a Basic challenge
        assert client.get_blob("app", digest) == data
    assert "Authorization" in fake_registry.requests[0].headers
    assert [r.path for r in elsewhere.requests] == ["/bucket/blob?sig=abc"]
    assert "Authorization" not in elsewhere.requests[0].headers


def test_endless_redirects_stop(fake_registry) -> None:
    digest = _blob(fake_registry, b"x", Scripted(302, b"", {"Location": f"/v2/app/blobs/{Digest.of(b'x')}"}))
    with fake_registry.client() as client, pytest.raises(RegistryError) as err:
        client.get_blob("app", digest)
    assert err.value.code == "too_many_redirects"
    assert len(fake_registry.requests) == 6


def test_https_registry_may_not_redirect_to_plain_http() -> None:
    client = RegistryClient("registry.example", redirect_hosts=("*",))
    with pytest.raises(RegistryError) as err:
        client._redirect_target("https://registry.example/v2/a/blobs/x", "http://cdn.example/blob", what="blob")
    assert err.value.code == "redirect_refused" and "plain HTTP" in err.value.message
    client.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_private_addresses_are_refused_before_connecting(fake_registry, host) -> None:
    port = fake_registry.host.rsplit(":", 1)[1]
    with RegistryClient(f"{host}:{port}", insecure=True, allow_private=False, retries=0) as client, \
            pytest.raises(EgressRefusedError) as err:
        client.get_manifest("app", "latest")
    assert err.value.code == "egress_refused" and "PROVENANCE_ALLOW_PRIVATE_REGISTRIES" in err.value.message
    assert fake_registry.requests == []


@pytest.mark.parametrize(("address", "public"), [
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),  # noqa: S104
    ("::1", False), ("fe80::1%eth0", False), ("fd00::1", False), ("::ffff:127.0.0.1", False),
    ("::ffff:169.254.169.254", False), ("8.8.8.8", True), ("2606:4700::1111", True), ("not-an-ip", False),
])
def test_public_address_classification(address, public) -> None:
    assert is_public_address(address) is public


def test_error_bodies_are_never_repeated(fake_registry) -> None:
    fake_registry.add("GET", "/v2/app/manifests/latest", Scripted(404, SECRET, {"Content-Type": "text/html"}))
    fake_registry.add("GET", "/v2/app/manifests/other", Scripted(
        404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"' + SECRET.replace(b'"', b"") + b'"}]}'))
    fake_registry.add("GET", "/v2/app/tags/list", Scripted(500, SECRET))
    with fake_registry.client(retries=0) as client:
        with pytest.raises(NotFoundError) as first:
            client.get_manifest("app", "latest")
        with pytest.raises(NotFoundError) as second:
            client.get_manifest("app", "other")
        with pytest.raises(TransientError) as third:
            client.list_tags("app")
    for err in (first, second, third):
        assert "hunter2" not in err.value.message and "admin" not in err.value.message
    assert "MANIFEST_UNKNOWN" in second.value.message and "HTTP 500" in third.value.message


@pytest.mark.django_db
def test_a_scan_stores_no_error_body(hostile: Hostile) -> None:
    _, digest = hostile.image("v1")
    for reference in ("v1", digest):
        hostile.server.routes[("GET", f"/v2/app/manifests/{reference}")] = [Scripted(400, SECRET)]
    hostile.list_tags()
    row = scan(hostile.source())
    assert list(problem_codes(row).values()) == ["registry_error"]
    assert "HTTP 400" in row.problems[0]["message"]
    assert "hunter2" not in repr(row.problems) and "hunter2" not in row.error
    assert "hunter2" not in row.source.last_error


@pytest.mark.django_db
def test_private_registries_are_refused_by_the_setting(hostile: Hostile, settings) -> None:
    settings.PROVENANCE_ALLOW_PRIVATE_REGISTRIES = False
    hostile.image("v1")
    hostile.list_tags()
    with measured() as cost:
        row = scan(hostile.source())
    report("registry on a loopback address, private registries not allowed", "egress rules", cost,
           "scan failed egress_refused; no connection made")
    assert (row.state, row.error_code) == (Scan.State.FAILED, "egress_refused")
    assert hostile.server.requests == []


@pytest.mark.django_db
def test_a_blob_redirect_elsewhere_makes_that_evidence_unchecked_not_verified(hostile: Hostile, elsewhere) -> None:
    _, digest = hostile.image("v1")
    good = hostile.signature(digest)
    hostile.server.routes[("GET", f"/v2/app/blobs/{Digest.of(good.payload)}")] = [
        Scripted(307, b"", {"Location": f"{elsewhere.url}/latest/meta-data/"})]
    hostile.list_tags()
    with measured() as cost:
        row = scan(hostile.source())
    artifact = row.source.artifacts.get(digest=str(digest))
    assert artifact.status == "error" and artifact.status_code == "redirect_refused"
    assert elsewhere.requests == []
    report("blob redirect to another host:port (SSRF)", "redirect hosts", cost,
           "signature stored as error redirect_refused; the other host got no request")
    assert problem_codes(row) == {}  # the evidence is stored as unchecked; nothing else went wrong
