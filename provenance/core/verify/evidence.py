"""From found evidence to verdicts: verify each piece (the one way in), then judge the artifact.

:func:`verify_layer` dispatches one piece of evidence by format to the cosign legacy or the Sigstore bundle
verifier; scans, the command line and the policy engine's re-verification all go through it.

The artifact verdict is decided by the cryptographic results alone: *verified* iff at least one signature
over this digest verified under the trust root and the expected identity; *unsigned* when no signature was
found; *failed* when a signature was definitely bad (malformed, invalid, untrusted); *error* when signatures
exist but none could be checked (unsupported format, unreachable service). The first failure is the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from provenance.core.discovery import COSIGN_SIGN_PREDICATE, Discovery, FoundEvidence
from provenance.core.trustroot import TrustRoot
from provenance.core.types import (
    CheckResult,
    Digest,
    Format,
    IdentityPolicy,
    Kind,
    Outcome,
    SignedLayer,
    Stage,
    VerificationResult,
)
from provenance.core.verify import bundle, cosign

logger = logging.getLogger(__name__)
COSIGN_FORMATS = frozenset({Format.COSIGN_SIG, Format.COSIGN_ATT})
# Fetch problems that mean "not checked" (error), as opposed to "unreadable" (malformed, failed).
UNCHECKED_CODES = frozenset({"limit_exceeded", "redirect_refused", "too_many_redirects", "egress_refused",
                             "authentication_failed", "access_failed", "transient", "registry_error"})
UNSIGNED_FORMATS = frozenset({Format.COSIGN_SBOM, Format.BUILDKIT})


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
    checked against the trust root and ``identity`` (without one, a keyless signature is never verified: it
    shows only that *someone* with a certificate signed). ``require_tlog=False`` accepts key-based evidence
    that was never logged (cosign's ``--insecure-ignore-tlog``), as the named leniency ``not_logged``.
    """
    if found.problem is not None or found.layer is None:
        problem = found.problem or CheckResult(Stage.FORMAT, "malformed", False, "evidence could not be read")
        # Evidence that could not be fetched (a budget, a refused redirect, access) was not checked: an error,
        # never a pass and not proof that it is bad either.
        outcome = Outcome.ERROR if problem.code in UNCHECKED_CODES else Outcome.MALFORMED
        return Verified(found, VerificationResult(outcome, (problem,)))
    try:
        result, statement = verify_layer(
            found.layer,
            format=found.format,
            kind=found.kind,
            covers=found.covers,
            trust_root=trust_root,
            identity=identity,
            public_keys=public_keys,
            require_tlog=require_tlog,
        )
    except (RecursionError, MemoryError, ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
        # A verifier must not crash on evidence, but if a parser misses a case, the cost is this one piece of
        # evidence (an error: unchecked), never the image's other, valid signatures.
        logger.exception("verifier failed on %s evidence at %s", found.format, found.location)
        problem = CheckResult(Stage.FORMAT, "verifier_failed", False,
                              f"this evidence could not be checked: {type(err).__name__}",
                              "report this evidence to the Provenance maintainers")
        return Verified(found, VerificationResult(Outcome.ERROR, (problem,)))
    return Verified(found, result, statement)


def verify_discovery(
    found: Discovery,
    *,
    trust_root: TrustRoot,
    identity: IdentityPolicy | None,
    public_keys: tuple[bytes, ...] = (),
    require_tlog: bool = True,
) -> list[Verified]:
    """Verify every piece of evidence a discovery found, in its order; never raises on bad evidence.

    No I/O: safe on worker threads. Arguments as for :func:`verify_evidence`.
    """
    return [
        verify_evidence(e, trust_root=trust_root, identity=identity, public_keys=public_keys,
                        require_tlog=require_tlog)
        for e in found.evidence
    ]


def judge_node(found: Discovery, results: list[Verified], digest: Digest) -> Verdict:
    """Return the verdict of the manifest ``digest`` of a discovery, from the results of its signatures.

    Only signatures over ``digest`` itself count (see :func:`deciding_signatures` and :func:`judge`).
    """
    mine = [v for v in results if v.evidence.covers == digest and v.evidence.kind == Kind.SIGNATURE]
    return judge(deciding_signatures(mine), looked_at=found.looked_at(digest))


def verify_layer(
    layer: SignedLayer,
    *,
    format: str,
    kind: str,
    covers: Digest,
    trust_root: TrustRoot,
    identity: IdentityPolicy | None,
    public_keys: tuple[bytes, ...] = (),
    require_tlog: bool = True,
) -> tuple[VerificationResult, dict[str, Any] | None]:
    """Verify one stored or fetched piece of evidence of ``format`` about the image ``covers``.

    The one way in for scans, the command line and the policy engine's re-verification alike. Returns the
    result and, for a verified attestation, its in-toto statement (``None`` otherwise: a statement is content
    someone vouched for only when its evidence verified).
    """
    if format in UNSIGNED_FORMATS:
        return VerificationResult(Outcome.UNSIGNED, (CheckResult(
            Stage.SIGNATURE, "unsigned_evidence", False,
            f"{format} evidence carries no signature: its content is shown but proves nothing",
            "Attach it as a signed attestation instead (cosign attest --type spdxjson|cyclonedx|slsaprovenance).",
        ),)), None
    if format == Format.SIGSTORE_BUNDLE:
        # A bundle attached to an image (an OCI referrer) signs the image manifest: a DSSE bundle (cosign 3
        # ``sign`` writes one with predicate https://sigstore.dev/cosign/sign/v1; GitHub and ``cosign attest``
        # write attestations) names the image digest as an in-toto subject, a message signature signs it.
        outcome = bundle.verify_bundle(layer.payload, artifact=covers, trust_root=trust_root, identity=identity,
                                       public_keys=public_keys, require_tlog=require_tlog)
        return _as_kind(outcome, kind), outcome.statement
    if format not in COSIGN_FORMATS:
        return VerificationResult(Outcome.UNSUPPORTED, (CheckResult(
            Stage.UNSUPPORTED, "notation_unsupported" if format == Format.NOTATION else "format_unsupported",
            False, f"Provenance does not verify {format} evidence; it is recorded, not trusted",
            "Sign with cosign / Sigstore as well, or verify this format with its own tool.",
        ),)), None
    attempts: list[tuple[VerificationResult, dict[str, Any] | None]] = []
    for key in public_keys or (None,):
        if kind == Kind.SIGNATURE:
            attempt: tuple[VerificationResult, dict[str, Any] | None] = (cosign.verify_signature_layer(
                layer, image_digest=covers, trust_root=trust_root, identity=identity, public_key=key,
                require_tlog=require_tlog), None)
        else:
            result, statement = cosign.verify_attestation_layer(
                layer, image_digest=covers, trust_root=trust_root, identity=identity, public_key=key,
                require_tlog=require_tlog)
            attempt = (result, statement if result.is_verified else None)
        if attempt[0].is_verified:
            return attempt
        attempts.append(attempt)
    return attempts[0]


def _as_kind(outcome: bundle.BundleVerification, kind: str) -> VerificationResult:
    """A DSSE bundle counts as an image *signature* only when its signed statement says so (predicate
    ``https://sigstore.dev/cosign/sign/v1``, what cosign 3 writes): an SBOM or provenance attestation is not a
    signature, whatever an evidence row or an annotation claims (the GHSA-w6c6-c85g-mmv6 class)."""
    result = outcome.result
    if kind != Kind.SIGNATURE or outcome.content != "dsse" or not result.is_verified:
        return result
    predicate = (outcome.statement or {}).get("predicateType")
    if predicate == COSIGN_SIGN_PREDICATE:
        return result
    mismatch = CheckResult(
        Stage.SUBJECT, "predicate_type_mismatch", False,
        f"the bundle is taken as a signature, but its signed statement has the predicate type "
        f"{str(predicate)[:200]!r}, not {COSIGN_SIGN_PREDICATE}: it is an attestation, not a signature",
        "sign the image itself (cosign sign); an attestation does not stand in for a signature",
    )
    return replace(result, outcome=Outcome.INVALID, checks=(mismatch, *result.checks))


def deciding_signatures(signatures: list[Verified]) -> list[VerificationResult]:
    """The signatures an artifact's verdict rests on: its Sigstore bundles when it has any (cosign 3 signs with
    bundles and verifies them first), else its legacy ``.sig`` layers. Every signature is still verified, stored
    and shown; a legacy signature beside a bundle does not make up for a bundle that fails."""
    bundles = [v.result for v in signatures if v.evidence.format == Format.SIGSTORE_BUNDLE]
    return bundles or [v.result for v in signatures]


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
