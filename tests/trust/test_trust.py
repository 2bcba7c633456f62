"""Trust anchors as data: shipped and uploaded trust roots, the fail-safe TUF refresh, named public keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from provenance.core.errors import MalformedEvidenceError, TransientError, TrustRootError
from provenance.core.trustroot import SigningConfig
from provenance.core.trustroot import TrustRoot as CoreTrustRoot
from provenance.core.tufroot import TufTrust
from provenance.trust import services, tasks
from provenance.trust.models import PublicKey, TrustRoot
from tests.factories import UserFactory, make_sigstore

pytestmark = pytest.mark.django_db


def pem_of(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def user_client(client: Client) -> Client:
    client.force_login(UserFactory())
    return client


# -- roots ----------------------------------------------------------------------------------------------------


def test_builtin_roots_are_stored_once_with_their_tuf_repositories() -> None:
    services.ensure_builtin_roots()
    services.ensure_builtin_roots()

    rows = {r.name: r for r in TrustRoot.objects.all()}
    assert rows["sigstore-public-good"].kind == TrustRoot.Kind.PUBLIC_GOOD
    assert rows["sigstore-public-good"].tuf_url == "https://tuf-repo-cdn.sigstore.dev"
    assert rows["sigstore-staging"].tuf_url == "https://tuf-repo-cdn.sigstage.dev"
    assert services.load(rows["sigstore-public-good"]) == CoreTrustRoot.production()


def test_private_root_upload_is_validated() -> None:
    sigstore = make_sigstore()

    row = services.upload_private_root(name="acme", document=sigstore.trusted_root_json(), description="ours")

    assert row.kind == TrustRoot.Kind.PRIVATE and services.load(row).sha256 == row.sha256
    with pytest.raises(TrustRootError) as not_json:
        services.upload_private_root(name="broken", document=b"{not json")
    with pytest.raises(TrustRootError) as no_logs:
        services.upload_private_root(name="broken", document=json.dumps(
            {**json.loads(sigstore.trusted_root_json()), "tlogs": []}).encode())
    with pytest.raises(TrustRootError) as reserved:
        services.upload_private_root(name="sigstore-public-good", document=sigstore.trusted_root_json())
    assert not_json.value.code == "trust_root_malformed"
    assert no_logs.value.code == "trust_root_malformed" and "tlogs" in no_logs.value.message
    assert reserved.value.code == "trust_root_reserved"
    assert not TrustRoot.objects.filter(name="broken").exists()


def test_tuf_refresh_fails_safe_and_keeps_the_stored_root(monkeypatch: pytest.MonkeyPatch) -> None:
    services.ensure_builtin_roots()
    row = TrustRoot.objects.get(name="sigstore-public-good")
    before = (row.document, row.sha256)

    def offline(url: str, **kwargs: object) -> CoreTrustRoot:
        raise TransientError(f"cannot reach the TUF repository {url}", code="tuf_unreachable")

    monkeypatch.setattr(services.tufroot, "fetch_trusted_root", offline)
    refreshed = services.refresh_from_tuf(row.pk)

    assert refreshed is not None
    assert (refreshed.document, refreshed.sha256) == before
    assert refreshed.refresh_error.startswith("tuf_unreachable:") and refreshed.refreshed_at is None


def test_tuf_refresh_replaces_the_root_when_it_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    services.ensure_builtin_roots()
    row = TrustRoot.objects.get(name="sigstore-staging")
    TrustRoot.objects.filter(pk=row.pk).update(refresh_error="tuf_unreachable: earlier")
    newer = CoreTrustRoot.from_json(make_sigstore("tuf-refresh").trusted_root_json(), name="newer")
    monkeypatch.setattr(services.tufroot, "fetch_trusted_root", lambda url, **kwargs: TufTrust(newer, None))

    refreshed = services.refresh_from_tuf(row.pk)
    services.ensure_builtin_roots()  # the shipped copy never overwrites a refreshed root

    assert refreshed is not None and refreshed.sha256 == newer.sha256 and refreshed.refresh_error == ""
    assert refreshed.refreshed_at is not None
    assert TrustRoot.objects.get(pk=row.pk).sha256 == newer.sha256


def test_refresh_task_honours_the_setting(monkeypatch: pytest.MonkeyPatch, settings: object) -> None:
    services.ensure_builtin_roots()
    calls: list[str] = []
    monkeypatch.setattr(services.tufroot, "fetch_trusted_root",
                        lambda url, **kwargs: calls.append(url) or (_ for _ in ()).throw(
                            TransientError("offline", code="tuf_unreachable")))

    settings.PROVENANCE_SIGSTORE_TUF = False  # type: ignore[attr-defined]
    assert tasks.refresh_trust_roots() == {}
    settings.PROVENANCE_SIGSTORE_TUF = True  # type: ignore[attr-defined]
    results = tasks.refresh_trust_roots()

    assert sorted(calls) == ["https://tuf-repo-cdn.sigstage.dev", "https://tuf-repo-cdn.sigstore.dev"]
    assert set(results.values()) == {"tuf_unreachable: offline"}


def test_refresh_is_in_the_beat_schedule() -> None:
    from django.conf import settings

    tasks_scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "provenance.trust.tasks.refresh_trust_roots" in tasks_scheduled


# -- public keys ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        (ec.generate_private_key(ec.SECP256R1()), "ecdsa-p256"),
        (ec.generate_private_key(ec.SECP384R1()), "ecdsa-p384"),
        (ed25519.Ed25519PrivateKey.generate(), "ed25519"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-2048"),
    ],
)
def test_public_keys_of_each_supported_type(key: object, algorithm: str) -> None:
    row = services.add_public_key(name="release", pem=pem_of(key))

    assert row.algorithm == algorithm and row.fingerprint.startswith("sha256:")
    assert services.public_key_pems() == (row.pem.encode(),)


def test_bad_public_keys_are_refused_with_a_reason() -> None:
    private = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refusing it is the point
    dsa_key = dsa.generate_private_key(2048)

    for pem, words in ((b"not a key", "not a PEM public key"), (private, "private key"),
                       (pem_of(weak), "RSA >= 2048"), (pem_of(dsa_key), "unsupported key type")):
        with pytest.raises(MalformedEvidenceError, match=words) as err:
            services.add_public_key(name="bad", pem=pem)
        assert err.value.code == "public_key_invalid"
    key = ec.generate_private_key(ec.SECP256R1())
    services.add_public_key(name="one", pem=pem_of(key))
    with pytest.raises(TrustRootError) as duplicate:
        services.add_public_key(name="two", pem=pem_of(key))
    assert duplicate.value.code == "public_key_duplicate"
    assert list(PublicKey.objects.values_list("name", flat=True)) == ["one"]


# -- pages and API --------------------------------------------------------------------------------------------


def test_trust_page_lists_and_uploads(user_client: Client) -> None:
    services.ensure_builtin_roots()
    url = reverse("trust")
    document = make_sigstore().trusted_root_json()

    page = user_client.get(url)
    uploaded = user_client.post(url, {"name": "acme-private", "description": "d",
                                      "document": SimpleUploadedFile("trusted_root.json", document)})
    malformed = user_client.post(url, {"name": "acme-bad",
                                       "document": SimpleUploadedFile("trusted_root.json", b"<html>")})
    key_added = user_client.post(url, {"name": "release-key",
                                       "pem": pem_of(ec.generate_private_key(ec.SECP256R1())).decode()})
    key_bad = user_client.post(url, {"name": "bad-key", "pem": "-----BEGIN NOTHING-----"})

    assert page.status_code == 200 and b"sigstore-public-good" in page.content
    assert uploaded.status_code == 302 and TrustRoot.objects.filter(name="acme-private").exists()
    assert malformed.status_code == 400 and b"trust_root_malformed" in malformed.content
    assert key_added.status_code == 302 and PublicKey.objects.filter(name="release-key").exists()
    assert key_bad.status_code == 400 and b"public_key_invalid" in key_bad.content


def test_trust_page_escapes_uploaded_text(user_client: Client) -> None:
    services.upload_private_root(name="x", document=make_sigstore().trusted_root_json(),
                                 description="<script>alert(1)</script>")
    page = user_client.get(reverse("trust"))
    assert b"<script>alert(1)</script>" not in page.content


def test_trust_page_needs_login(client: Client) -> None:
    assert client.get(reverse("trust")).status_code == 302


def test_api_trust_roots_and_keys(user_client: Client) -> None:
    document = make_sigstore().trusted_root_json().decode()
    key_pem = pem_of(ec.generate_private_key(ec.SECP256R1())).decode()

    created = user_client.post("/api/v1/trust-roots/", {"name": "api-root", "document": document},
                               content_type="application/json")
    as_file = user_client.post("/api/v1/trust-roots/", {"name": "api-file",
                                                        "file": SimpleUploadedFile("t.json", document.encode())})
    bad = user_client.post("/api/v1/trust-roots/", {"name": "api-bad", "document": "{}"},
                           content_type="application/json")
    key = user_client.post("/api/v1/public-keys/", {"name": "k1", "pem": key_pem}, content_type="application/json")
    bad_key = user_client.post("/api/v1/public-keys/", {"name": "k2", "pem": "nope"},
                               content_type="application/json")
    listed = user_client.get("/api/v1/public-keys/")
    deleted = user_client.delete("/api/v1/public-keys/k1/")

    assert created.status_code == 201 and created.json()["kind"] == "private"
    assert as_file.status_code == 201
    assert bad.status_code == 400 and bad.json()["error"] == "trust_root_malformed"
    assert key.status_code == 201 and key.json()["algorithm"] == "ecdsa-p256"
    assert bad_key.status_code == 400 and bad_key.json()["error"] == "public_key_invalid"
    assert [k["name"] for k in listed.json()["results"]] == ["k1"]
    assert deleted.status_code == 204 and not PublicKey.objects.exists()


def test_api_refresh_reports_a_failure_without_losing_the_root(user_client: Client,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    services.ensure_builtin_roots()

    def offline(url: str, **kwargs: object) -> CoreTrustRoot:
        raise TransientError("no network", code="tuf_unreachable")

    monkeypatch.setattr(services.tufroot, "fetch_trusted_root", offline)
    answer = user_client.post("/api/v1/trust-roots/sigstore-public-good/refresh/")

    assert answer.status_code == 200
    assert answer.json()["refresh_error"].startswith("tuf_unreachable") and answer.json()["sha256"]


# -- a real TUF repository, served locally ---------------------------------------------------------------------


def test_tuf_fetch_walks_a_real_repository(tmp_path: Path, live_tuf: TufRepository) -> None:
    from provenance.core.tufroot import fetch_trusted_root

    fetched = fetch_trusted_root(live_tuf.url, metadata_dir=tmp_path / "meta", anchor=live_tuf.anchor, timeout=5)
    again = fetch_trusted_root(live_tuf.url, metadata_dir=tmp_path / "meta", anchor=live_tuf.anchor, timeout=5)

    assert fetched.root.raw == live_tuf.document and again.root.raw == live_tuf.document  # the second from cache
    assert fetched.signing_config is not None and fetched.signing_config.raw == SIGNING_CONFIG


def test_tuf_fetch_refuses_a_repository_signed_by_another_key(tmp_path: Path, live_tuf: TufRepository) -> None:
    from provenance.core.tufroot import fetch_trusted_root

    other = TufRepository(tmp_path / "other", b"{}")

    with pytest.raises(TrustRootError) as err:
        fetch_trusted_root(live_tuf.url, metadata_dir=tmp_path / "meta2", anchor=other.anchor, timeout=5)
    assert err.value.code == "tuf_invalid"


def test_a_private_deployment_is_set_up_from_its_mirror_and_refreshed_from_it(
        tmp_path: Path, live_tuf: TufRepository, settings: object) -> None:
    from django.core.management import call_command

    settings.DATA_DIR = str(tmp_path / "data")  # type: ignore[attr-defined]
    anchor = tmp_path / "root.json"
    anchor.write_bytes(live_tuf.anchor)
    out = io.StringIO()

    call_command("trust-initialize", "--name", "acme", "--mirror", live_tuf.url, "--root", str(anchor), stdout=out)
    row = TrustRoot.objects.get(name="acme")
    first = live_tuf.document
    newer = make_sigstore("acme-rotated").trusted_root_json()
    live_tuf.publish(newer)
    refreshed = services.refresh_from_tuf(row.pk)

    assert f"trust root acme: sha256:{hashlib.sha256(first).hexdigest()}" in out.getvalue()
    assert (row.kind, row.tuf_url, row.tuf_root.encode()) == ("private", live_tuf.url, live_tuf.anchor)
    assert row.document.encode() == first and row.refreshed_at is not None
    assert [(s.kind, s.api_version, s.url) for s in services.signing_services(row)] == [
        ("ca", 1, "https://fulcio.acme.test"), ("tlog", 2, "https://log2026.rekor.acme.test"),
        ("tsa", 1, "https://tsa.acme.test/api/v1/timestamp")]
    assert refreshed is not None and refreshed.document.encode() == newer and refreshed.refresh_error == ""


def test_a_mirror_that_does_not_verify_against_the_given_root_stores_nothing(
        tmp_path: Path, live_tuf: TufRepository, settings: object) -> None:
    from django.core.management import CommandError, call_command

    settings.DATA_DIR = str(tmp_path / "data")  # type: ignore[attr-defined]
    other = tmp_path / "other.json"
    other.write_bytes(TufRepository(tmp_path / "other", b"{}").anchor)
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"not json")

    with pytest.raises(CommandError, match="tuf_invalid"):
        call_command("trust-initialize", "--name", "acme", "--mirror", live_tuf.url, "--root", str(other))
    with pytest.raises(CommandError, match="tuf_invalid"):
        call_command("trust-initialize", "--name", "acme", "--mirror", live_tuf.url, "--root", str(garbage))
    with pytest.raises(CommandError, match="trust_root_reserved"):
        call_command("trust-initialize", "--name", "sigstore-public-good", "--mirror", live_tuf.url,
                     "--root", str(other))
    assert not TrustRoot.objects.filter(name="acme").exists()


def test_the_trust_page_and_api_set_up_a_mirror_and_show_its_signing_services(
        user_client: Client, tmp_path: Path, live_tuf: TufRepository, settings: object) -> None:
    settings.DATA_DIR = str(tmp_path / "data")  # type: ignore[attr-defined]

    page = user_client.post(reverse("trust"), {"name": "acme", "mirror": live_tuf.url,
                                               "tuf_root": SimpleUploadedFile("root.json", live_tuf.anchor)})
    shown = user_client.get(reverse("trust"))
    api = user_client.post("/api/v1/trust-roots/initialize/",
                           {"name": "acme-api", "mirror": live_tuf.url, "root": live_tuf.anchor.decode()},
                           content_type="application/json")
    bad = user_client.post("/api/v1/trust-roots/initialize/",
                           {"name": "acme-bad", "mirror": live_tuf.url, "root": "{}"},
                           content_type="application/json")

    assert page.status_code == 302 and TrustRoot.objects.get(name="acme").tuf_url == live_tuf.url
    assert b"log2026.rekor.acme.test" in shown.content and b"tlog v2" in shown.content
    assert api.status_code == 201 and api.json()["signing_services"][1] == {
        "kind": "tlog", "url": "https://log2026.rekor.acme.test", "api_version": 2, "operator": "acme"}
    assert bad.status_code == 400 and bad.json()["error"] == "tuf_invalid"


def test_signing_configs_are_validated_and_the_shipped_ones_read() -> None:
    services.ensure_builtin_roots()
    public_good = TrustRoot.objects.get(name="sigstore-public-good")
    with pytest.raises(TrustRootError) as wrong_type:
        SigningConfig.from_json(json.dumps({"mediaType": "application/json"}).encode(), name="x")
    with pytest.raises(TrustRootError) as no_log:
        SigningConfig.from_json(json.dumps({**json.loads(SIGNING_CONFIG), "rekorTlogUrls": []}).encode(), name="x")

    assert {s.kind for s in services.signing_services(public_good)} >= {"ca", "tlog", "tsa"}
    assert wrong_type.value.code == no_log.value.code == "signing_config_malformed"


SIGNING_CONFIG = json.dumps({
    "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
    "caUrls": [{"url": "https://fulcio.acme.test", "majorApiVersion": 1, "operator": "acme",
                "validFor": {"start": "2026-01-01T00:00:00Z"}}],
    "rekorTlogUrls": [{"url": "https://log2026.rekor.acme.test", "majorApiVersion": 2, "operator": "acme",
                       "validFor": {"start": "2026-01-01T00:00:00Z"}}],
    "tsaUrls": [{"url": "https://tsa.acme.test/api/v1/timestamp", "majorApiVersion": 1, "operator": "acme",
                 "validFor": {"start": "2026-01-01T00:00:00Z"}}],
    "rekorTlogConfig": {"selector": "ANY"}, "tsaConfig": {"selector": "ANY"},
}, indent=2).encode()


@pytest.fixture
def live_tuf(tmp_path: Path) -> object:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    repository = TufRepository(tmp_path / "repo", make_sigstore().trusted_root_json(), SIGNING_CONFIG)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(repository.folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    repository.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield repository
    server.shutdown()
    server.server_close()


class TufRepository:
    """A minimal TUF repository (one key for every role, consistent snapshots) holding ``trusted_root.json`` and
    optionally ``signing_config.v0.2.json``; :meth:`publish` releases a new version of the targets."""

    def __init__(self, folder: Path, document: bytes, signing_config: bytes | None = None) -> None:
        from securesystemslib.signer import CryptoSigner
        from tuf.api.metadata import Metadata, Root

        self.folder = folder
        self.url = ""
        folder.mkdir(parents=True)
        (folder / "targets").mkdir()
        self.signer = CryptoSigner.generate_ecdsa()
        self.expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=7)
        root = Metadata(Root(expires=self.expires))
        for role in ("root", "targets", "snapshot", "timestamp"):
            root.signed.add_key(self.signer.public_key, role)
        self.anchor = self._write(root, "1.root.json")
        self.version = 0
        self.publish(document, signing_config)

    def publish(self, document: bytes, signing_config: bytes | None = None) -> None:
        from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp

        self.version += 1
        self.document = document
        files = {"trusted_root.json": document}
        if signing_config is not None:
            files["signing_config.v0.2.json"] = signing_config
        targets = {}
        for name, data in files.items():
            targets[name] = TargetFile.from_data(name, data)
            (self.folder / "targets" / f"{targets[name].hashes['sha256']}.{name}").write_bytes(data)
        version = self.version
        self._write(Metadata(Targets(version=version, expires=self.expires, targets=targets)),
                    f"{version}.targets.json")
        self._write(Metadata(Snapshot(version=version, expires=self.expires,
                                      meta={"targets.json": MetaFile(version=version)})), f"{version}.snapshot.json")
        self._write(Metadata(Timestamp(version=version, expires=self.expires,
                                       snapshot_meta=MetaFile(version=version))), "timestamp.json")

    def _write(self, metadata: object, name: str) -> bytes:
        from tuf.api.serialization.json import JSONSerializer

        metadata.sign(self.signer)  # type: ignore[attr-defined]
        data: bytes = metadata.to_bytes(JSONSerializer(compact=False))  # type: ignore[attr-defined]
        (self.folder / name).write_bytes(data)
        return data
