"""RFC 3161 signed timestamps: every signed time inside the certificate, authorities' windows with inclusive ends,
trust domains without a log, and cosign's timestamp annotation on legacy layers. Built with the test Sigstore's
timestamp authority, whose tokens sigstore-python itself accepts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from provenance.core.testsigstore import (
    GITHUB_ACTIONS_ISSUER,
    LogOptions,
    TestSigstore,
    TimestampAuthority,
    cosign_timestamp_annotation,
    in_toto_statement,
    with_timestamp_authority,
    with_timestamps,
)
from provenance.core.trustroot import TrustRoot
from provenance.core.types import (
    ANNOTATION_RFC3161,
    ANNOTATION_SIGNATURE,
    Digest,
    Format,
    IdentityPolicy,
    Kind,
    Leniency,
    Outcome,
    SignedLayer,
)
from provenance.core.verify import verify_bundle, verify_layer
from tests.core.test_differential import Case, reference_accepts

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
POLICY = IdentityPolicy(issuer=GITHUB_ACTIONS_ISSUER, identity=IDENTITY)
ARTIFACT = b"the released artifact\n"
IMAGE = Digest.of(b"the image manifest")
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore.create(name="timestamps")


@pytest.fixture(scope="module")
def tsa() -> TimestampAuthority:
    return TimestampAuthority(name="test-tsa")


@pytest.fixture(scope="module")
def root(sigstore: TestSigstore, tsa: TimestampAuthority) -> TrustRoot:
    return TrustRoot.from_json(with_timestamp_authority(sigstore.trusted_root(), tsa), name="timestamps")


def _codes(result: Any) -> list[str]:
    return [c.code for c in result.failures]


def _both(raw: bytes, root: TrustRoot) -> tuple[Any, bool]:
    ours = verify_bundle(raw, artifact=ARTIFACT, trust_root=root, identity=POLICY).result
    return ours, reference_accepts(Case("t", raw, ARTIFACT, root, POLICY))[0]


def _signed(sigstore: TestSigstore, *, version: str = "0.3", log: LogOptions | None = None) -> bytes:
    return sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER, version=version,
                                     now=NOW, log=log or LogOptions())


@pytest.mark.parametrize("log", [LogOptions(), LogOptions(with_inclusion_promise=False)], ids=["with-set", "tsa-only"])
def test_a_trusted_timestamp_is_a_signed_time(sigstore: TestSigstore, tsa: TimestampAuthority, root: TrustRoot,
                                              log: LogOptions) -> None:
    raw = with_timestamps(_signed(sigstore, log=log), tsa, gen_time=NOW + timedelta(seconds=5))

    ours, reference = _both(raw, root)

    assert reference and ours.is_verified, ours.failures
    passed = {c.code for c in ours.checks if c.ok}
    assert {"timestamp_ok", "signed_time_ok"} <= passed and not ours.leniencies


@pytest.mark.parametrize("engine", ["sigstore", "own"])
def test_a_timestamp_outside_the_certificate_fails_although_the_log_time_is_inside(
    sigstore: TestSigstore, tsa: TimestampAuthority, root: TrustRoot, engine: str
) -> None:
    # "own": a v0.1 bundle with the SET only, which our engine verifies (sigstore-python reads no v0.1 SET)
    bundle = _signed(sigstore) if engine == "sigstore" else _signed(
        sigstore, version="0.1", log=LogOptions(with_inclusion_proof=False))
    raw = with_timestamps(bundle, tsa, gen_time=NOW + timedelta(hours=1))

    ours, reference = _both(raw, root)

    assert not reference
    assert not ours.is_verified and _codes(ours) == ["cert_not_valid_at_signing_time"], ours.failures
    assert "RFC 3161" in ours.failures[0].message


def test_a_timestamp_exactly_at_its_authoritys_end_counts_the_end_is_inclusive(
    sigstore: TestSigstore, tsa: TimestampAuthority
) -> None:
    at = NOW + timedelta(seconds=30)
    raw = with_timestamps(_signed(sigstore, log=LogOptions(with_inclusion_promise=False)), tsa, gen_time=at)
    ends_then = TrustRoot.from_json(with_timestamp_authority(sigstore.trusted_root(), tsa, valid_until=at),
                                    name="ends-then")
    ended_before = TrustRoot.from_json(with_timestamp_authority(sigstore.trusted_root(), tsa,
                                                                valid_until=at - timedelta(seconds=1)),
                                       name="ended-before")

    inclusive, reference = _both(raw, ends_then)
    assert not reference  # sigstore-python excludes the end
    assert inclusive.is_verified, inclusive.failures
    assert inclusive.leniencies == (Leniency.TSA_END_INCLUSIVE,)
    assert "lenient_tsa_end_inclusive" in {c.code for c in inclusive.checks if c.ok}

    late, reference = _both(raw, ended_before)
    assert not reference and not late.is_verified
    assert _codes(late)[0] in {"tsa_untrusted", "no_signed_time", "timestamp_invalid"}, late.failures


def test_a_timestamp_from_an_authority_the_root_does_not_know_is_not_a_signed_time(
    sigstore: TestSigstore
) -> None:
    stranger = TimestampAuthority(name="stranger-tsa")
    root = TrustRoot.from_json(with_timestamp_authority(sigstore.trusted_root(), TimestampAuthority(name="mine")),
                               name="other-tsa")
    raw = with_timestamps(_signed(sigstore, log=LogOptions(with_inclusion_promise=False)), stranger, gen_time=NOW)

    ours, reference = _both(raw, root)

    assert not reference and not ours.is_verified


def test_a_trust_domain_without_a_log_verifies_timestamped_not_logged(sigstore: TestSigstore,
                                                                      tsa: TimestampAuthority) -> None:
    tsa_only = TrustRoot.from_json(with_timestamp_authority(sigstore.trusted_root(), tsa, transparency_log=False),
                                   name="tsa-only")
    statement = in_toto_statement("app.tgz", Digest.of(ARTIFACT).hex, "https://slsa.dev/provenance/v1", {})
    raw = with_timestamps(sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER,
                                                    now=NOW), tsa, gen_time=NOW, without_log=True)

    result = verify_bundle(raw, artifact=ARTIFACT, trust_root=tsa_only, identity=POLICY).result

    assert result.is_verified, result.failures
    assert result.tlog == "timestamped_not_logged" and result.leniencies == (Leniency.TSA_ONLY,)
    # the same bundle against a root that has a log: the missing entry counts
    with_log = TrustRoot.from_json(with_timestamp_authority(sigstore.trusted_root(), tsa), name="with-log")
    assert _codes(verify_bundle(raw, artifact=ARTIFACT, trust_root=with_log, identity=POLICY).result) == [
        "tlog_missing"]
    # and without its timestamp, nothing dates the signature
    bare = json.loads(raw)
    del bare["verificationMaterial"]["timestampVerificationData"]
    assert not verify_bundle(json.dumps(bare).encode(), artifact=ARTIFACT, trust_root=tsa_only,
                             identity=POLICY).is_verified


# -- cosign's timestamp annotation on legacy layers -------------------------------------------------------------


def _annotated(layer: SignedLayer, annotation: str) -> SignedLayer:
    return SignedLayer(layer.media_type, layer.payload, {**layer.annotations, ANNOTATION_RFC3161: annotation})


def _verify_layer(layer: SignedLayer, root: TrustRoot) -> Any:
    return verify_layer(layer, format=Format.COSIGN_SIG, kind=Kind.SIGNATURE, covers=IMAGE, trust_root=root,
                        identity=POLICY)[0]


def test_cosign_timestamp_annotations_are_verified_not_just_read(sigstore: TestSigstore, tsa: TimestampAuthority,
                                                                 root: TrustRoot) -> None:
    import base64

    layer = sigstore.cosign_signature_layer(str(IMAGE), "registry.test/acme/app", identity=IDENTITY,
                                            issuer=GITHUB_ACTIONS_ISSUER, now=NOW)
    signature = base64.b64decode(layer.annotations[ANNOTATION_SIGNATURE])

    def check(annotation: str) -> Any:
        return _verify_layer(_annotated(layer, annotation), root)

    good = check(cosign_timestamp_annotation(tsa, signature, gen_time=NOW))
    late = check(cosign_timestamp_annotation(tsa, signature, gen_time=NOW + timedelta(hours=1)))
    other = check(cosign_timestamp_annotation(tsa, b"something else", gen_time=NOW))
    broken = check('{"SignedRFC3161Timestamp": 5}')
    stranger = check(cosign_timestamp_annotation(TimestampAuthority(name="x"), signature, gen_time=NOW))

    assert good.is_verified and "timestamp_ok" in {c.code for c in good.checks if c.ok}
    assert _codes(late) == ["cert_not_valid_at_signing_time"]
    assert _codes(other) == ["tsa_untrusted"]  # its imprint is not this signature's
    assert broken.outcome is Outcome.MALFORMED and _codes(broken) == ["timestamp_malformed"]
    assert _codes(stranger) == ["tsa_untrusted"]
