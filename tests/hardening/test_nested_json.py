"""Deeply nested JSON anywhere evidence is parsed is that evidence's own error, never a crash that takes the
image's valid signature with it."""

from __future__ import annotations

import base64
import json

import pytest

from provenance.core import statements
from provenance.core.errors import MalformedEvidenceError, ProvenanceError, TrustRootError
from provenance.core.jsonbounds import JSONBoundsError, loads
from provenance.core.policy import statement_from_layer
from provenance.core.trustroot import TrustRoot
from provenance.core.types import Digest, MediaType, Outcome, SignedLayer
from provenance.core.verify import bundle, cosign
from tests.factories import make_sigstore
from tests.hardening.conftest import Hostile, measured, report, scan

DEEP = b"[" * 100_000 + b"]" * 100_000  # past the interpreter's recursion limit: json.loads raises RecursionError
DEEP_OBJECT = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
JUST_TOO_DEEP = b"[" * 65 + b"]" * 65  # parses, but deeper than our limit of 64


@pytest.mark.parametrize("data", [DEEP, DEEP_OBJECT, JUST_TOO_DEEP])
def test_bounded_loads_refuses_deep_documents_as_value_errors(data) -> None:
    with pytest.raises(JSONBoundsError) as err:
        loads(data)
    assert isinstance(err.value, ValueError)
    assert loads(b"[" * 64 + b"]" * 64) is not None


def test_bounded_loads_refuses_oversized_documents() -> None:
    with pytest.raises(JSONBoundsError):
        loads(b"[1, 2, 3]", max_bytes=4)


@pytest.mark.django_db
def test_a_nested_layer_beside_a_valid_signature_keeps_the_image_verified(hostile: Hostile) -> None:
    _, digest = hostile.image("v1")
    hostile.signature(digest, extra=[
        SignedLayer(MediaType.COSIGN_SIMPLESIGNING, DEEP, {"dev.cosignproject.cosign/signature": "AAAA"}),
        SignedLayer(MediaType.COSIGN_SIMPLESIGNING, DEEP_OBJECT, {"dev.cosignproject.cosign/signature": "AAAA"}),
    ])
    attestation = SignedLayer(MediaType.DSSE_ENVELOPE, DEEP, {})
    hostile.evidence(digest, ".att", [attestation])
    hostile.list_tags()
    with measured() as cost:
        row = scan(hostile.source())
    assert row.errors == 0, row.problems
    artifact = row.source.artifacts.get(digest=str(digest))
    assert artifact.status == "verified"
    outcomes = sorted((e.kind, e.outcome) for e in artifact.evidence.all())
    assert outcomes == [("attestation", "malformed"), ("signature", "malformed"), ("signature", "malformed"),
                        ("signature", "verified")]
    codes = {e.checks[0]["code"] for e in artifact.evidence.exclude(outcome="verified")}
    assert codes <= {"payload_not_json", "envelope_unreadable"}, codes
    assert cost.seconds < 10 and cost.peak_bytes < 64 * 1024 * 1024
    report("100,000-deep JSON in .sig and .att layers beside a valid signature", "JSON depth 64", cost,
           "3 layers stored malformed (payload_not_json/envelope_unreadable); signature verified")


def _layer(payload: bytes, media_type: str = MediaType.COSIGN_SIMPLESIGNING) -> SignedLayer:
    return SignedLayer(media_type, payload, {"dev.cosignproject.cosign/signature": "AAAA"})


@pytest.fixture(scope="module")
def root() -> TrustRoot:
    return TrustRoot.from_json(make_sigstore("hardening").trusted_root_json(), name="hardening")


@pytest.mark.parametrize("payload", [DEEP, DEEP_OBJECT])
def test_cosign_parsers_are_total_on_nested_payloads(root, payload) -> None:
    digest = Digest.of(b"image")
    result = cosign.verify_signature_layer(_layer(payload), image_digest=digest, trust_root=root, identity=None)
    assert result.outcome == Outcome.MALFORMED
    result, statement = cosign.verify_attestation_layer(_layer(payload, MediaType.DSSE_ENVELOPE),
                                                        image_digest=digest, trust_root=root, identity=None)
    assert result.outcome == Outcome.MALFORMED and statement is None
    inner = json.dumps({"payloadType": "application/vnd.in-toto+json",
                        "payload": base64.b64encode(payload).decode(), "signatures": [{"sig": "AAAA"}]})
    result, _ = cosign.verify_attestation_layer(_layer(inner.encode(), MediaType.DSSE_ENVELOPE),
                                                image_digest=digest, trust_root=root, identity=None)
    assert not result.is_verified


@pytest.mark.parametrize("payload", [DEEP, DEEP_OBJECT])
def test_bundle_statement_policy_and_trust_root_parsers_are_total(root, payload) -> None:
    outcome = bundle.verify_bundle(payload, artifact=Digest.of(b"image"), trust_root=root, identity=None)
    assert not outcome.result.is_verified
    assert statement_from_layer(_layer(payload, MediaType.DSSE_ENVELOPE)) is None
    sbom, problems = statements.parse_sbom(payload)
    assert sbom is None and problems
    with pytest.raises(TrustRootError):
        TrustRoot.from_json(payload, name="deep")


def test_a_nested_config_is_a_core_error() -> None:
    from provenance.core.oci import load_json_object

    with pytest.raises(MalformedEvidenceError):
        load_json_object(DEEP)
    with pytest.raises(ProvenanceError):
        load_json_object(JUST_TOO_DEEP)
