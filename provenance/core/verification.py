"""From found evidence to verdicts: verify each piece, then judge the artifact.

The artifact verdict is decided by the cryptographic results alone: *verified* iff at least one signature
over this digest verified under the trust root and the expected identity; *unsigned* when no signature was
found; *failed* when a signature was definitely bad (malformed, invalid, untrusted); *error* when signatures
exist but none could be checked (unsupported format, unreachable service). The first failure is the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from provenance.core import bundle, cosign
from provenance.core.discovery import FoundEvidence
from provenance.core.trustroot import TrustRoot
from provenance.core.types import CheckResult, IdentityPolicy, Outcome, Stage, VerificationResult

COSIGN_FORMATS = frozenset({"cosign-sig", "cosign-att"})
BUNDLE_FORMAT = "sigstore-bundle"
UNSIGNED_FORMATS = frozenset({"cosign-sbom", "buildkit-attestation"})


@dataclass(frozen=True, slots=True)
class Verified:
    """A piece of evidence with its verification result and, for attestations, the verified statement."""

    evidence: FoundEvidence
    result: VerificationResult
    statement: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The trust status of one artifact: ``verified``, ``failed``, ``unsigned`` or ``error``."""

    status: str
    code: str
    reason: str


_MISSING_POLICY = CheckResult(
    Stage.IDENTITY,
    "identity_policy_missing",
    False,
    "no expected identity and issuer are configured, so a keyless signature proves nothing about who signed",
    "Set the expected certificate identity (or identity regexp) and OIDC issuer on the source.",
)


def _require_identity(result: VerificationResult, identity: IdentityPolicy | None) -> VerificationResult:
    # A keyless signature without an identity policy only shows that *someone* with a certificate signed:
    # never report that as verified.
    if identity is not None or result.key or result.outcome is not Outcome.VERIFIED:
        return result
    return replace(result, outcome=Outcome.UNTRUSTED, checks=(_MISSING_POLICY, *result.checks))


def _verified(found: FoundEvidence, result: VerificationResult, statement: dict[str, Any] | None) -> Verified:
    # A statement is content someone vouched for only when its evidence verified: never keep it otherwise.
    return Verified(found, result, statement if result.is_verified else None)


def verify_evidence(
    found: FoundEvidence,
    *,
    trust_root: TrustRoot,
    identity: IdentityPolicy | None,
    public_keys: tuple[bytes, ...] = (),
    require_tlog: bool = True,
) -> Verified:
    """Verify one piece of found evidence; never raises on bad evidence.

    With ``public_keys`` (PEM), a key-based signature verifies if any key verifies it; keyless evidence is
    checked against the trust root and ``identity``. ``require_tlog=False`` accepts key-based evidence that
    was never logged (cosign's ``--insecure-ignore-tlog``).
    """
    if found.problem is not None or found.layer is None:
        problem = found.problem or CheckResult(Stage.FORMAT, "malformed", False, "evidence could not be read")
        return Verified(found, VerificationResult(Outcome.MALFORMED, (problem,)))
    if found.format in UNSIGNED_FORMATS:
        return Verified(found, VerificationResult(Outcome.UNSIGNED, (CheckResult(
            Stage.SIGNATURE, "unsigned_evidence", False,
            f"{found.format} evidence carries no signature: its content is shown but proves nothing",
            "Attach it as a signed attestation instead (cosign attest --type spdxjson|cyclonedx|slsaprovenance).",
        ),)))
    if found.format == BUNDLE_FORMAT:
        return _verify_bundle_evidence(found, trust_root=trust_root, identity=identity, public_keys=public_keys,
                                       require_tlog=require_tlog)
    if found.format not in COSIGN_FORMATS:
        return Verified(found, VerificationResult(Outcome.UNSUPPORTED, (CheckResult(
            Stage.UNSUPPORTED, "notation_unsupported" if found.format == "notation" else "format_unsupported",
            False, f"Provenance does not verify {found.format} evidence; it is recorded, not trusted",
            "Sign with cosign / Sigstore as well, or verify this format with its own tool.",
        ),)))
    attempts: list[Verified] = []
    for key in public_keys or (None,):
        if found.kind == "signature":
            result = cosign.verify_signature_layer(found.layer, image_digest=found.covers, trust_root=trust_root,
                                                   identity=identity, public_key=key, require_tlog=require_tlog)
            attempt = Verified(found, _require_identity(result, identity))
        else:
            result, statement = cosign.verify_attestation_layer(found.layer, image_digest=found.covers,
                                                                trust_root=trust_root, identity=identity,
                                                                public_key=key, require_tlog=require_tlog)
            attempt = _verified(found, _require_identity(result, identity), statement)
        if attempt.result.is_verified:
            return attempt
        attempts.append(attempt)
    return attempts[0]


def _verify_bundle_evidence(
    found: FoundEvidence,
    *,
    trust_root: TrustRoot,
    identity: IdentityPolicy | None,
    public_keys: tuple[bytes, ...],
    require_tlog: bool,
) -> Verified:
    """A Sigstore bundle attached to an image (an OCI referrer): the signed artifact is the image manifest.

    A DSSE bundle (cosign 3 ``sign`` writes one with predicate ``https://sigstore.dev/cosign/sign/v1``; GitHub
    and ``cosign attest`` write attestations) must name the image digest as an in-toto subject; a message
    signature bundle must sign the image digest itself.
    """
    assert found.layer is not None
    outcome = bundle.verify_bundle(
        found.layer.payload,
        artifact=found.covers,
        trust_root=trust_root,
        identity=identity,
        public_keys=public_keys,
        require_tlog=require_tlog,
    )
    return _verified(found, _require_identity(outcome.result, identity), outcome.statement)


def judge(signatures: list[VerificationResult], *, looked_at: str) -> Verdict:
    """Return the artifact's verdict from the results of the signatures over its digest."""
    if any(r.is_verified for r in signatures):
        return Verdict("verified", "verified", "")
    if not signatures:
        return Verdict("unsigned", "no_signature", f"no signature found (looked for {looked_at})")
    # Could-not-check is "error" only when nothing was definitely wrong; either way it is never "verified".
    definite = [r for r in signatures if r.outcome not in {Outcome.ERROR, Outcome.UNSUPPORTED}]
    first = (definite or signatures)[0]
    failure = first.failures[0] if first.failures else None
    code = failure.code if failure else str(first.outcome)
    reason = failure.message if failure else f"signature {first.outcome}"
    return Verdict("failed" if definite else "error", code, reason)
