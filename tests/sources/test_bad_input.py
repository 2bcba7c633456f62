"""Bad input gets a clear, stored reason and no crash."""

from __future__ import annotations

import json
import socket

import pytest

from provenance.artifacts.models import Artifact
from provenance.core.demo import DEMO_IDENTITY, DEMO_ISSUER, _attach, _image
from provenance.core.ocilayout import OciLayout
from provenance.core.types import MediaType, SignedLayer
from provenance.sources import services
from provenance.sources.models import Scan, Source
from tests.factories import make_sigstore, run_scan_now, trust_root_for

pytestmark = pytest.mark.django_db


run = run_scan_now


def layout_source(tmp_path, build, *, name="bad") -> tuple[Source, OciLayout]:
    sigstore = make_sigstore()
    layout = OciLayout.init(tmp_path / name)
    build(layout, sigstore)
    source = services.create_source(name=name, kind=Source.Kind.LAYOUT, location=str(layout.path),
                                    trust_root=trust_root_for(sigstore), expected_identity=DEMO_IDENTITY,
                                    expected_issuer=DEMO_ISSUER)
    return source, layout


def only_artifact(source: Source) -> Artifact:
    [artifact] = Artifact.objects.filter(source=source, parent__isnull=True)
    return artifact


def test_unreachable_registry_fails_the_scan_with_a_reason(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once we leave: nothing listens there
    source = services.create_source(name="gone", kind=Source.Kind.IMAGE, location=f"127.0.0.1:{port}/app:1",
                                    trust_root=trust_root_for(make_sigstore()), is_insecure=True)
    scan = run(source)
    assert scan.state == Scan.State.FAILED
    assert scan.error_code == "transient"
    assert f"127.0.0.1:{port}" in scan.error
    source.refresh_from_db()
    assert source.last_error.startswith("transient:")


def test_image_without_signatures_is_unsigned_with_where_we_looked(tmp_path):
    source, _ = layout_source(tmp_path, lambda layout, _: layout.write_manifest(
        layout.get_manifest("", _image(layout, "plain")).data, MediaType.OCI_MANIFEST, tag="plain"))
    assert run(source).state == Scan.State.DONE
    artifact = only_artifact(source)
    assert (artifact.status, artifact.status_code) == ("unsigned", "no_signature")
    assert f"{artifact.digest.replace(':', '-')}.sig" in artifact.status_reason


def test_malformed_signature_layer_is_stored_as_malformed(tmp_path):
    def build(layout, sigstore):
        digest = _image(layout, "broken")
        layout.write_manifest(layout.get_manifest("", digest).data, MediaType.OCI_MANIFEST, tag="broken")
        _attach(layout, digest, ".sig", [SignedLayer(MediaType.COSIGN_SIMPLESIGNING, b"{not json", {})])

    source, _ = layout_source(tmp_path, build)
    assert run(source).state == Scan.State.DONE
    artifact = only_artifact(source)
    assert artifact.status == "failed"
    [evidence] = artifact.evidence.all()
    assert evidence.outcome == "malformed"
    assert evidence.failures[0]["stage"] == "format"


def test_signature_layer_with_the_wrong_media_type_is_malformed(tmp_path):
    def build(layout, sigstore):
        digest = _image(layout, "odd")
        layout.write_manifest(layout.get_manifest("", digest).data, MediaType.OCI_MANIFEST, tag="odd")
        good = sigstore.cosign_signature_layer(str(digest), "odd", identity=DEMO_IDENTITY, issuer=DEMO_ISSUER)
        _attach(layout, digest, ".sig", [SignedLayer("text/plain", good.payload, good.annotations)])

    source, _ = layout_source(tmp_path, build)
    run(source)
    artifact = only_artifact(source)
    [evidence] = artifact.evidence.all()
    assert (evidence.outcome, evidence.failures[0]["code"]) == ("malformed", "unexpected_media_type")
    assert artifact.status == "failed"


def test_signature_from_an_unknown_trust_root_is_untrusted(tmp_path):
    stranger = make_sigstore("someone-elses-sigstore")

    def build(layout, sigstore):
        digest = _image(layout, "foreign")
        layout.write_manifest(layout.get_manifest("", digest).data, MediaType.OCI_MANIFEST, tag="foreign")
        _attach(layout, digest, ".sig", [stranger.cosign_signature_layer(
            str(digest), "foreign", identity=DEMO_IDENTITY, issuer=DEMO_ISSUER)])

    source, _ = layout_source(tmp_path, build)
    run(source)
    artifact = only_artifact(source)
    assert artifact.status == "failed"
    [evidence] = artifact.evidence.all()
    assert evidence.outcome == "untrusted"
    assert evidence.failures[0]["stage"] in {"chain", "tlog", "sct"}
    assert artifact.status_reason


def test_corrupt_trust_root_document_fails_the_scan_clearly(tmp_path):
    source, _ = layout_source(tmp_path, lambda layout, sigstore: None, name="empty")
    root = source.trust_root
    root.document = json.dumps({"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"})
    root.save()
    scan = run(source)
    assert scan.state == Scan.State.FAILED
    assert scan.error_code == "trust_root_malformed"
    assert root.name in scan.error
