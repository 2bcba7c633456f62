"""Signatures of git commits and tags: gitsign (Sigstore keyless, CMS), SSH, and GPG (recognised).

gitsign writes a detached CMS/PKCS#7 ``SignedData`` (PEM ``SIGNED MESSAGE``) into the commit's ``gpgsig`` header,
over the commit object without that header (for a tag: appended to the message, over the tag up to it). It is
checked here as gitsign's own offline verification does, with the project's shared steps:

1. format: one ContentInfo of type signedData, detached, exactly one SignerInfo, bounded sizes and certificates;
2. subject: the signed ``messageDigest`` attribute is the digest of the commit without its signature, and the
   ``contentType`` attribute is ``data``;
3. signature: the SignerInfo's signature over the DER of its signed attributes verifies with the certificate;
4. log: gitsign's offline mode stores the Rekor entry (a serialized ``TransparencyLogEntry``, without its body)
   in the unsigned attribute ``1.3.6.1.4.1.57264.3.1``. The ``hashedrekord`` body is rebuilt from this signature
   (digest of the signed attributes, the signature, the certificate) as gitsign does, so the signed entry
   timestamp and the inclusion proof to a signed checkpoint prove that *this* signature was logged; a body
   carried along is compared with this signature. Without the attribute (gitsign's online mode) the log entry is
   not checked, and the commit is at best "signature valid, log entry not checked", never verified;
5. certificate: chain to a CA of the trust root at the log's integrated time, validity, code-signing profile,
   SCT (:mod:`provenance.core.verify.certificate`);
6. identity and issuer: the rules image policies use (exact or anchored regexp SAN, exact issuer).

SSH signatures are checked by ``ssh-keygen -Y`` against an allowed-signers file (namespace ``git``); GPG signatures
are recognised and reported as not checked.

A peer of ``cosign`` and ``bundle``: it uses the shared steps (``certificate``, ``tlog``, ``signature``,
``checks``) and imports neither format. Outside this package, use it through :mod:`provenance.core.verify`.

Framework-free: no Django, no Celery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import rfc8785
from asn1crypto import (
    cms,
    core,
    tsp,  # noqa: F401 - registers its CMS attribute types before any lookup caches the OID map
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from provenance.core.trustroot import TrustRoot
from provenance.core.types import CheckResult, IdentityPolicy, LogEvidence, Outcome, Stage, VerificationResult
from provenance.core.verify.certificate import Signer, check_certificate, check_identity, oidc_issuer, readable, sans_of
from provenance.core.verify.checks import MALFORMED, Requirement, Run
from provenance.core.verify.signature import verify_signature
from provenance.core.verify.tlog import (
    Expected,
    Proof,
    TlogEntry,
    check_body,
    check_set,
    inclusion_problem,
    trusted_log,
)

__all__ = [
    "MAX_CERTIFICATES",
    "MAX_SIGNATURE_BYTES",
    "OID_REKOR_ENTRY",
    "CommitStatus",
    "CommitVerification",
    "LogStatus",
    "SignatureKind",
    "split_signature",
    "verify_git_object",
]

OID_REKOR_ENTRY = "1.3.6.1.4.1.57264.3.1"
MAX_SIGNATURE_BYTES = 256 * 1024  # gitsign's are ~5 KiB with the log entry
MAX_CERTIFICATES = 10  # gitsign embeds the leaf; a chain has two or three more
_PEM_RE = re.compile(rb"^-----BEGIN (SIGNED MESSAGE|CMS|PKCS7)-----\n(.*?)\n?-----END \1-----\n?$", re.S)
_DIGESTS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_SIG_MARKERS = {
    b"-----BEGIN SIGNED MESSAGE-----": "x509",
    b"-----BEGIN CMS-----": "x509",
    b"-----BEGIN PKCS7-----": "x509",
    b"-----BEGIN SSH SIGNATURE-----": "ssh",
    b"-----BEGIN PGP SIGNATURE-----": "gpg",
    b"-----BEGIN PGP MESSAGE-----": "gpg",
}
_LOG_HINT = "the signature's log entry belongs to another signature or was altered; re-sign with gitsign"
_SSH_TIMEOUT = 20


class SignatureKind(StrEnum):
    NONE = "none"
    GITSIGN = "gitsign"  # x509 CMS, as gitsign and smimesign write it
    SSH = "ssh"
    GPG = "gpg"
    UNKNOWN = "unknown"


class CommitStatus(StrEnum):
    """A commit's (or tag's) signature verdict, as pages and policies read it."""

    VERIFIED = "verified"  # every check ran and passed, the log entry included
    LOG_NOT_CHECKED = "log_not_checked"  # signature, certificate and identity valid; no log entry to check
    NOT_CHECKED = "not_checked"  # a signature we recognise but cannot check here (GPG; SSH without signers)
    UNSIGNED = "unsigned"
    MALFORMED = "malformed"
    INVALID = "invalid"
    UNTRUSTED = "untrusted"
    UNSUPPORTED = "unsupported"
    ERROR = "error"


class LogStatus(StrEnum):
    VERIFIED = "verified"  # an inclusion proof to a checkpoint signed by a log of the trust root
    NOT_CHECKED = "not_checked"  # no entry in the signature (gitsign's online mode)
    INVALID = "invalid"
    NOT_APPLICABLE = "not_applicable"  # SSH and GPG signatures have no log


@dataclass(frozen=True, slots=True)
class CommitVerification:
    """What one commit's or tag's signature shows: verdict, checks (failures first), signer, log evidence."""

    kind: SignatureKind
    status: CommitStatus
    checks: tuple[CheckResult, ...] = ()
    identity: str = ""
    issuer: str = ""
    key: str = ""  # SSH: the key's SHA256 fingerprint
    log_status: LogStatus = LogStatus.NOT_APPLICABLE
    log_index: int | None = None
    integrated_time: int | None = None
    signing_time: datetime | None = None  # as the signature claims it (CMS signing-time), unverified
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_verified(self) -> bool:
        return self.status is CommitStatus.VERIFIED

    @property
    def reason(self) -> str:
        failures = [c for c in self.checks if not c.ok]
        return failures[0].message if failures else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "status": str(self.status),
            "verified": self.is_verified,
            "identity": self.identity,
            "issuer": self.issuer,
            "key": self.key,
            "log_status": str(self.log_status),
            "log_index": self.log_index,
            "integrated_time": self.integrated_time,
            "signing_time": self.signing_time.isoformat() if self.signing_time else None,
            "reasons": [c.message for c in self.checks if not c.ok],
            "checks": [c.as_dict() for c in self.checks],
        }


def split_signature(raw: bytes, *, object_type: str = "commit") -> tuple[bytes, bytes | None]:
    """Return ``(signed payload, signature text or None)`` of a raw commit or tag object, as git splits them.

    Commit: the ``gpgsig`` header with its continuation lines is the signature (leading spaces removed); the
    payload is every other line. Tag: the signature is the armored block that ends the message; the payload is
    everything before it (a ``gpgsig`` header in a tag is read too).
    """
    if object_type == "tag":
        head_end = raw.find(b"\n\n")
        for marker in _SIG_MARKERS:
            at = raw.rfind(b"\n" + marker, max(head_end, 0))
            if at >= 0 and head_end >= 0:
                return raw[:at + 1], raw[at + 1:]
    payload: list[bytes] = []
    signature: list[bytes] = []
    in_signature = False
    lines = raw.split(b"\n")
    for i, line in enumerate(lines):
        if in_signature and line.startswith(b" "):
            signature.append(line[1:])
            continue
        if line.startswith(b"gpgsig ") and not signature:
            in_signature = True
            signature.append(line[len(b"gpgsig "):])
            continue
        in_signature = False
        if line == b"":
            payload.append(b"\n".join(lines[i:]))
            break
        payload.append(line)
    if not signature:
        return raw, None
    return b"\n".join(payload), b"\n".join(signature) + b"\n"


def signature_kind(signature: bytes | None) -> SignatureKind:
    if signature is None:
        return SignatureKind.NONE
    first = signature.lstrip().split(b"\n", 1)[0].strip()
    return SignatureKind({"x509": "gitsign", "ssh": "ssh", "gpg": "gpg"}.get(_SIG_MARKERS.get(first, ""), "unknown"))


def verify_git_object(
    raw: bytes,
    *,
    object_type: str = "commit",
    trust_root: TrustRoot | None,
    identity: IdentityPolicy | None,
    allowed_signers: str = "",
) -> CommitVerification:
    """Verify the signature of one raw git commit or tag object (its content, as ``git cat-file`` gives it).

    ``trust_root`` and ``identity`` judge gitsign signatures, ``allowed_signers`` (the text of an OpenSSH
    allowed-signers file) SSH signatures. Never raises on bad evidence: the verdict says what is wrong.
    """
    payload, signature = split_signature(raw, object_type=object_type)
    kind = signature_kind(signature)
    if signature is None:
        return CommitVerification(kind, CommitStatus.UNSIGNED, (CheckResult(
            Stage.FORMAT, "unsigned", False, f"the {object_type} carries no signature",
            "sign commits (git config commit.gpgsign true, with gitsign or an SSH key)"),))
    if kind is SignatureKind.GITSIGN:
        if trust_root is None:
            return CommitVerification(kind, CommitStatus.ERROR, (CheckResult(
                Stage.TRUST_ROOT, "trust_root_missing", False, "no trust root to check a gitsign signature with",
                "configure the repository's trust root"),))
        return verify_gitsign(payload, signature, trust_root=trust_root, identity=identity)
    if kind is SignatureKind.SSH:
        return verify_ssh(payload, signature, allowed_signers=allowed_signers)
    if kind is SignatureKind.GPG:
        return CommitVerification(kind, CommitStatus.NOT_CHECKED, (CheckResult(
            Stage.UNSUPPORTED, "gpg_not_checked", False, "an OpenPGP (GPG) signature: not checked here",
            "no OpenPGP keys are configured; sign with gitsign or SSH to have commits checked"),))
    return CommitVerification(kind, CommitStatus.MALFORMED, (CheckResult(
        Stage.FORMAT, "signature_unknown", False,
        f"the signature block is of no known kind: {signature[:60].decode('ascii', 'replace')!r}",
        "gitsign writes -----BEGIN SIGNED MESSAGE-----, git's SSH signing -----BEGIN SSH SIGNATURE-----"),))


# --- gitsign ------------------------------------------------------------------------------------------------------


class _Unreadable(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Parsed:
    signer_info: cms.SignerInfo
    certificate: x509.Certificate
    others: list[x509.Certificate]
    digest_name: str
    signed_attrs_der: bytes
    signature: bytes
    signing_time: datetime | None
    message_digest: bytes
    content_type_ok: bool
    entry: bytes | None  # the serialized TransparencyLogEntry of the unsigned attribute


def verify_gitsign(
    payload: bytes, signature: bytes, *, trust_root: TrustRoot, identity: IdentityPolicy | None
) -> CommitVerification:
    """Verify a gitsign (CMS) signature over ``payload``; see the module's checklist."""
    run = Run(require_tlog=True)
    try:
        parsed = _parse_cms(signature)
    except _Unreadable as err:
        run.fail(Stage.FORMAT, err.code, str(err), "the signature block is damaged; re-sign the commit", MALFORMED)
        return _finish(run, Signer(), None, None)
    run.ok(Stage.FORMAT, "format_ok", "a detached CMS SignedData with one signer, as gitsign writes")
    cert = parsed.certificate
    signer = Signer(key=cert.public_key(), cert=cert, sans=sans_of(cert), issuer=oidc_issuer(cert) or "",
                    presented_chain=parsed.others)
    signer.identity = signer.sans[0] if signer.sans else ""

    # subject: what was signed is this commit
    digest = _DIGESTS[parsed.digest_name](payload).digest()
    if parsed.message_digest == digest and parsed.content_type_ok:
        run.ok(Stage.SUBJECT, "digest_ok", f"the signed message digest is the {parsed.digest_name} of this commit")
    elif not parsed.content_type_ok:
        run.fail(Stage.SUBJECT, "content_type_invalid", "the signed content-type attribute is not id-data",
                 "not a gitsign commit signature", Outcome.INVALID)
    else:
        run.fail(Stage.SUBJECT, "digest_mismatch",
                 f"the signature covers {parsed.digest_name}:{parsed.message_digest.hex()[:16]}..., this commit "
                 f"is {parsed.digest_name}:{digest.hex()[:16]}...",
                 "the commit was changed after it was signed (amended, rebased or edited); re-sign it",
                 Outcome.INVALID)

    # signature over the signed attributes
    if verify_signature(cert.public_key(), parsed.signature, parsed.signed_attrs_der):
        run.ok(Stage.SIGNATURE, "signature_ok", f"the signature verifies with {signer.describe()}")
    else:
        run.fail(Stage.SIGNATURE, "signature_invalid",
                 f"the signature over the signed attributes does not verify with {signer.describe()}",
                 "the signature block was altered or assembled from parts", Outcome.INVALID)

    # the log entry
    log_status = _check_log(run, parsed, signer, trust_root)

    # the certificate at the verified time, else the signature's own claim
    claimed = parsed.signing_time or cert.not_valid_before_utc
    what = "the signature's (unverified) signing-time attribute" if parsed.signing_time else \
        "the certificate's start (no signed time)"
    check_certificate(run, signer, trust_root, fallback=(claimed, what))
    check_identity(run, signer, identity)
    return _finish(run, signer, parsed, log_status)


def _finish(run: Run, signer: Signer, parsed: _Parsed | None, log_status: LogStatus | None) -> CommitVerification:
    result: VerificationResult = run.result(signer)
    failed = {c.code for c in result.checks if not c.ok}
    if result.is_verified:
        status = CommitStatus.VERIFIED
    elif failed and failed <= {"tlog_not_checked"}:
        status = CommitStatus.LOG_NOT_CHECKED
    else:
        values = {s.value for s in CommitStatus}
        status = CommitStatus(str(result.outcome)) if str(result.outcome) in values else CommitStatus.INVALID
    return CommitVerification(
        kind=SignatureKind.GITSIGN,
        status=status,
        checks=result.checks,
        identity=result.identity,
        issuer=result.issuer,
        log_status=log_status or LogStatus.NOT_CHECKED,
        log_index=int(result.extra["log_index"]) if "log_index" in result.extra else None,
        integrated_time=result.integrated_time,
        signing_time=parsed.signing_time if parsed else None,
        extra=dict(result.extra),
    )


def _parse_cms(signature: bytes) -> _Parsed:
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise _Unreadable("signature_too_large", f"the signature block is {len(signature)} bytes; the limit is "
                                                 f"{MAX_SIGNATURE_BYTES}")
    match = _PEM_RE.match(signature.strip() + b"\n")
    if match is None:
        raise _Unreadable("signature_unreadable", "the signature is not a PEM SIGNED MESSAGE block")
    try:
        der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise _Unreadable("signature_unreadable", f"the signature block is not base64: {err}") from err
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise _Unreadable("signature_unreadable", f"the CMS content is {info['content_type'].native}, "
                                                      "not signedData")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "data" or encap["content"].native is not None:
            raise _Unreadable("signature_not_detached", "the CMS signature is not detached over id-data")
        certificates = signed["certificates"]
        cert_count = 0 if isinstance(certificates, core.Void) else len(certificates)
        if cert_count > MAX_CERTIFICATES:
            raise _Unreadable("signature_too_many_certificates",
                              f"the signature carries {cert_count} certificates; at most {MAX_CERTIFICATES} are read")
        certs = []
        for choice in certificates if cert_count else []:
            if choice.name != "certificate":
                raise _Unreadable("signature_unreadable", f"an embedded certificate of type {choice.name}")
            certs.append((choice.chosen, readable(x509.load_der_x509_certificate(choice.chosen.dump()))))
        signer_infos = signed["signer_infos"]
        if len(signer_infos) != 1:
            raise _Unreadable("signature_signers", f"the signature has {len(signer_infos)} signers; gitsign "
                                                   "writes exactly one")
        signer_info = signer_infos[0]
        leaf = _signer_certificate(signer_info, certs)
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        if digest_name not in _DIGESTS:
            raise _Unreadable("signature_algorithm_unsupported", f"digest algorithm {digest_name} is not supported")
        attrs = signer_info["signed_attrs"]
        if isinstance(attrs, core.Void) or len(attrs) == 0:
            raise _Unreadable("signature_unreadable", "the signer has no signed attributes")
        found: dict[str, Any] = {}
        for attr in attrs:
            name = attr["type"].native
            if name in found or len(attr["values"]) != 1:
                raise _Unreadable("signature_unreadable", f"the signed attribute {name} is repeated or multi-valued")
            found[name] = attr["values"][0].native
        if "message_digest" not in found or "content_type" not in found:
            raise _Unreadable("signature_unreadable", "the signed attributes lack messageDigest or contentType")
        # The signature covers the DER SET OF the attributes, not their [0] IMPLICIT encoding.
        raw_attrs = attrs.dump()
        signed_attrs_der = b"\x31" + raw_attrs[1:]
        entry = None
        unsigned = signer_info["unsigned_attrs"]
        for attr in [] if isinstance(unsigned, core.Void) else unsigned:
            if attr["type"].dotted == OID_REKOR_ENTRY:
                values = attr["values"]
                if entry is not None or len(values) != 1:
                    raise _Unreadable("signature_unreadable", "more than one log entry in the signature")
                value = values[0]
                octets = core.OctetString.load(value.dump(), strict=True)
                entry = bytes(octets.native)
        signing_time = found.get("signing_time")
        if signing_time is not None and not isinstance(signing_time, datetime):
            signing_time = None
        return _Parsed(
            signer_info=signer_info,
            certificate=leaf,
            others=[c for _, c in certs if c != leaf],
            digest_name=digest_name,
            signed_attrs_der=signed_attrs_der,
            signature=bytes(signer_info["signature"].native),
            signing_time=signing_time.astimezone(UTC) if signing_time else None,
            message_digest=bytes(found["message_digest"]),
            content_type_ok=found["content_type"] == "data",
            entry=entry,
        )
    except _Unreadable:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as err:
        raise _Unreadable("signature_unreadable", f"the CMS signature cannot be read: {str(err)[:200]}") from err


def _signer_certificate(signer_info: cms.SignerInfo, certs: list[tuple[Any, x509.Certificate]]) -> x509.Certificate:
    sid = signer_info["sid"]
    for asn1_cert, cert in certs:
        if sid.name == "issuer_and_serial_number":
            if (asn1_cert.issuer == sid.chosen["issuer"]
                    and asn1_cert.serial_number == sid.chosen["serial_number"].native):
                return cert
        elif sid.name == "subject_key_identifier" and asn1_cert.key_identifier == sid.chosen.native:
            return cert
    raise _Unreadable("signature_no_certificate", "the signature does not carry the signer's certificate "
                                                  "(gitsign embeds it)")


def _check_log(run: Run, parsed: _Parsed, signer: Signer, trust_root: TrustRoot) -> LogStatus:
    if parsed.entry is None:
        run.fail(
            Stage.TLOG,
            "tlog_not_checked",
            "signature valid, log entry not checked: the signature carries no transparency-log entry (gitsign's "
            "online mode), so nothing here shows it was logged or when",
            "sign with a gitsign that embeds the log entry (offline verification, gitsign 0.8 and later)",
            Outcome.UNTRUSTED,
        )
        return LogStatus.NOT_CHECKED
    run.require(Requirement.LOG_BODY)
    try:
        entry = _read_entry(parsed)
    except _Unreadable as err:
        run.fail(Stage.FORMAT, err.code, str(err), _LOG_HINT, MALFORMED)
        return LogStatus.INVALID
    failures_before = sum(1 for c, o in run.checks if o is not None)
    run.extra["log_index"] = str(entry.log_index)
    run.extra["log_id"] = entry.log_id.hex()
    run.claimed_time = entry.integrated_time
    log = trusted_log(run, trust_root, entry.log_id)
    if log is None:
        return LogStatus.INVALID
    name = log.base_url or log.log_id_hex
    if (entry.kind, entry.version) != ("hashedrekord", "0.0.1"):
        run.fail(Stage.UNSUPPORTED, "tlog_body_unsupported",
                 f"the log entry is a {entry.kind[:40]}/{entry.version[:20]} entry; gitsign logs hashedrekord/0.0.1",
                 "this kind of log entry is not checked here", Outcome.UNSUPPORTED)
        return LogStatus.INVALID
    expected = Expected(layer_sha256=hashlib.sha256(parsed.signed_attrs_der).hexdigest(),
                        signatures=[parsed.signature])
    if entry.body is None:
        run.fail(Stage.FORMAT, "tlog_body_unreadable", "the log entry's body is not a Rekor entry", _LOG_HINT,
                 MALFORMED)
        return LogStatus.INVALID
    check_body(run, entry.body, signer, expected, what="signature", hint="the log entry is another signature's")
    if entry.set_signature is not None and entry.integrated_time is not None:
        logged_at = check_set(run, log, signature=entry.set_signature,
                              body_b64=base64.b64encode(entry.body_raw).decode(),
                              integrated_time=entry.integrated_time, log_index=entry.log_index, hint=_LOG_HINT)
        if logged_at is not None:
            run.ok(Stage.TLOG, "tlog_set_ok", f"the signed entry timestamp verifies: {name} included entry "
                                              f"{entry.log_index} at {logged_at.isoformat()}")
    if entry.proof is None or not entry.proof.checkpoint:
        run.fail(Stage.TLOG, "tlog_inclusion_proof_missing",
                 "the embedded log entry carries no inclusion proof with a signed checkpoint",
                 "gitsign embeds the proof; re-sign", Outcome.INVALID)
        return LogStatus.INVALID
    problem = inclusion_problem(entry, entry.proof, trust_root)
    if problem is not None:
        run.fail(Stage.TLOG, problem[0], problem[1], _LOG_HINT, Outcome.INVALID)
        return LogStatus.INVALID
    run.tlog = LogEvidence.INCLUSION_PROOF
    run.ok(Stage.TLOG, "tlog_ok", f"entry {entry.log_index} is in {name}: the inclusion proof leads to the root of "
                                  f"a checkpoint signed by the log (tree size {entry.proof.tree_size})")
    failed_now = sum(1 for c, o in run.checks if o is not None)
    return LogStatus.VERIFIED if failed_now == failures_before else LogStatus.INVALID


def hashedrekord_body(*, signed_attrs_der: bytes, signature: bytes, certificate: x509.Certificate) -> bytes:
    """The canonical Rekor ``hashedrekord`` 0.0.1 body gitsign logs for a signature (RFC 8785 JSON)."""
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    return rfc8785.dumps({
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(signed_attrs_der).hexdigest()}},
            "signature": {"content": base64.b64encode(signature).decode(),
                          "publicKey": {"content": base64.b64encode(pem).decode()}},
        },
    })


def _read_entry(parsed: _Parsed) -> TlogEntry:
    assert parsed.entry is not None
    fields = _proto(parsed.entry, "the log entry")
    log_id = _proto(_one(fields, 2, bytes, "logId"), "logId")
    kind_version = _proto(_one(fields, 3, bytes, "kindVersion"), "kindVersion")
    promise = fields.get(5)
    proof_fields = fields.get(6)
    proof = None
    if proof_fields:
        p = _proto(_one(fields, 6, bytes, "inclusionProof"), "inclusionProof")
        checkpoint = _proto(_one(p, 5, bytes, "checkpoint", b""), "checkpoint") if p.get(5) else {}
        hashes = [h for h in p.get(4, []) if isinstance(h, bytes)]
        if len(hashes) > 64:
            raise _Unreadable("tlog_entry_unreadable", "the inclusion proof has more than 64 hashes")
        proof = Proof(
            log_index=_one(p, 1, int, "inclusionProof.logIndex", 0),
            tree_size=_one(p, 3, int, "inclusionProof.treeSize", 0),
            root_hash=_one(p, 2, bytes, "inclusionProof.rootHash", b""),
            hashes=hashes,
            checkpoint=_one(checkpoint, 1, bytes, "checkpoint.envelope", b"").decode("utf-8", "replace"),
        )
    body_raw = _one(fields, 7, bytes, "canonicalizedBody", b"")
    if not body_raw:  # gitsign leaves it out: rebuilt from this very signature
        body_raw = hashedrekord_body(signed_attrs_der=parsed.signed_attrs_der, signature=parsed.signature,
                                     certificate=parsed.certificate)
    try:
        body = json.loads(body_raw)
        body = body if isinstance(body, dict) and isinstance(body.get("spec"), dict) else None
    except ValueError:
        body = None
    set_signature = _proto(_one(fields, 5, bytes, "inclusionPromise"), "inclusionPromise").get(1) if promise else None
    return TlogEntry(
        log_index=_one(fields, 1, int, "logIndex", 0),
        log_id=_one(log_id, 1, bytes, "logId.keyId"),
        kind=_one(kind_version, 1, bytes, "kind", b"").decode("utf-8", "replace"),
        version=_one(kind_version, 2, bytes, "version", b"").decode("utf-8", "replace"),
        integrated_time=_one(fields, 4, int, "integratedTime", 0) or None,
        set_signature=set_signature[0] if set_signature and isinstance(set_signature[0], bytes) else None,
        proof=proof,
        body_raw=body_raw,
        body=body,
    )


def _one(fields: dict[int, list[Any]], number: int, kind: type, what: str, default: Any = None) -> Any:
    values = fields.get(number)
    if not values:
        if default is None:
            raise _Unreadable("tlog_entry_unreadable", f"the log entry has no {what}")
        return default
    value = values[-1]
    if not isinstance(value, kind):
        raise _Unreadable("tlog_entry_unreadable", f"the log entry's {what} has the wrong wire type")
    return value


def _proto(data: bytes, what: str) -> dict[int, list[Any]]:
    """Decode one protobuf message's fields: varints as int, length-delimited as bytes (no other wire types)."""
    fields: dict[int, list[Any]] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i, what)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(data, i, what)
        elif wire == 2:
            length, i = _varint(data, i, what)
            if i + length > len(data):
                raise _Unreadable("tlog_entry_unreadable", f"{what} is truncated")
            value, i = data[i:i + length], i + length
        else:
            raise _Unreadable("tlog_entry_unreadable", f"{what} has an unexpected protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _varint(data: bytes, i: int, what: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise _Unreadable("tlog_entry_unreadable", f"{what} is not a protobuf message")
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i


# --- SSH ----------------------------------------------------------------------------------------------------------


def verify_ssh(payload: bytes, signature: bytes, *, allowed_signers: str) -> CommitVerification:
    """Verify an SSH signature (namespace ``git``) with ``ssh-keygen -Y`` against the allowed signers."""
    kind = SignatureKind.SSH
    if len(signature) > MAX_SIGNATURE_BYTES:
        return CommitVerification(kind, CommitStatus.MALFORMED, (CheckResult(
            Stage.FORMAT, "signature_too_large", False, f"the signature block is {len(signature)} bytes", ""),))
    with tempfile.TemporaryDirectory(prefix="provenance-ssh-") as tmp:
        sig_path = Path(tmp) / "signature"
        sig_path.write_bytes(signature)
        valid, key, message = _ssh(["-Y", "check-novalidate", "-n", "git", "-s", str(sig_path)], payload)
        if not valid:
            code, status = ("signature_invalid", CommitStatus.INVALID) if "incorrect signature" in message.lower() \
                or "signature verification failed" in message.lower() else ("signature_unreadable",
                                                                            CommitStatus.MALFORMED)
            return CommitVerification(kind, status, (CheckResult(
                Stage.SIGNATURE, code, False, f"the SSH signature does not verify over this commit: {message}",
                "the commit was changed after it was signed, or the signature is damaged"),))
        checks = [CheckResult(Stage.SIGNATURE, "signature_ok", True, f"the SSH signature verifies with {key}")]
        if not allowed_signers.strip():
            checks.insert(0, CheckResult(Stage.IDENTITY, "ssh_signers_missing", False,
                                         f"signed with the SSH key {key}, but no allowed signers are configured",
                                         "add the signers' keys to the repository's allowed signers"))
            return CommitVerification(kind, CommitStatus.NOT_CHECKED, tuple(checks), key=key)
        allowed = Path(tmp) / "allowed_signers"
        allowed.write_text(allowed_signers if allowed_signers.endswith("\n") else allowed_signers + "\n")
        found, _, principals = _ssh(["-Y", "find-principals", "-f", str(allowed), "-s", str(sig_path)], None)
        principal = principals.splitlines()[0].strip() if found and principals.strip() else ""
        if not principal:
            checks.insert(0, CheckResult(Stage.IDENTITY, "ssh_signer_not_allowed", False,
                                         f"the SSH key {key} is not among the allowed signers",
                                         "add the key to the allowed signers if this signer is trusted"))
            return CommitVerification(kind, CommitStatus.UNTRUSTED, tuple(checks), key=key)
        ok, _, message = _ssh(["-Y", "verify", "-f", str(allowed), "-I", principal, "-n", "git", "-s", str(sig_path)],
                              payload)
        if not ok:
            checks.insert(0, CheckResult(Stage.IDENTITY, "ssh_signer_not_allowed", False,
                                         f"the allowed signers do not accept {key} for {principal}: {message}",
                                         "check the key's namespaces and validity in the allowed signers"))
            return CommitVerification(kind, CommitStatus.UNTRUSTED, tuple(checks), identity=principal, key=key)
        checks.append(CheckResult(Stage.IDENTITY, "identity_ok", True,
                                  f"the key {key} is an allowed signer for {principal}"))
        return CommitVerification(kind, CommitStatus.VERIFIED, tuple(checks), identity=principal, key=key)


_SSH_KEY_RE = re.compile(r"with (\S+) key (SHA256:\S+)")


def _ssh(args: list[str], stdin: bytes | None) -> tuple[bool, str, str]:
    """Run ssh-keygen; return (success, the key named in its answer, its answer)."""
    try:
        done = subprocess.run(["ssh-keygen", *args], input=stdin if stdin is not None else b"",
                              capture_output=True, timeout=_SSH_TIMEOUT, check=False,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, "", f"ssh-keygen could not run: {err}"
    text = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    match = _SSH_KEY_RE.search(text)
    key = f"{match.group(1)} {match.group(2)}" if match else ""
    answer = done.stdout.decode("utf-8", "replace") if args[1] == "find-principals" else text[:300]
    return done.returncode == 0, key, answer
