"""The artifact verdict follows from the signature results only, and never calls "could not check" verified."""

from __future__ import annotations

from provenance.core.discovery import FoundEvidence
from provenance.core.trustroot import TrustRoot
from provenance.core.types import CheckResult, Digest, Outcome, SignedLayer, Stage, VerificationResult
from provenance.core.verify import judge, verify_evidence

FAIL = CheckResult(Stage.SIGNATURE, "signature_invalid", False, "bad", "")


def result(outcome: Outcome) -> VerificationResult:
    return VerificationResult(outcome, () if outcome is Outcome.VERIFIED else (FAIL,))


def test_one_verified_signature_makes_the_artifact_verified() -> None:
    assert judge([result(Outcome.INVALID), result(Outcome.VERIFIED)], looked_at="x").status == "verified"


def test_no_signature_is_unsigned_and_says_where_it_looked() -> None:
    verdict = judge([], looked_at="repo:sha256-ab.sig")
    assert (verdict.status, verdict.code) == ("unsigned", "no_signature")
    assert "repo:sha256-ab.sig" in verdict.reason


def test_definite_failures_win_over_could_not_check() -> None:
    assert judge([result(Outcome.UNSUPPORTED), result(Outcome.INVALID)], looked_at="x").status == "failed"
    assert judge([result(Outcome.UNSUPPORTED), result(Outcome.ERROR)], looked_at="x").status == "error"


def _found(fmt: str, kind: str = "signature") -> FoundEvidence:
    digest = Digest.of(b"image")
    return FoundEvidence(kind, fmt, "repo:tag", digest, "image", Digest.of(b"layer"),
                         layer=SignedLayer("application/octet-stream", b"{}", {}))


def test_unsigned_and_unknown_formats_are_never_verified() -> None:
    root = TrustRoot.production()
    sbom = verify_evidence(_found("cosign-sbom", "sbom"), trust_root=root, identity=None)
    assert (sbom.result.outcome, sbom.result.failures[0].code) == (Outcome.UNSIGNED, "unsigned_evidence")
    notation = verify_evidence(_found("notation"), trust_root=root, identity=None)
    assert (notation.result.outcome, notation.result.failures[0].code) == (Outcome.UNSUPPORTED, "notation_unsupported")
    odd = verify_evidence(_found("something-new"), trust_root=root, identity=None)
    assert odd.result.outcome is Outcome.UNSUPPORTED and not odd.result.is_verified


# -- Sigstore bundles attached to images (OCI referrers) ---------------------------------------------------------

COSIGN_SIGN_V1 = "https://sigstore.dev/cosign/sign/v1"
IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"


def _bundle_evidence(raw: bytes, covers: Digest, kind: str = "signature") -> FoundEvidence:
    return FoundEvidence(kind, "sigstore-bundle", "repo:sha256-ab", covers, "image", Digest.of(raw),
                         layer=SignedLayer("application/vnd.dev.sigstore.bundle.v0.3+json", raw, {}))


def test_sigstore_bundles_over_an_image_verify_and_copies_fail() -> None:
    from provenance.core.testsigstore import TestSigstore, in_toto_statement
    from provenance.core.types import IdentityPolicy

    sigstore = TestSigstore.create(name="verification-tests")
    root = TrustRoot.from_json(sigstore.trusted_root_json(), name="verification-tests")
    policy = IdentityPolicy(issuer=ISSUER, identity=IDENTITY)
    image, other = Digest.of(b"image manifest"), Digest.of(b"another image manifest")
    # cosign 3 `sign`: a DSSE bundle whose in-toto subject is the image digest
    signed = sigstore.sign_dsse_bundle(in_toto_statement("registry.test/app", image.hex, COSIGN_SIGN_V1, {}),
                                       identity=IDENTITY, issuer=ISSUER)
    # a message signature over the manifest: its digest is the image digest
    blob = sigstore.sign_blob_bundle(b"image manifest", identity=IDENTITY, issuer=ISSUER)

    dsse = verify_evidence(_bundle_evidence(signed, image), trust_root=root, identity=policy)
    message = verify_evidence(_bundle_evidence(blob, image), trust_root=root, identity=policy)
    copied = verify_evidence(_bundle_evidence(signed, other), trust_root=root, identity=policy)
    copied_blob = verify_evidence(_bundle_evidence(blob, other), trust_root=root, identity=policy)
    unpolicied = verify_evidence(_bundle_evidence(signed, image), trust_root=root, identity=None)

    assert dsse.result.is_verified and dsse.statement is not None
    assert dsse.statement["predicateType"] == COSIGN_SIGN_V1
    assert message.result.is_verified
    assert copied.result.outcome is Outcome.INVALID and copied.result.failures[0].code == "subject_mismatch"
    assert copied_blob.result.outcome is Outcome.INVALID and copied_blob.result.failures[0].code == "artifact_mismatch"
    assert unpolicied.result.outcome is Outcome.UNTRUSTED
    assert judge([copied.result], looked_at="x").status == "failed"


def test_malformed_bundle_evidence_is_malformed_not_invalid() -> None:
    found = _bundle_evidence(b"{not json", Digest.of(b"image"))
    verified = verify_evidence(found, trust_root=TrustRoot.production(), identity=None)
    assert verified.result.outcome is Outcome.MALFORMED
    assert verified.result.failures[0].code == "bundle_not_json"


def test_bundles_decide_over_legacy_signatures_when_both_exist() -> None:
    from provenance.core.verify import Verified, deciding_signatures

    legacy_ok = Verified(_found("cosign-sig"), result(Outcome.VERIFIED))
    bundle_bad = Verified(_found("sigstore-bundle"), result(Outcome.INVALID))
    bundle_ok = Verified(_found("sigstore-bundle"), result(Outcome.VERIFIED))

    assert judge(deciding_signatures([legacy_ok]), looked_at="x").status == "verified"
    # as cosign 3 verifies: the bundle decides; the legacy signature is still stored and shown
    assert judge(deciding_signatures([legacy_ok, bundle_bad]), looked_at="x").status == "failed"
    assert judge(deciding_signatures([legacy_ok, bundle_bad, bundle_ok]), looked_at="x").status == "verified"
