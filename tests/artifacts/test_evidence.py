"""Evidence rows: one per signature, even when several signers' layers share one payload blob."""

from __future__ import annotations

import pytest

from provenance.artifacts.models import Artifact
from provenance.core.demo import DEMO_IDENTITY, DEMO_ISSUER, INTRUDER_IDENTITY, _attach, _image
from provenance.core.ocilayout import OciLayout
from provenance.core.types import MediaType
from provenance.sources import services
from provenance.sources.models import Source
from tests.factories import make_sigstore, trust_root_for

pytestmark = pytest.mark.django_db


def test_two_signers_of_one_image_are_two_pieces_of_evidence(tmp_path):
    sigstore = make_sigstore()
    layout = OciLayout.init(tmp_path / "two")
    digest = _image(layout, "two-signers")
    layout.write_manifest(layout.get_manifest("", digest).data, MediaType.OCI_MANIFEST, tag="two")
    layers = [sigstore.cosign_signature_layer(str(digest), "two", identity=who, issuer=DEMO_ISSUER)
              for who in (INTRUDER_IDENTITY, DEMO_IDENTITY)]
    assert layers[0].payload == layers[1].payload  # cosign's simple-signing payload names no signer
    _attach(layout, digest, ".sig", layers)
    source = services.create_source(name="two", kind=Source.Kind.LAYOUT, location=str(layout.path),
                                    trust_root=trust_root_for(sigstore), expected_identity=DEMO_IDENTITY,
                                    expected_issuer=DEMO_ISSUER)
    for _ in range(2):  # and a second scan changes nothing
        scan = services.start_scan(source)
        services.claim_scan(scan.pk)
        services.run_scan(scan.pk)
    artifact = Artifact.objects.get(source=source, digest=str(digest))
    signatures = artifact.evidence.filter(kind="signature")
    assert sorted(e.identity for e in signatures) == sorted([INTRUDER_IDENTITY, DEMO_IDENTITY])
    assert sorted(e.outcome for e in signatures) == ["untrusted", "verified"]
    assert artifact.status == "verified"
