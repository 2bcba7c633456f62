"""The artifact verdict follows from the signature results only, and never calls "could not check" verified."""

from __future__ import annotations

from provenance.core.discovery import FoundEvidence
from provenance.core.trustroot import TrustRoot
from provenance.core.types import CheckResult, Digest, Outcome, SignedLayer, Stage, VerificationResult
from provenance.core.verification import judge, verify_evidence

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
