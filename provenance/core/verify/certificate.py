"""Keyless signers: the Fulcio certificate, checked as Sigstore clients check it.

* chain: the leaf chains to a CA of the trust root at the signing time, and that CA was valid then;
* signed time: every verified time (the log's integrated time, each RFC 3161 timestamp) lies in the
  certificate's validity, ends included;
* profile: a code-signing certificate (digitalSignature, codeSigning);
* SCT: an embedded precertificate SCT from a CT log of the trust root verifies;
* identity: SAN (exact or anchored regexp, OtherName decoded) and OIDC issuer (both extensions) match the policy,
  and the GitHub workflow claims when the policy names them.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.certificate_transparency import LogEntryType, SignedCertificateTimestamp
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store
from cryptography.x509.verification import VerificationError as X509VerificationError

from provenance.core.claims import WorkflowClaims, der_utf8, read_claims
from provenance.core.trustroot import CertificateAuthority, TrustRoot, spki_sha256
from provenance.core.types import (
    IdentityPolicy,
    Outcome,
    Stage,
)
from provenance.core.verify.checks import Run
from provenance.core.verify.encoding import short

_OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")


_OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")


_OID_OTHERNAME_USERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


@dataclass
class Signer:
    """Who signed: a leaf certificate (keyless) or a configured public key."""

    key: PublicKeyTypes | None = None
    cert: x509.Certificate | None = None
    fingerprint: str = ""  # key-based only: sha256 of the DER SubjectPublicKeyInfo
    identity: str = ""
    issuer: str = ""
    sans: list[str] = field(default_factory=list)
    presented_chain: list[x509.Certificate] = field(default_factory=list)  # the chain annotation, untrusted

    def describe(self) -> str:
        if self.fingerprint:
            return f"the public key {self.fingerprint}"
        return f"the certificate of {self.identity or '(no identity)'}"


def readable(cert: x509.Certificate) -> x509.Certificate:
    """Return ``cert`` once every field we read parses; raises ``ValueError`` otherwise.

    ``cryptography`` parses fields lazily, so a damaged certificate loads and fails later, at first use.
    """
    _ = (cert.issuer, cert.subject, cert.not_valid_before_utc, cert.not_valid_after_utc, cert.extensions)
    _ = cert.public_key()
    return cert


def check_certificate(run: Run, signer: Signer, trust_root: TrustRoot, *, fallback: tuple[datetime, str]) -> None:
    """Keyless only: chain, CA window, certificate profile and SCT, at the best time the run knows.

    That time is the log's verified integrated time, else a verified signed time, else the log's unverified
    integrated time, else ``fallback`` (a time and how to name it). Records checks; returns nothing.
    """
    cert = signer.cert
    if cert is None:
        return
    if run.integrated_time is not None:
        when = datetime.fromtimestamp(run.integrated_time, tz=UTC)
        source = "the log's integrated time"
    elif run.signed_time is not None:
        when, source = run.signed_time, run.signed_time_source or "the signed timestamp"
    elif run.claimed_time is not None:
        # The log entry did not verify (that failure is reported); still explain the certificate at its time.
        when = datetime.fromtimestamp(run.claimed_time, tz=UTC)
        source = "the log's (unverified) integrated time"
    else:
        when, source = fallback

    chain = check_chain(run, cert, trust_root, when, source)
    check_signed_times(run, cert, reported=when)
    check_profile(run, cert)
    if chain is not None:
        issuer: x509.Certificate | None = chain[1] if len(chain) > 1 else chain[0]
    else:
        # The chain failed already; still say whether a CT log we trust saw this certificate, which tells a
        # certificate from another Sigstore instance apart from a forged one. The issuer named by the untrusted
        # chain annotation only serves to recompute what the CT log signed.
        issuer = next((c for c in signer.presented_chain if c.subject == cert.issuer), None)
    if issuer is not None:
        check_sct(run, cert, issuer, trust_root)


def check_signed_times(run: Run, cert: x509.Certificate, *, reported: datetime | None = None) -> None:
    """Every verified time (a SET's integrated time, each RFC 3161 timestamp) must lie in the certificate's
    validity, ends included: one time inside does not excuse another outside. ``reported`` is a time the chain
    check already judged (not reported twice). Records ``signed_time_ok`` or the failure."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if not run.signed_times:
        if not any(not c.ok and c.stage in {Stage.TLOG, Stage.TIMESTAMP} for c, _ in run.checks):
            run.fail(
                Stage.TIMESTAMP,
                "no_signed_time",
                "no verified time for the signature: no signed entry timestamp and no trusted RFC 3161 timestamp, "
                "so nothing shows the short-lived certificate was valid when it signed",
                "sign with a transparency log or a timestamp authority of the trust root",
                Outcome.UNTRUSTED,
            )
        return
    outside = [(when, source) for when, source in run.signed_times if not start <= when <= end]
    if outside:
        if all(when == reported for when, _ in outside):
            return  # the chain check reported this very time already
        listed = "; ".join(f"{source} is {when.isoformat()}" for when, source in outside[:4])
        run.fail(
            Stage.CHAIN,
            "cert_not_valid_at_signing_time",
            f"the certificate is valid {start.isoformat()} .. {end.isoformat()}, but {listed}",
            "every signed time must lie in the certificate's lifetime; the signature or its timestamp was made "
            "with an expired certificate, re-sign",
            Outcome.UNTRUSTED,
        )
        return
    listed = ", ".join(f"{source} ({when.isoformat()})" for when, source in run.signed_times[:4])
    run.ok(Stage.CHAIN, "signed_time_ok", f"every signed time lies in the certificate's validity: {listed}")


def check_chain(
    run: Run, cert: x509.Certificate, trust_root: TrustRoot, when: datetime, source: str
) -> list[x509.Certificate] | None:
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        run.fail(
            Stage.CHAIN,
            "cert_not_valid_at_signing_time",
            f"the certificate is valid {cert.not_valid_before_utc.isoformat()} .. "
            f"{cert.not_valid_after_utc.isoformat()}, but {source} is {when.isoformat()}",
            "the signature was logged outside the certificate's lifetime; re-sign",
            Outcome.UNTRUSTED,
        )
        # Check the chain itself at issuance, as cosign does, so one cause gives one failure.
        when = cert.not_valid_before_utc

    # Fulcio certificates carry codeSigning, not clientAuth: relax only the EKU rule (as sigstore does).
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    problems: list[str] = []
    expired_ca: CertificateAuthority | None = None
    for ca in trust_root.certificate_authorities:
        verifier = (
            PolicyBuilder()
            .store(Store(list(ca.certificates)))
            .time(when)
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
            .build_client_verifier()
        )
        try:
            chain = list(verifier.verify(cert, []).chain)
        except (X509VerificationError, x509.UnsupportedGeneralNameType, ValueError) as err:
            problems.append(f"{ca.name}: {err}")
            continue
        if not ca.validity.contains(when):
            expired_ca = ca
            continue
        run.ok(
            Stage.CHAIN,
            "chain_ok",
            f"the certificate chains to {ca.name} ({ca.uri or 'no uri'}) of the trust root "
            f"{trust_root.name!r} at {when.isoformat()}",
        )
        return chain
    if expired_ca is not None:
        run.fail(
            Stage.CHAIN,
            "ca_not_valid_at_time",
            f"the certificate chains to {expired_ca.name}, but that CA is trusted only "
            f"{expired_ca.validity.describe()} and the signing time is {when.isoformat()}",
            "the CA was not trusted when this was signed; re-sign with a current certificate",
            Outcome.UNTRUSTED,
        )
        return None
    run.fail(
        Stage.CHAIN,
        "chain_untrusted",
        f"the certificate (issuer {short(cert.issuer.rfc4514_string())}) does not chain to any CA of the trust "
        f"root {trust_root.name!r}: {short('; '.join(problems), 300)}",
        "it was issued by another Sigstore instance (a private Fulcio, or staging vs production): "
        "verify with that instance's trusted root",
        Outcome.UNTRUSTED,
    )
    return None


def check_profile(run: Run, cert: x509.Certificate) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        is_code_signing = usage.digital_signature and ExtendedKeyUsageOID.CODE_SIGNING in eku
    except (x509.ExtensionNotFound, ValueError):
        is_code_signing = False
    if is_code_signing:
        run.ok(Stage.CHAIN, "code_signing_ok", "the certificate is for code signing (digitalSignature, codeSigning)")
    else:
        run.fail(
            Stage.CHAIN,
            "cert_not_code_signing",
            "the certificate lacks key usage digitalSignature or extended key usage codeSigning",
            "only code-signing certificates (as Fulcio issues) may sign artifacts",
            Outcome.UNTRUSTED,
        )


def check_sct(run: Run, cert: x509.Certificate, issuer: x509.Certificate, trust_root: TrustRoot) -> None:
    try:
        scts = list(cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value)
    except (x509.ExtensionNotFound, ValueError):
        scts = []
    if not scts:
        run.fail(
            Stage.SCT,
            "sct_missing",
            "the certificate has no embedded signed certificate timestamp (SCT)",
            "Sigstore certificates are logged in certificate transparency; this one was not",
            Outcome.UNTRUSTED,
        )
        return
    problems: list[tuple[str, str]] = []
    for sct in scts:
        code, text = _sct_verdict(sct, cert, issuer, trust_root)
        if code == "sct_ok":
            run.ok(Stage.SCT, code, text)
            return
        problems.append((code, text))
    code = problems[0][0]
    message = f"no embedded SCT verifies with a CT log of the trust root {trust_root.name!r}: "
    message += "; ".join(text for _, text in problems)
    if code == "sct_unknown_log":
        hint = "the certificate was logged by a CT log this trust root does not know; use that instance's trusted root"
        run.fail(Stage.SCT, code, message, hint, Outcome.UNTRUSTED)
    elif code == "sct_log_not_valid_at_time":
        run.fail(Stage.SCT, code, message, "the CT log key was not trusted at that time", Outcome.UNTRUSTED)
    else:
        run.fail(Stage.SCT, code, message, "the certificate or its SCT was altered", Outcome.INVALID)


def _sct_verdict(
    sct: SignedCertificateTimestamp, cert: x509.Certificate, issuer: x509.Certificate, trust_root: TrustRoot
) -> tuple[str, str]:
    """Return ``(code, message)`` for one embedded SCT: ``sct_ok`` when it verifies, else what is wrong."""
    log = trust_root.ctlog_key(sct.log_id)
    if log is None:
        return "sct_unknown_log", f"SCT from unknown CT log {sct.log_id.hex()}"
    name = log.base_url or log.log_id_hex
    try:
        if sct.entry_type != LogEntryType.PRE_CERTIFICATE or not isinstance(
            sct.signature_hash_algorithm, hashes.SHA256
        ):
            return "sct_invalid", f"SCT from {name} is not a SHA-256 precertificate SCT"
        timestamp = sct.timestamp.replace(tzinfo=UTC)
        signed_data = _sct_signed_data(sct, cert, issuer)
    except (ValueError, OverflowError) as err:  # cryptography parses lazily: a damaged SCT fails only here
        return "sct_invalid", f"SCT from {name} cannot be read: {short(str(err))}"
    if not log.validity.contains(timestamp):
        return "sct_log_not_valid_at_time", (
            f"SCT time {timestamp.isoformat()} is outside the window of {name}: {log.validity.describe()}"
        )
    if not log.verify(sct.signature, signed_data):
        return "sct_invalid", f"SCT signature from {name} does not verify"
    return "sct_ok", f"the embedded SCT verifies with the CT log {name}"


def _sct_signed_data(sct: SignedCertificateTimestamp, cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """RFC 6962 §3.2 ``digitally-signed`` struct for a precertificate SCT."""
    tbs = cert.tbs_precertificate_bytes
    issuer_key_hash = spki_sha256(issuer.public_key())
    millis: int = (sct.timestamp.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    return (
        struct.pack(">BBQH", sct.version.value, 0, millis, LogEntryType.PRE_CERTIFICATE.value)
        + issuer_key_hash
        + len(tbs).to_bytes(3, "big")
        + tbs
        + struct.pack(">H", len(sct.extension_bytes))
        + sct.extension_bytes
    )


def check_identity(
    run: Run, signer: Signer, policy: IdentityPolicy | None, claims: WorkflowClaims | None = None
) -> None:
    if signer.cert is not None:
        _check_issuer_extensions(run, signer.cert)
        if claims is not None and not claims.is_empty():
            _check_claims(run, signer.cert, claims)
    if policy is None:
        run.fail(
            Stage.IDENTITY,
            "identity_policy_missing",
            f"no expected identity and issuer are configured; the certificate says {signer.identity or '(none)'} "
            f"(issuer {signer.issuer or 'unknown'}), which proves nothing about who should have signed",
            "set the expected certificate identity (or identity regexp) and OIDC issuer",
            Outcome.UNTRUSTED,
        )
        return
    if not (policy.identity or policy.identity_regexp) or not policy.issuer:
        run.fail(
            Stage.IDENTITY,
            "identity_policy_invalid",
            f"the identity policy {policy.describe()} needs an identity or identity regexp, and an issuer",
            "complete the policy",
            Outcome.ERROR,
        )
        return
    found = ", ".join(signer.sans) or "no subject alternative name"
    if policy.identity:
        matched = policy.identity in signer.sans
    else:
        try:
            pattern = re.compile(policy.identity_regexp)
        except re.error as err:
            run.fail(
                Stage.IDENTITY,
                "identity_policy_invalid",
                f"the identity regexp {policy.identity_regexp!r} does not compile: {err}",
                "fix the policy's identity regexp",
                Outcome.ERROR,
            )
            return
        matched = any(pattern.fullmatch(san) for san in signer.sans)
        if _is_broad(pattern):
            run.ok(
                Stage.IDENTITY,
                "identity_regexp_broad",
                f"warning: the identity regexp {policy.identity_regexp!r} matches almost any identity "
                "(it matches both an empty identity and an unrelated one)",
            )
    expected = policy.identity or f"/{policy.identity_regexp}/"
    if matched:
        run.ok(Stage.IDENTITY, "identity_ok", f"the certificate identity {found} matches {expected}")
    else:
        run.fail(
            Stage.IDENTITY,
            "identity_mismatch",
            f"expected the identity {expected}, found {found}",
            f"re-sign with the identity {expected}, or change the policy's identity to {signer.identity} "
            "if that signer is trusted",
            Outcome.UNTRUSTED,
        )
    if not signer.issuer:
        run.fail(
            Stage.IDENTITY,
            "issuer_missing",
            f"expected the OIDC issuer {policy.issuer}, but the certificate has no issuer extension",
            "only Fulcio-issued certificates name their OIDC issuer",
            Outcome.UNTRUSTED,
        )
    elif signer.issuer == policy.issuer:
        run.ok(Stage.IDENTITY, "issuer_ok", f"the OIDC issuer is {policy.issuer}")
    else:
        run.fail(
            Stage.IDENTITY,
            "issuer_mismatch",
            f"expected the OIDC issuer {policy.issuer}, found {signer.issuer}",
            f"sign through {policy.issuer}, or change the policy's issuer to {signer.issuer} if it is trusted",
            Outcome.UNTRUSTED,
        )


def _is_broad(pattern: re.Pattern[str]) -> bool:
    """Whether an (anchored) identity pattern accepts identities that have nothing in common, like ``.*``."""
    probes = ("", "x", "mallory@evil.example", "https://github.com/evil/repo/.github/workflows/x.yml@refs/heads/x")
    return sum(1 for probe in probes if pattern.fullmatch(probe)) >= 3


def _check_issuer_extensions(run: Run, cert: x509.Certificate) -> None:
    """Fulcio writes the OIDC issuer twice (1.1 raw, 1.8 DER); two different values mean a forged certificate."""
    v2, v1 = _issuer_extension(cert, _OID_ISSUER_V2, True), _issuer_extension(cert, _OID_ISSUER_V1, False)
    if v2 and v1 and v2 != v1:
        run.fail(
            Stage.IDENTITY,
            "issuer_extensions_disagree",
            f"the certificate names two different OIDC issuers: {short(v2)} (1.3.6.1.4.1.57264.1.8) and "
            f"{short(v1)} (1.3.6.1.4.1.57264.1.1)",
            "a CA that writes two issuers is misbehaving; do not trust this certificate",
            Outcome.INVALID,
        )


def _check_claims(run: Run, cert: x509.Certificate, claims: WorkflowClaims) -> None:
    found = read_claims(cert)
    problems = claims.mismatches(found)
    if not problems:
        required = ", ".join(f"{k}={v}" for k, v in sorted(_claims_dict(claims).items()) if v)
        run.ok(Stage.IDENTITY, "workflow_claims_ok", f"the certificate's workflow claims match ({required})")
        return
    text = "; ".join(f"expected {name} {want!r}, found {got or '(none)'!r}" for name, want, got in problems)
    run.fail(
        Stage.IDENTITY,
        "workflow_claims_mismatch",
        f"the signing workflow's claims differ: {text}",
        "build from the expected repository, ref, trigger and commit, or change the policy's workflow claims",
        Outcome.UNTRUSTED,
    )


def _claims_dict(claims: WorkflowClaims) -> dict[str, str]:
    return {"repository": claims.repository, "ref": claims.ref, "trigger": claims.trigger, "sha": claims.sha}


def _issuer_extension(cert: x509.Certificate, oid: x509.ObjectIdentifier, is_der: bool) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
    return (der_utf8(raw) if is_der else raw.decode("utf-8", "replace")) or None


def sans_of(cert: x509.Certificate) -> list[str]:
    """The certificate's subject alternative names as text, OtherName usernames decoded (Fulcio's 1.7 OID)."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    result: list[str] = []
    for name in names:
        if isinstance(name, x509.UniformResourceIdentifier | x509.RFC822Name | x509.DNSName):
            result.append(name.value)
        elif isinstance(name, x509.OtherName) and name.type_id == _OID_OTHERNAME_USERNAME:
            # Fulcio's username identities (private deployments): a DER UTF8String; compare the decoded text.
            text = der_utf8(name.value)
            if text is not None:
                result.append(text)
    return result


def oidc_issuer(cert: x509.Certificate) -> str | None:
    """The OIDC issuer: the DER-encoded 1.8 extension, else the legacy 1.1 extension (raw bytes)."""
    for oid, is_der in ((_OID_ISSUER_V2, True), (_OID_ISSUER_V1, False)):
        try:
            ext = cert.extensions.get_extension_for_oid(oid).value
        except (x509.ExtensionNotFound, ValueError):
            continue
        raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
        text = der_utf8(raw) if is_der else raw.decode("utf-8", "replace")
        if text:
            return text
    return None
