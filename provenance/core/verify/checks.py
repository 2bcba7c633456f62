"""The check run: every check of one piece of evidence, the checks its kind requires, and the verdict.

A result is VERIFIED only when no check failed **and** every check its evidence kind requires ran and passed
(:class:`Requirement`): a verifier that forgets a step cannot say "verified". Where Provenance accepts what the
reference implementation (sigstore-python) rejects, the reason is one of :class:`Leniency`, recorded on the result
and shown as a check of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from provenance.core.types import CheckResult, Leniency, Outcome, Stage, VerificationResult

if TYPE_CHECKING:
    from provenance.core.verify.certificate import Signer


class Requirement(StrEnum):
    """A check a kind of evidence must pass before it may be called verified."""

    FORMAT = "format"  # the evidence parsed
    SIGNATURE = "signature"  # the signature verifies with the signer's key
    SUBJECT = "subject"  # what was signed is this artifact
    KEY = "key"  # key-based: the signer is a configured public key
    CHAIN = "chain"  # keyless: the certificate chains to a trusted CA at the signing time
    CERTIFICATE_PROFILE = "certificate_profile"  # keyless: a code-signing certificate
    SCT = "sct"  # keyless: the certificate was logged in certificate transparency
    SIGNED_TIME = "signed_time"  # keyless: every verified time lies in the certificate's validity
    IDENTITY = "identity"  # keyless: the identity (SAN) matches the policy
    ISSUER = "issuer"  # keyless: the OIDC issuer matches the policy
    LOG = "log"  # the transparency-log entry verifies (or a named leniency stands in for it)
    LOG_BODY = "log_body"  # the log entry describes this signature (required whenever an entry is used)


KEYLESS_REQUIREMENTS = frozenset({
    Requirement.FORMAT, Requirement.SIGNATURE, Requirement.SUBJECT, Requirement.CHAIN,
    Requirement.CERTIFICATE_PROFILE, Requirement.SCT, Requirement.SIGNED_TIME, Requirement.IDENTITY,
    Requirement.ISSUER, Requirement.LOG,
})
KEY_REQUIREMENTS = frozenset({Requirement.FORMAT, Requirement.SIGNATURE, Requirement.SUBJECT, Requirement.KEY,
                              Requirement.LOG})

# Which passed check satisfies which requirement: the one table to read when asking "what does verified mean?".
SATISFIES: dict[str, Requirement] = {
    "format_ok": Requirement.FORMAT,
    "signature_ok": Requirement.SIGNATURE,
    "digest_ok": Requirement.SUBJECT,
    "subject_ok": Requirement.SUBJECT,
    "key_trusted": Requirement.KEY,
    "chain_ok": Requirement.CHAIN,
    "code_signing_ok": Requirement.CERTIFICATE_PROFILE,
    "sct_ok": Requirement.SCT,
    "signed_time_ok": Requirement.SIGNED_TIME,
    "identity_ok": Requirement.IDENTITY,
    "issuer_ok": Requirement.ISSUER,
    "tlog_ok": Requirement.LOG,  # an inclusion proof to a signed checkpoint, or a legacy layer's SET
    "tlog_promise_only": Requirement.LOG,  # v0.1 bundles only: a SET, no proof
    "tlog_proof_unsigned": Requirement.LOG,  # v0.1 bundles only: a SET and a proof without checkpoint
    "tlog_not_required": Requirement.LOG,  # the insecure opt-in (--insecure-ignore-tlog), a leniency
    "tlog_absent_tsa_only": Requirement.LOG,  # a trust domain without a log, a leniency
    "tlog_body_ok": Requirement.LOG_BODY,
}

LENIENCY_TEXT: dict[Leniency, str] = {
    Leniency.KEY_BASED: "a key-based bundle: sigstore-python verifies only certificate-based bundles; "
                        "checked here with the configured key",
    Leniency.INCLUSION_PROMISE: "a v0.1 bundle whose log evidence is a signed entry timestamp (a promise of "
                                "inclusion), which the v0.1 format allows; sigstore-python wants a proof",
    Leniency.INTOTO_ENTRY: "logged as an intoto/0.0.2 entry, which sigstore-python does not read; "
                           "its body is compared with the envelope here",
    Leniency.DSSE_V2_ENTRY: "logged as a Rekor v2 dsse/0.0.2 entry, which sigstore-python 4.5 does not read; "
                            "its body is compared with the envelope here",
    Leniency.KEY_REKOR_V2: "a key-based Rekor v2 entry: sigstore-python verifies only certificate-based bundles",
    Leniency.TSA_ONLY: "timestamped, not logged: the trust domain has no transparency log (nobody can monitor "
                       "it), and an RFC 3161 timestamp is the only signed time",
    Leniency.NOT_LOGGED: "not logged: the transparency-log requirement was switched off (insecure opt-in)",
    Leniency.TSA_END_INCLUSIVE: "the timestamp lies exactly at the end of its authority's validity, which the "
                                "Sigstore spec includes and sigstore-python excludes",
}


@dataclass
class Run:
    """The checks collected while verifying one piece of evidence."""

    require_tlog: bool
    checks: list[tuple[CheckResult, Outcome | None]] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    tlog: str = ""
    integrated_time: int | None = None  # set only once the SET verified with a trusted log key
    claimed_time: int | None = None  # the bundle's integratedTime, trusted or not
    signed_time: datetime | None = None  # the first verified RFC 3161 time
    signed_time_source: str = ""
    # every verified time and where it came from; each must lie in the certificate's validity
    signed_times: list[tuple[datetime, str]] = field(default_factory=list)
    required: set[Requirement] = field(default_factory=set)
    leniencies: list[Leniency] = field(default_factory=list)

    def ok(self, stage: Stage, code: str, message: str) -> None:
        self.checks.append((CheckResult(stage, code, True, message), None))

    def fail(self, stage: Stage, code: str, message: str, hint: str, outcome: Outcome) -> None:
        self.checks.append((CheckResult(stage, code, False, message, hint), outcome))

    def require(self, requirement: Requirement) -> None:
        self.required.add(requirement)

    def lenient(self, leniency: Leniency, stage: Stage = Stage.TLOG) -> None:
        """Record that this result rests on a named leniency; shown as a passed check with the explanation."""
        if leniency not in self.leniencies:
            self.leniencies.append(leniency)
            self.ok(stage, f"lenient_{leniency}", f"accepted, more leniently than sigstore-python: "
                                                  f"{LENIENCY_TEXT[leniency]}")

    def add_signed_time(self, when: datetime, source: str) -> None:
        self.signed_times.append((when, source))

    def missing(self, signer: Signer) -> list[Requirement]:
        """The required checks that did not pass (none ran, or they failed)."""
        required: frozenset[Requirement] | set[Requirement]
        if signer.cert is not None:
            required = KEYLESS_REQUIREMENTS | self.required
        elif signer.fingerprint:
            required = KEY_REQUIREMENTS | self.required
        else:
            required = {Requirement.SIGNATURE, Requirement.KEY} | self.required  # no signer: cannot verify
        passed = {SATISFIES[c.code] for c, outcome in self.checks if outcome is None and c.code in SATISFIES}
        return sorted(required - passed)

    def result(self, signer: Signer) -> VerificationResult:
        outcomes = {outcome for _, outcome in self.checks if outcome is not None}
        missing = self.missing(signer)
        if not outcomes and missing:
            # Nothing failed, yet not everything ran: never "verified" (a bug or an unforeseen input).
            self.fail(
                Stage.UNSUPPORTED,
                "checks_not_run",
                f"not every required check ran: {', '.join(missing)} did not pass",
                "this evidence could not be checked completely; report it with the evidence attached",
                Outcome.ERROR,
            )
            outcomes.add(Outcome.ERROR)
        verdict = next((o for o in _OUTCOME_ORDER if o in outcomes), Outcome.INVALID if outcomes else Outcome.VERIFIED)
        # Failures first, the ones that decide the verdict leading (so `reason` explains the outcome), then passes.
        ordered = [c for c, _ in sorted(self.checks, key=_rank)]
        return VerificationResult(
            outcome=verdict,
            checks=tuple(ordered),
            identity=signer.identity,
            issuer=signer.issuer,
            key=signer.fingerprint,
            tlog=self.tlog,
            integrated_time=self.integrated_time,
            extra=dict(self.extra),
            leniencies=tuple(self.leniencies),
        )


# Which failure means which verdict. Anything not listed (a bug) counts as INVALID, never as verified.
MALFORMED = Outcome.MALFORMED


_OUTCOME_ORDER = (Outcome.MALFORMED, Outcome.ERROR, Outcome.INVALID, Outcome.UNSUPPORTED, Outcome.UNTRUSTED)


# Among failures with the same verdict, the one a person should read first: what was signed and by whom, then the log.
_STAGE_ORDER = (
    Stage.FORMAT,
    Stage.TRUST_ROOT,
    Stage.SIGNATURE,
    Stage.SUBJECT,
    Stage.CHAIN,
    Stage.SCT,
    Stage.IDENTITY,
    Stage.TLOG,
)


def _rank(item: tuple[CheckResult, Outcome | None]) -> tuple[int, int]:
    """Sort key: failures by the verdict they imply, then by stage (the signer before the log); passes last."""
    check, outcome = item
    if outcome is None:
        return (len(_OUTCOME_ORDER), 0)
    by_outcome = _OUTCOME_ORDER.index(outcome) if outcome in _OUTCOME_ORDER else len(_OUTCOME_ORDER) - 1
    by_stage = _STAGE_ORDER.index(check.stage) if check.stage in _STAGE_ORDER else len(_STAGE_ORDER)
    return (by_outcome, by_stage)
