"""Verification of Sigstore bundles (v0.1 to v0.3): message signatures and DSSE envelopes, keyless or key-based.

Two engines, one result:

* **sigstore** verifies what it handles completely: keyless bundles whose single log entry is a
  ``hashedrekord`` or ``dsse`` entry with an inclusion proof *and* a signed checkpoint, and a signed time (SET
  or RFC 3161). We call it with no identity policy of its own and translate its one exception into a stage and
  a stable code (refined by our own chain and SCT checks, which say *why*).
* **our own checks** cover what sigstore refuses (see ``notes/sigstore-python.md``): key-based bundles
  (``verificationMaterial.publicKey``), bundles whose log evidence is only a signed entry timestamp (no proof,
  or a proof without checkpoint: reported as the weaker ``inclusion_promise``), ``intoto/0.0.2`` entries, and
  bundles with no log entry at all. They reuse the legacy cosign checks (:mod:`provenance.core.cosign`).

Identity (exact or anchored regexp SAN, OtherName decoded, issuer in both extensions, GitHub workflow claims)
and the DSSE subject (sha256 or sha512 digest of the artifact) are always checked here, never by sigstore.
Nothing here raises on bad evidence: every check is a :class:`CheckResult` with a stable code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from provenance.core import cosign as legacy
from provenance.core.claims import WorkflowClaims
from provenance.core.errors import TrustRootError
from provenance.core.trustroot import TrustRoot, spki_sha256
from provenance.core.types import Digest, IdentityPolicy, Outcome, Stage, VerificationResult

__all__ = [
    "BUNDLE_MEDIA_TYPES",
    "MAX_BUNDLE_BYTES",
    "BundleVerification",
    "InclusionProofFetcher",
    "verify_bundle",
]

BUNDLE_MEDIA_TYPES = {
    "application/vnd.dev.sigstore.bundle+json;version=0.1": "0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2": "0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3": "0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json": "0.3",
}
# A bundle holding an SBOM attestation reaches tens of MiB; a message signature bundle is a few KiB.
MAX_BUNDLE_BYTES = 32 * 1024 * 1024
MAX_TLOG_ENTRIES = 8
MAX_TIMESTAMPS = 32  # as sigstore-go and sigstore-python
MAX_PROOF_HASHES = 64

# Log entry kinds sigstore verifies completely (with a proof and checkpoint), by content type.
_SIGSTORE_KINDS = {
    "message": frozenset({("hashedrekord", "0.0.1"), ("hashedrekord", "0.0.2")}),
    "dsse": frozenset({("dsse", "0.0.1"), ("hashedrekord", "0.0.2")}),
}
# Kinds our own checks understand (Rekor v1 bodies).
_OWN_KINDS = {
    "message": frozenset({("hashedrekord", "0.0.1")}),
    "dsse": frozenset({("dsse", "0.0.1"), ("intoto", "0.0.1"), ("intoto", "0.0.2")}),
}

_MALFORMED = Outcome.MALFORMED


# An optional upgrade path: given (rekor base URL, log index), return the Rekor API entry JSON
# (``{uuid: {body, integratedTime, logID, logIndex, verification: {inclusionProof, ...}}}``) or raise.
InclusionProofFetcher = Callable[[str, int], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class BundleVerification:
    """The result of verifying one bundle and, when it verified, what it signed.

    ``content`` is ``"message"`` or ``"dsse"``; ``statement`` is the in-toto statement (DSSE with an in-toto
    payload, only when verified); ``payload_type`` and ``payload`` are the DSSE payload (only when verified).
    """

    result: VerificationResult
    content: str = ""
    statement: dict[str, Any] | None = None
    payload_type: str = ""
    payload: bytes = b""

    @property
    def is_verified(self) -> bool:
        return self.result.is_verified


def verify_bundle(
    bundle: bytes,
    *,
    artifact: bytes | Digest,
    trust_root: TrustRoot,
    identity: IdentityPolicy | None = None,
    claims: WorkflowClaims | None = None,
    public_keys: tuple[bytes, ...] = (),
    require_tlog: bool = True,
    fetch_inclusion_proof: InclusionProofFetcher | None = None,
) -> BundleVerification:
    """Verify a Sigstore bundle (JSON bytes) for ``artifact``.

    ``artifact`` is the signed file's bytes, or its digest (``Digest``): for a message signature the signed
    file's SHA-256, for a DSSE bundle the digest an in-toto subject must carry (sha256 or sha512; given bytes,
    either is computed). Keyless bundles are checked against ``trust_root``, ``identity`` and ``claims``;
    key-based bundles (``verificationMaterial.publicKey``) against ``public_keys`` (PEM), any of which may
    verify. ``require_tlog=False`` accepts a bundle with no log entry and no timestamp (key-based only, as
    cosign's ``--insecure-ignore-tlog``). ``fetch_inclusion_proof``, when given, is asked for the inclusion
    proof of an entry that carries only a signed entry timestamp; any failure leaves the weaker result.

    Returns a :class:`BundleVerification`; its result is ``VERIFIED`` only when every check passed. Never
    raises on bad evidence.
    """
    run = legacy._Run(require_tlog=require_tlog)
    parsed = _parse(bundle, run)
    if parsed is None:
        return BundleVerification(run.result(legacy._Signer()))
    target = _Target.of(artifact)
    statement = _check_content(parsed, target, run)
    signer = _signer(parsed, target, run, public_keys)

    if signer.cert is not None and _is_sigstore_complete(parsed, target):
        if not _verify_with_sigstore(parsed, target, signer, run, trust_root):
            _verify_ourselves(parsed, target, signer, run, trust_root, fetch_inclusion_proof)
    else:
        _verify_ourselves(parsed, target, signer, run, trust_root, fetch_inclusion_proof)

    if signer.cert is not None:
        legacy._check_identity(run, signer, identity, claims)
    result = run.result(signer)
    verified = result.is_verified
    dsse = parsed.envelope
    return BundleVerification(
        result,
        content="dsse" if dsse else "message",
        statement=statement if verified else None,
        payload_type=dsse.payload_type if dsse and verified else "",
        payload=dsse.payload if dsse and verified else b"",
    )


# -- the artifact --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    data: bytes | None
    digest: Digest  # the given digest, or the data's sha256

    @classmethod
    def of(cls, artifact: bytes | Digest) -> _Target:
        if isinstance(artifact, Digest):
            return cls(None, artifact)
        return cls(bytes(artifact), Digest.of(bytes(artifact)))

    def digest_as(self, algorithm: str) -> str | None:
        """The artifact's hex digest with ``algorithm``, when known."""
        if self.data is not None and algorithm in ("sha256", "sha384", "sha512"):
            return hashlib.new(algorithm, self.data).hexdigest()
        return self.digest.hex if self.digest.algorithm == algorithm else None

    @property
    def sha256(self) -> bytes | None:
        value = self.digest_as("sha256")
        return bytes.fromhex(value) if value else None


# -- parsing --------------------------------------------------------------------------------------------------


@dataclass
class _Proof:
    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: list[bytes]
    checkpoint: str  # empty when absent


@dataclass
class _TlogEntry:
    log_index: int
    log_id: bytes
    kind: str
    version: str
    integrated_time: int | None
    set_signature: bytes | None
    proof: _Proof | None
    body_raw: bytes
    body: dict[str, Any] | None


@dataclass
class _Bundle:
    raw: bytes
    version: str
    certificates: list[x509.Certificate]  # leaf first; empty for key-based bundles
    key_hint: str | None  # verificationMaterial.publicKey.hint (key-based); None when keyless
    entries: list[_TlogEntry]
    timestamps: list[bytes]  # DER RFC 3161 responses
    message_digest: tuple[str, bytes] | None  # (algorithm, digest) of a message signature
    signature: bytes  # the message signature, or the envelope's first signature
    envelope: legacy._Envelope | None
    extra: dict[str, Any] = field(default_factory=dict)


class _Unreadable(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _parse(raw: bytes, run: legacy._Run) -> _Bundle | None:
    hint = "the bundle is damaged or not a Sigstore bundle; fetch it again or re-sign"
    try:
        if not isinstance(raw, bytes | bytearray) or len(raw) > MAX_BUNDLE_BYTES:
            size = f"{len(raw)} bytes" if isinstance(raw, bytes | bytearray) else type(raw).__name__
            raise _Unreadable("bundle_too_large", f"the bundle is {size}; at most {MAX_BUNDLE_BYTES} are accepted")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise _Unreadable("bundle_not_json", f"the bundle is not JSON: {legacy._short(str(err))}") from err
        parsed = _read_bundle(bytes(raw), doc)
    except _Unreadable as err:
        run.fail(Stage.FORMAT, err.code, str(err), hint, _MALFORMED)
        return None
    run.ok(Stage.FORMAT, "format_ok", f"the bundle is a Sigstore bundle v{parsed.version}")
    return parsed


def _read_bundle(raw: bytes, doc: Any) -> _Bundle:
    if not isinstance(doc, dict):
        raise _Unreadable("bundle_malformed", f"the bundle is a JSON {type(doc).__name__}, not an object")
    media_type = doc.get("mediaType")
    version = BUNDLE_MEDIA_TYPES.get(media_type) if isinstance(media_type, str) else None
    if version is None:
        raise _Unreadable(
            "bundle_version_unsupported",
            f"the bundle's mediaType is {legacy._short(media_type)}; expected a Sigstore bundle v0.1, v0.2 or v0.3",
        )
    material = _field(doc, "verificationMaterial", dict, "verificationMaterial")

    certificates: list[x509.Certificate] = []
    key_hint: str | None = None
    if material.get("certificate") is not None:
        certificates = [_certificate(_field(material, "certificate", dict, "verificationMaterial.certificate"))]
    elif material.get("x509CertificateChain") is not None:
        chain = _field(material, "x509CertificateChain", dict, "verificationMaterial.x509CertificateChain")
        items = _field(chain, "certificates", list, "verificationMaterial.x509CertificateChain.certificates")
        if not items or len(items) > 10:
            raise _Unreadable("bundle_malformed", "x509CertificateChain must hold 1 to 10 certificates")
        certificates = [_certificate(item) for item in items]
    elif material.get("publicKey") is not None:
        public_key = _field(material, "publicKey", dict, "verificationMaterial.publicKey")
        key_hint = str(public_key.get("hint") or "")[:200]
    else:
        raise _Unreadable(
            "bundle_malformed", "verificationMaterial has no certificate, x509CertificateChain or publicKey"
        )

    entries_raw = material.get("tlogEntries") or []
    if not isinstance(entries_raw, list) or len(entries_raw) > MAX_TLOG_ENTRIES:
        raise _Unreadable("bundle_malformed", f"tlogEntries must be a list of at most {MAX_TLOG_ENTRIES} entries")
    entries = [_tlog_entry(item, i) for i, item in enumerate(entries_raw)]

    timestamps: list[bytes] = []
    tvd = material.get("timestampVerificationData")
    if tvd is not None:
        items = _obj_or_fail(tvd, "timestampVerificationData").get("rfc3161Timestamps") or []
        if not isinstance(items, list) or len(items) > MAX_TIMESTAMPS:
            raise _Unreadable("bundle_malformed", f"rfc3161Timestamps must be a list of at most {MAX_TIMESTAMPS}")
        for i, item in enumerate(items):
            timestamps.append(
                _b64_field(
                    _obj_or_fail(item, f"rfc3161Timestamps[{i}]"),
                    "signedTimestamp",
                    f"rfc3161Timestamps[{i}].signedTimestamp",
                )
            )

    has_message, has_dsse = doc.get("messageSignature") is not None, doc.get("dsseEnvelope") is not None
    if has_message == has_dsse:
        raise _Unreadable("bundle_malformed", "a bundle holds exactly one of messageSignature and dsseEnvelope")
    envelope = None
    message_digest = None
    if has_message:
        message = _field(doc, "messageSignature", dict, "messageSignature")
        signature = _b64_field(message, "signature", "messageSignature.signature")
        if message.get("messageDigest") is not None:
            md = _field(message, "messageDigest", dict, "messageSignature.messageDigest")
            algorithm = md.get("algorithm")
            if not isinstance(algorithm, str):
                raise _Unreadable("bundle_malformed", "messageSignature.messageDigest.algorithm is missing")
            message_digest = (algorithm, _b64_field(md, "digest", "messageSignature.messageDigest.digest"))
    else:
        raw_env = _field(doc, "dsseEnvelope", dict, "dsseEnvelope")
        payload_type = raw_env.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            raise _Unreadable("envelope_malformed", "dsseEnvelope.payloadType is missing")
        payload = _b64_field(raw_env, "payload", "dsseEnvelope.payload", allow_empty=True)
        sigs = _field(raw_env, "signatures", list, "dsseEnvelope.signatures")
        if not sigs or len(sigs) > 16:
            raise _Unreadable("envelope_malformed", "dsseEnvelope.signatures must hold 1 to 16 signatures")
        signatures = [
            _b64_field(_obj_or_fail(s, f"dsseEnvelope.signatures[{i}]"), "sig", f"dsseEnvelope.signatures[{i}].sig")
            for i, s in enumerate(sigs)
        ]
        envelope = legacy._Envelope(payload_type, payload, signatures)
        signature = signatures[0]
    return _Bundle(raw, version, certificates, key_hint, entries, timestamps, message_digest, signature, envelope)


def _tlog_entry(item: Any, i: int) -> _TlogEntry:
    where = f"tlogEntries[{i}]"
    item = _obj_or_fail(item, where)
    log_index = _u64(item.get("logIndex"), f"{where}.logIndex")
    log_id = _b64_field(_field(item, "logId", dict, f"{where}.logId"), "keyId", f"{where}.logId.keyId")
    kind_version = _field(item, "kindVersion", dict, f"{where}.kindVersion")
    kind, version = kind_version.get("kind"), kind_version.get("version")
    if not isinstance(kind, str) or not isinstance(version, str):
        raise _Unreadable("bundle_malformed", f"{where}.kindVersion needs a kind and a version")
    integrated = item.get("integratedTime")
    integrated_time = (
        _u64(integrated, f"{where}.integratedTime", legacy._MAX_TIMESTAMP) if integrated not in (None, "") else None
    )
    if integrated_time == 0:
        integrated_time = None  # Rekor v2: no integrated time
    promise = item.get("inclusionPromise")
    set_signature = None
    if promise is not None:
        set_signature = _b64_field(
            _obj_or_fail(promise, f"{where}.inclusionPromise"),
            "signedEntryTimestamp",
            f"{where}.inclusionPromise.signedEntryTimestamp",
        )
    proof = None
    if item.get("inclusionProof") is not None:
        raw_proof = _field(item, "inclusionProof", dict, f"{where}.inclusionProof")
        hashes_raw = raw_proof.get("hashes") or []
        if not isinstance(hashes_raw, list) or len(hashes_raw) > MAX_PROOF_HASHES:
            raise _Unreadable("bundle_malformed", f"{where}.inclusionProof.hashes must be a short list")
        checkpoint = raw_proof.get("checkpoint")
        envelope = checkpoint.get("envelope") if isinstance(checkpoint, dict) else None
        proof = _Proof(
            log_index=_u64(raw_proof.get("logIndex"), f"{where}.inclusionProof.logIndex"),
            tree_size=_u64(raw_proof.get("treeSize"), f"{where}.inclusionProof.treeSize"),
            root_hash=_b64_field(raw_proof, "rootHash", f"{where}.inclusionProof.rootHash"),
            hashes=[_b64_value(h, f"{where}.inclusionProof.hashes") for h in hashes_raw],
            checkpoint=envelope if isinstance(envelope, str) else "",
        )
    body_raw = _b64_field(item, "canonicalizedBody", f"{where}.canonicalizedBody")
    try:
        body = json.loads(body_raw)
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            body = None
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = None
    return _TlogEntry(log_index, log_id, kind, version, integrated_time, set_signature, proof, body_raw, body)


def _field(obj: dict[str, Any], key: str, kind: type, path: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise _Unreadable("bundle_malformed", f"{path} is {legacy._short(value, 60)}, expected a {kind.__name__}")
    return value


def _obj_or_fail(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Unreadable("bundle_malformed", f"{path} is not an object")
    return value


def _b64_value(value: Any, path: str, allow_empty: bool = False) -> bytes:
    if value == "" and allow_empty:
        return b""
    decoded = legacy._b64(value)
    if decoded is None:
        raise _Unreadable("bundle_malformed", f"{path} is not base64")
    return decoded


def _b64_field(obj: dict[str, Any], key: str, path: str, allow_empty: bool = False) -> bytes:
    return _b64_value(obj.get(key), path, allow_empty)


def _u64(value: Any, path: str, limit: int = legacy._MAX_JSON_INT) -> int:
    # protobuf JSON writes 64-bit integers as strings
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        value = int(value)
    if value is None:
        value = 0  # protobuf omits zero values
    if not legacy._is_int(value, limit):
        raise _Unreadable("bundle_malformed", f"{path} is {legacy._short(value, 40)}, expected an integer")
    return int(value)


def _certificate(item: Any) -> x509.Certificate:
    der = _b64_field(_obj_or_fail(item, "certificate"), "rawBytes", "certificate.rawBytes")
    try:
        return legacy._readable(x509.load_der_x509_certificate(der))
    except (ValueError, UnsupportedAlgorithm) as err:
        raise _Unreadable("certificate_unreadable", f"a bundle certificate is not DER X.509: {err}") from err


# -- what was signed ------------------------------------------------------------------------------------------


def _check_content(parsed: _Bundle, target: _Target, run: legacy._Run) -> dict[str, Any] | None:
    """Message digest vs the artifact, or the in-toto statement's subjects vs the artifact."""
    if parsed.envelope is None:
        if parsed.message_digest is None:
            return None
        algorithm, digest = parsed.message_digest
        if algorithm != "SHA2_256":
            run.fail(
                Stage.UNSUPPORTED,
                "digest_algorithm_unsupported",
                f"the message digest uses {legacy._short(algorithm, 40)}; only SHA2_256 is verified",
                "sign with SHA-256",
                Outcome.UNSUPPORTED,
            )
            return None
        expected = target.sha256
        if expected is None:
            run.fail(
                Stage.SUBJECT,
                "artifact_digest_unusable",
                f"the bundle signs a SHA-256 digest, but the artifact is given as {target.digest}",
                "give the artifact's sha256 digest, or the file itself",
                Outcome.ERROR,
            )
        elif expected == digest:
            run.ok(Stage.SUBJECT, "digest_ok", f"the bundle signs sha256:{digest.hex()}, the artifact's digest")
        else:
            run.fail(
                Stage.SUBJECT,
                "artifact_mismatch",
                f"the bundle signs sha256:{digest.hex()}, but the artifact is sha256:{expected.hex()}",
                "this signature is for another artifact (or the artifact was altered); verify the file it was made for",
                Outcome.INVALID,
            )
        return None

    envelope = parsed.envelope
    hint = "the DSSE payload is not an in-toto statement; re-attest"
    if envelope.payload_type != legacy.IN_TOTO_PAYLOAD_TYPE:
        run.fail(
            Stage.UNSUPPORTED,
            "payload_type_unsupported",
            f"the envelope's payloadType is {legacy._short(envelope.payload_type)}, expected "
            f"{legacy.IN_TOTO_PAYLOAD_TYPE!r}: nothing ties it to an artifact",
            "only in-toto statements are verified",
            Outcome.UNSUPPORTED,
        )
        return None
    try:
        statement = json.loads(envelope.payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        run.fail(
            Stage.FORMAT,
            "statement_unreadable",
            f"the in-toto statement is not JSON: {legacy._short(str(err))}",
            hint,
            _MALFORMED,
        )
        return None
    if not legacy._is_statement(statement):
        found = statement.get("_type") if isinstance(statement, dict) else type(statement).__name__
        run.fail(
            Stage.FORMAT,
            "statement_unreadable",
            f"the payload is not an in-toto statement with subjects and a predicateType (_type {legacy._short(found)})",
            hint,
            _MALFORMED,
        )
        return None
    run.extra["predicate_type"] = str(statement["predicateType"])[:500]
    matched = None
    subjects = statement["subject"]
    for subject in subjects:
        for algorithm, value in subject["digest"].items():
            mine = target.digest_as(str(algorithm))
            if mine is not None and isinstance(value, str) and value.lower() == mine:
                matched = f"{algorithm}:{value.lower()}"
                break
        if matched:
            break
    if matched:
        run.ok(Stage.SUBJECT, "subject_ok", f"the statement names the artifact ({matched}) as a subject")
    else:
        found = ", ".join(legacy._describe_subject(s) for s in subjects[:5]) or "no subject"
        run.fail(
            Stage.SUBJECT,
            "subject_mismatch",
            f"no subject of the statement has the digest {target.digest}; found {found}",
            f"attest {target.digest} itself; a statement about another artifact says nothing about this one",
            Outcome.INVALID,
        )
    return dict(statement)


# -- signer -------------------------------------------------------------------------------------------------


def _signer(parsed: _Bundle, target: _Target, run: legacy._Run, public_keys: tuple[bytes, ...]) -> legacy._Signer:
    if parsed.certificates:
        cert = parsed.certificates[0]
        sans = legacy._sans(cert)
        return legacy._Signer(
            key=cert.public_key(),
            cert=cert,
            identity=sans[0] if sans else "",
            issuer=legacy._oidc_issuer(cert) or "",
            sans=sans,
            presented_chain=parsed.certificates[1:],
        )
    hint_text = f" (key hint {legacy._short(parsed.key_hint, 80)})" if parsed.key_hint else ""
    if not public_keys:
        run.fail(
            Stage.TRUST_ROOT,
            "public_key_required",
            f"the bundle was signed with a long-lived key{hint_text}, and no public key was given",
            "configure the signer's public key (cosign.pub) as a trust anchor",
            Outcome.UNTRUSTED,
        )
        return legacy._Signer()
    keys: list[PublicKeyTypes] = []
    for pem in public_keys:
        try:
            keys.append(serialization.load_pem_public_key(pem))
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:
            run.fail(
                Stage.TRUST_ROOT,
                "public_key_unreadable",
                f"a configured public key is not a PEM public key: {legacy._short(str(err))}",
                "configure the signer's public key in PEM (cosign.pub)",
                Outcome.ERROR,
            )
    if not keys:
        return legacy._Signer()
    # Pick the key that made the signature; else the one the hint names; else the first (and fail with it).
    chosen = next((k for k in keys if _signature_ok(parsed, k, target)), None)
    if chosen is None and parsed.key_hint:
        chosen = next((k for k in keys if base64.b64encode(spki_sha256(k)).decode() == parsed.key_hint), None)
    chosen = chosen or keys[0]
    return legacy._Signer(key=chosen, fingerprint=f"sha256:{spki_sha256(chosen).hex()}")


def _signature_ok(parsed: _Bundle, key: PublicKeyTypes, target: _Target) -> bool:
    """Whether ``key`` made the bundle's signature: DSSE over the PAE; a message signature over the digest the
    bundle states (whether that digest is the artifact's is a separate check), else over the artifact."""
    if parsed.envelope is not None:
        pae = legacy._pae(parsed.envelope.payload_type, parsed.envelope.payload)
        return any(legacy._verify_signature(key, sig, pae) for sig in parsed.envelope.signatures)
    return _verify_message(key, parsed.signature, target.data, _signed_digest(parsed, target))


def _signed_digest(parsed: _Bundle, target: _Target) -> bytes | None:
    """The SHA-256 a message signature covers: the bundle's messageDigest, else the artifact's."""
    if parsed.message_digest is not None and parsed.message_digest[0] == "SHA2_256":
        return parsed.message_digest[1]
    return target.sha256


def _verify_message(key: PublicKeyTypes, signature: bytes, data: bytes | None, sha256: bytes | None) -> bool:
    """Verify a message signature over ``data``, or over its SHA-256 when only the digest is known."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if data is None:
                return False  # pure Ed25519 signs the message itself, never a digest
            key.verify(signature, data)
            return True
        if sha256 is None:
            return False
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, sha256, ec.ECDSA(Prehashed(hashes.SHA256())))
            return True
        if isinstance(key, rsa.RSAPublicKey):
            for pad in (padding.PKCS1v15(), padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)):
                try:
                    key.verify(signature, sha256, pad, Prehashed(hashes.SHA256()))
                    return True
                except InvalidSignature:
                    continue
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return False


# -- engine 1: sigstore ------------------------------------------------------------------------------------


def _is_sigstore_complete(parsed: _Bundle, target: _Target) -> bool:
    """Whether sigstore checks this bundle completely (then it is the authority for the cryptography)."""
    if len(parsed.entries) != 1:
        return False
    entry = parsed.entries[0]
    kinds = _SIGSTORE_KINDS["dsse" if parsed.envelope else "message"]
    has_time = bool(entry.set_signature and entry.integrated_time) or bool(parsed.timestamps)
    if parsed.envelope is None and target.sha256 is None:
        return False
    return (
        (entry.kind, entry.version) in kinds and entry.proof is not None and bool(entry.proof.checkpoint) and has_time
    )


class _IdentityCheckedByProvenance:
    """A sigstore policy that accepts any certificate: the identity is checked afterwards, by us.

    sigstore's own policies cannot match OtherName SANs or regular expressions and explain only the first
    mismatch; ``verify_bundle`` always runs our identity check after sigstore's cryptographic checks.
    """

    def verify(self, cert: x509.Certificate) -> None:
        return None


_SIGSTORE_POLICY = _IdentityCheckedByProvenance()


def _verify_with_sigstore(
    parsed: _Bundle, target: _Target, signer: legacy._Signer, run: legacy._Run, trust_root: TrustRoot
) -> bool:
    """Verify the cryptography with sigstore. Returns False when sigstore refuses to read the bundle (then our
    own checks run instead); otherwise records the checks and returns True."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle
    from sigstore_models.common.v1 import HashAlgorithm

    try:
        bundle = Bundle.from_json(parsed.raw)
    except (SigstoreError, ValueError):
        return False
    entry = parsed.entries[0]
    try:
        verifier = trust_root.verifier()
        if parsed.envelope is not None:
            verifier.verify_dsse(bundle, _SIGSTORE_POLICY)
        else:
            assert target.sha256 is not None
            verifier.verify_artifact(
                Hashed(algorithm=HashAlgorithm.SHA2_256, digest=target.sha256), bundle, _SIGSTORE_POLICY
            )
    except (SigstoreError, ValueError, TrustRootError) as err:
        _translate(err, parsed, signer, run, trust_root)
        return True

    logged_at = entry.integrated_time
    run.tlog = "inclusion_proof"
    if entry.set_signature and logged_at:
        run.integrated_time = logged_at
    else:
        when = _first_timestamp_time(parsed)
        run.integrated_time = int(when.timestamp()) if when else None
    run.ok(
        Stage.CHAIN,
        "chain_ok",
        f"the certificate chains to a CA of the trust root {trust_root.name!r} at the "
        "signing time (checked by sigstore)",
    )
    run.ok(Stage.SCT, "sct_ok", "the certificate's embedded SCT verifies with a CT log of the trust root")
    run.ok(
        Stage.TLOG,
        "tlog_ok",
        f"the log entry {entry.log_index} is included in the log: the inclusion proof "
        "and the signed checkpoint verify"
        + (", and so does the signed entry timestamp" if entry.set_signature else ""),
    )
    run.ok(Stage.TLOG, "tlog_body_ok", "the log entry records this signature, artifact and signer")
    run.ok(Stage.SIGNATURE, "signature_ok", "the signature verifies with the certificate's key")
    return True


def _translate(
    err: Exception, parsed: _Bundle, signer: legacy._Signer, run: legacy._Run, trust_root: TrustRoot
) -> None:
    """Turn sigstore's one exception into a stage and stable code, refined by our own diagnosis."""
    text = str(err.args[0]) if err.args else str(err)
    if len(err.args) > 1:
        text += " " + " ".join(str(a) for a in err.args[1:])
    detail = f"sigstore: {legacy._short(text, 300)}"
    entry = parsed.entries[0]
    run.claimed_time = entry.integrated_time
    cert = signer.cert
    assert cert is not None

    if "certificate chain" in text or "expired at time of signing" in text:
        before = len(run.checks)
        when = datetime.fromtimestamp(entry.integrated_time, tz=UTC) if entry.integrated_time else None
        when = when or _first_timestamp_time(parsed) or datetime.now(UTC)
        legacy._check_chain(run, cert, trust_root, when, "the signing time")
        if all(check.ok for check, _ in run.checks[before:]):
            # ours passed where sigstore failed: report sigstore's reason
            run.checks = run.checks[:before]
            run.fail(
                Stage.CHAIN,
                "chain_invalid",
                f"the certificate chain does not verify: {detail}",
                "the certificate was not issued by a CA of this trust root at the signing time",
                Outcome.UNTRUSTED,
            )
        return
    if "SCT" in text or "signed certificate timestamp" in text:
        issuer = _issuer_of(cert, trust_root, parsed)
        before = len(run.checks)
        if issuer is not None:
            legacy._check_sct(run, cert, issuer, trust_root)
        if issuer is None or all(c.ok for c, _ in run.checks[before:]):
            run.checks = run.checks[:before]
            run.fail(
                Stage.SCT,
                "sct_invalid",
                f"the certificate's SCT does not verify: {detail}",
                "the certificate was not logged by a CT log of this trust root",
                Outcome.UNTRUSTED,
            )
        return
    for needle, stage, code, hint, outcome in _SIGSTORE_REASONS:
        if needle in text:
            if any(check.code == code and not check.ok for check, _ in run.checks):
                return  # already explained by our own check (e.g. the message digest)
            run.fail(stage, code, f"{_REASON_TEXT.get(code, 'verification failed')}: {detail}", hint, outcome)
            if code == "tlog_set_invalid":
                run.tlog = ""
            return
    run.fail(
        Stage.SIGNATURE,
        "sigstore_rejected",
        f"the bundle does not verify: {detail}",
        "see the message; the bundle may have been altered",
        Outcome.INVALID,
    )


_LOG_HINT = "the bundle's log evidence was altered or comes from another log; fetch the entry again or re-sign"
_SIGSTORE_REASONS: list[tuple[str, Stage, str, str, Outcome]] = [
    (
        "not enough sources of verified time",
        Stage.TIMESTAMP,
        "no_signed_time",
        "sign with a transparency log (SET) or a timestamp authority",
        Outcome.UNTRUSTED,
    ),
    (
        "no Timestamp Authorities",
        Stage.TIMESTAMP,
        "tsa_untrusted",
        "the bundle carries an RFC 3161 timestamp, but the trust root has no timestamp authority",
        Outcome.UNTRUSTED,
    ),
    ("timestamp", Stage.TIMESTAMP, "timestamp_invalid", "the RFC 3161 timestamp is damaged", Outcome.INVALID),
    ("Key usage", Stage.CHAIN, "cert_not_code_signing", "only code-signing certificates may sign", Outcome.UNTRUSTED),
    (
        "Extended usage",
        Stage.CHAIN,
        "cert_not_code_signing",
        "only code-signing certificates may sign",
        Outcome.UNTRUSTED,
    ),
    ("SET: invalid inclusion promise", Stage.TLOG, "tlog_set_invalid", _LOG_HINT, Outcome.INVALID),
    # before "checkpoint": sigstore's message for a bad proof embeds the whole proof, checkpoint included
    (
        "inclusion proof contains invalid root hash:",
        Stage.TLOG,
        "tlog_inclusion_proof_invalid",
        _LOG_HINT,
        Outcome.INVALID,
    ),
    ("inclusion proof has wrong size", Stage.TLOG, "tlog_inclusion_proof_invalid", _LOG_HINT, Outcome.INVALID),
    ("checkpoint", Stage.TLOG, "tlog_checkpoint_invalid", _LOG_HINT, Outcome.INVALID),
    ("Checkpoint", Stage.TLOG, "tlog_checkpoint_invalid", _LOG_HINT, Outcome.INVALID),
    ("invalid root hash signature", Stage.TLOG, "tlog_checkpoint_invalid", _LOG_HINT, Outcome.INVALID),
    ("inclusion proof", Stage.TLOG, "tlog_inclusion_proof_invalid", _LOG_HINT, Outcome.INVALID),
    ("Note", Stage.TLOG, "tlog_checkpoint_invalid", _LOG_HINT, Outcome.INVALID),
    ("note must contain", Stage.TLOG, "tlog_checkpoint_invalid", _LOG_HINT, Outcome.INVALID),
    ("invalid log entry", Stage.TLOG, "tlog_invalid", _LOG_HINT, Outcome.INVALID),
    (
        "Bundle message digest mismatch",
        Stage.SUBJECT,
        "artifact_mismatch",
        "this signature is for another artifact",
        Outcome.INVALID,
    ),
    (
        "Signature is invalid for input",
        Stage.SIGNATURE,
        "signature_invalid",
        "the artifact or the signature was altered, or it was signed for another artifact",
        Outcome.INVALID,
    ),
    (
        "DSSE: invalid signature",
        Stage.SIGNATURE,
        "signature_invalid",
        "the statement or its signature was altered; re-attest",
        Outcome.INVALID,
    ),
    (
        "DSSE: exactly 1 signature",
        Stage.FORMAT,
        "envelope_malformed",
        "Sigstore DSSE envelopes carry exactly one signature",
        Outcome.MALFORMED,
    ),
    (
        "inconsistent with other materials",
        Stage.TLOG,
        "tlog_body_mismatch",
        "the log entry is about another signature; the bundle was assembled from parts",
        Outcome.INVALID,
    ),
    (
        "does not match bundle",
        Stage.TLOG,
        "tlog_body_mismatch",
        "the log entry is about another signature; the bundle was assembled from parts",
        Outcome.INVALID,
    ),
    ("invalid DSSE log entry", Stage.TLOG, "tlog_body_mismatch", _LOG_HINT, Outcome.INVALID),
    (
        "Unsupported",
        Stage.UNSUPPORTED,
        "tlog_body_unsupported",
        "this kind of log entry is not verified",
        Outcome.UNSUPPORTED,
    ),
    (
        "Expected entry type",
        Stage.UNSUPPORTED,
        "tlog_body_unsupported",
        "this kind of log entry is not verified",
        Outcome.UNSUPPORTED,
    ),
]
_REASON_TEXT = {
    "no_signed_time": "no trusted time for the signature",
    "tsa_untrusted": "the timestamp authority is not trusted",
    "timestamp_invalid": "the signed timestamp does not verify",
    "cert_not_code_signing": "the certificate is not a code-signing certificate",
    "tlog_set_invalid": "the signed entry timestamp does not verify",
    "tlog_checkpoint_invalid": "the log checkpoint is not signed by a trusted log key",
    "tlog_inclusion_proof_invalid": "the inclusion proof does not lead to the checkpoint's root",
    "tlog_invalid": "the transparency-log entry does not verify",
    "artifact_mismatch": "the bundle signs another artifact",
    "signature_invalid": "the signature does not verify",
    "envelope_malformed": "the DSSE envelope is malformed",
    "tlog_body_mismatch": "the log entry is not about this signature",
    "tlog_body_unsupported": "the log entry kind is not supported",
}


def _issuer_of(cert: x509.Certificate, trust_root: TrustRoot, parsed: _Bundle) -> x509.Certificate | None:
    candidates = [c for ca in trust_root.certificate_authorities for c in ca.certificates] + parsed.certificates[1:]
    return next((c for c in candidates if c.subject == cert.issuer), None)


# -- engine 2: our own checks ---------------------------------------------------------------------------------


def _verify_ourselves(
    parsed: _Bundle,
    target: _Target,
    signer: legacy._Signer,
    run: legacy._Run,
    trust_root: TrustRoot,
    fetch: InclusionProofFetcher | None,
) -> None:
    # signature
    if signer.key is not None:
        if _signature_ok(parsed, signer.key, target):
            run.ok(Stage.SIGNATURE, "signature_ok", f"the signature verifies with {signer.describe()}")
        elif parsed.envelope is None and target.data is None and isinstance(signer.key, ed25519.Ed25519PublicKey):
            run.fail(
                Stage.SIGNATURE,
                "artifact_bytes_required",
                "an Ed25519 signature covers the artifact itself, and only its digest was given",
                "verify with the artifact file, not its digest",
                Outcome.ERROR,
            )
        else:
            what = "the DSSE pre-authentication encoding" if parsed.envelope else f"the artifact ({target.digest})"
            run.fail(
                Stage.SIGNATURE,
                "signature_invalid",
                f"the signature does not verify over {what} with {signer.describe()}",
                "the signed content or the signature was altered, or it was signed with another key",
                Outcome.INVALID,
            )

    # transparency log and signed time
    expected = legacy._Expected(
        layer_sha256=(_signed_digest(parsed, target) or b"").hex() if parsed.envelope is None else "",
        signatures=parsed.envelope.signatures if parsed.envelope else [parsed.signature],
        payload_sha256=legacy._sha256(parsed.envelope.payload) if parsed.envelope else "",
        payload_type=parsed.envelope.payload_type if parsed.envelope else "",
    )
    kinds = _OWN_KINDS["dsse" if parsed.envelope else "message"]
    for entry in parsed.entries:
        _check_entry(run, entry, signer, expected, trust_root, kinds, fetch)
    _check_timestamps(run, parsed, trust_root)
    if not parsed.entries:
        if run.require_tlog:
            run.fail(
                Stage.TLOG,
                "tlog_missing",
                "the bundle has no transparency-log entry: nothing shows the signature was published",
                "sign with transparency-log upload enabled",
                Outcome.UNTRUSTED,
            )
        else:
            run.ok(Stage.TLOG, "tlog_not_required", "no transparency-log entry; the policy does not require one")
    if run.require_tlog and run.integrated_time is None and run.signed_time is None:
        has_claim = any(e.integrated_time for e in parsed.entries)
        run.fail(
            Stage.TIMESTAMP,
            "no_signed_time",
            "no verified time: the bundle has no valid signed entry timestamp and no trusted RFC 3161 timestamp"
            + (" (the entry's integratedTime is not signed)" if has_claim else ""),
            "sign with a transparency log that returns a signed entry timestamp, or with a timestamp authority",
            Outcome.UNTRUSTED,
        )

    # the certificate (chain, profile, SCT) at the verified time; identity is checked by the caller
    if signer.cert is not None:
        start = signer.cert.not_valid_before_utc
        legacy._check_certificate(run, signer, trust_root, fallback=(start, "the certificate's start (no signed time)"))


def _check_entry(
    run: legacy._Run,
    entry: _TlogEntry,
    signer: legacy._Signer,
    expected: legacy._Expected,
    trust_root: TrustRoot,
    kinds: frozenset[tuple[str, str]],
    fetch: InclusionProofFetcher | None,
) -> None:
    run.extra["log_index"] = str(entry.log_index)
    run.extra["log_id"] = entry.log_id.hex()
    if run.claimed_time is None:
        run.claimed_time = entry.integrated_time
    log = legacy._trusted_log(run, trust_root, entry.log_id)
    if log is None:
        return
    name = log.base_url or log.log_id_hex

    # the body must be about this signature, whatever else holds
    if entry.body is None:
        run.fail(
            Stage.FORMAT,
            "tlog_body_unreadable",
            "the log entry's canonicalizedBody is not a Rekor entry",
            _LOG_HINT,
            _MALFORMED,
        )
    elif (str(entry.body.get("kind")), str(entry.body.get("apiVersion"))) != (entry.kind, entry.version):
        run.fail(
            Stage.TLOG,
            "tlog_body_mismatch",
            f"the entry says it is {entry.kind}/{entry.version}, but its body is "
            f"{legacy._short(entry.body.get('kind'), 30)}/{legacy._short(entry.body.get('apiVersion'), 20)}",
            _LOG_HINT,
            Outcome.INVALID,
        )
    elif (entry.kind, entry.version) not in kinds:
        run.fail(
            Stage.UNSUPPORTED,
            "tlog_body_unsupported",
            f"the log entry is a {legacy._short(entry.kind, 40)}/{legacy._short(entry.version, 20)} entry; "
            f"expected one of {', '.join(f'{k}/{v}' for k, v in sorted(kinds))} for this bundle",
            "this kind of log entry is not checked here",
            Outcome.UNSUPPORTED,
        )
    elif signer.key is not None:
        hint = "the bundle was assembled from parts of others"
        legacy._check_body(run, entry.body, signer, expected, what="bundle", hint=hint)

    # inclusion promise (SET)
    if entry.set_signature is not None and entry.integrated_time is not None:
        logged_at = legacy._check_set(
            run,
            log,
            signature=entry.set_signature,
            body_b64=base64.b64encode(entry.body_raw).decode(),
            integrated_time=entry.integrated_time,
            log_index=entry.log_index,
            hint=_LOG_HINT,
        )
        if logged_at is not None:
            run.ok(
                Stage.TLOG,
                "tlog_set_ok",
                f"the signed entry timestamp verifies: {name} promised to include "
                f"entry {entry.log_index} at {logged_at.isoformat()}",
            )

    # inclusion proof
    proof = entry.proof
    if (proof is None or not proof.checkpoint) and fetch is not None and entry.set_signature is not None:
        proof = _fetched_proof(run, entry, log.base_url, fetch) or proof
    if proof is None:
        if run.tlog == "inclusion_promise":
            run.ok(
                Stage.TLOG,
                "tlog_promise_only",
                "the bundle carries no inclusion proof: the entry is promised "
                "(signed entry timestamp), not proven to be in the log",
            )
        return
    if not proof.checkpoint:
        run.ok(
            Stage.TLOG,
            "tlog_proof_unsigned",
            "the inclusion proof has no signed checkpoint, so its root "
            "proves nothing; the entry is only promised (signed entry timestamp)",
        )
        return
    problem = _inclusion_problem(entry, proof, trust_root)
    if problem is not None:
        code, message = problem
        run.fail(Stage.TLOG, code, message, _LOG_HINT, Outcome.INVALID)
        return
    run.tlog = "inclusion_proof"
    run.ok(
        Stage.TLOG,
        "tlog_ok",
        f"entry {entry.log_index} is in {name}: the inclusion proof leads to the root "
        f"of a checkpoint signed by the log (tree size {proof.tree_size})",
    )


def _fetched_proof(run: legacy._Run, entry: _TlogEntry, base_url: str, fetch: InclusionProofFetcher) -> _Proof | None:
    """Ask the log for the inclusion proof of an entry that carries only a SET; None (and a note) on failure."""
    try:
        answer = fetch(base_url, entry.log_index)
        [(_, item)] = list(answer.items())
        if base64.b64decode(item["body"]) != entry.body_raw:
            raise ValueError("the log returned another entry body for this index")
        raw = item["verification"]["inclusionProof"]
        return _Proof(
            log_index=int(raw["logIndex"]),
            tree_size=int(raw["treeSize"]),
            root_hash=bytes.fromhex(raw["rootHash"]),
            hashes=[bytes.fromhex(h) for h in raw["hashes"]][:MAX_PROOF_HASHES],
            checkpoint=str(raw.get("checkpoint") or ""),
        )
    except Exception as err:  # any failure of the optional upgrade leaves the SET result
        run.ok(
            Stage.TLOG,
            "tlog_proof_fetch_failed",
            f"could not fetch the inclusion proof of entry "
            f"{entry.log_index} from {base_url or 'the log'} ({legacy._short(str(err) or type(err).__name__)}); "
            "the result rests on the signed entry timestamp",
        )
        return None


def _inclusion_problem(entry: _TlogEntry, proof: _Proof, trust_root: TrustRoot) -> tuple[str, str] | None:
    """Check an RFC 6962 inclusion proof and its signed checkpoint; return (code, message) or None when ok."""
    if proof.log_index != entry.log_index and proof.log_index >= proof.tree_size:
        return "tlog_inclusion_proof_invalid", f"the proof's index {proof.log_index} is outside its tree size"
    leaf = hashlib.sha256(b"\x00" + entry.body_raw).digest()
    root = _root_from_proof(proof.log_index, proof.tree_size, leaf, proof.hashes)
    if root is None:
        return "tlog_inclusion_proof_invalid", (
            f"the inclusion proof has {len(proof.hashes)} hashes, wrong for index {proof.log_index} in a tree of "
            f"{proof.tree_size}"
        )
    if root != proof.root_hash:
        return "tlog_inclusion_proof_invalid", (
            f"the inclusion proof leads to root {root.hex()[:16]}..., not the proof's root "
            f"{proof.root_hash.hex()[:16]}..."
        )
    note = _parse_checkpoint(proof.checkpoint)
    if note is None:
        return "tlog_checkpoint_invalid", "the checkpoint is not a signed note (origin, size, root, signature)"
    body, size, root_b64, signatures = note
    log = trust_root.tlog_key(entry.log_id)
    assert log is not None
    mine = [sig for hint, sig in signatures if hint == entry.log_id[:4]]
    if not mine:
        return "tlog_checkpoint_invalid", (
            f"the checkpoint carries no signature by the log {entry.log_id.hex()[:16]}... (key hints found: "
            f"{', '.join(h.hex() for h, _ in signatures) or 'none'})"
        )
    if not any(log.verify(sig, body) for sig in mine):
        return "tlog_checkpoint_invalid", "the checkpoint's signature does not verify with the log's key"
    if size != proof.tree_size or root_b64 != proof.root_hash:
        return "tlog_checkpoint_invalid", (
            f"the checkpoint is for a tree of {size} with root {root_b64.hex()[:16]}..., the proof for a tree of "
            f"{proof.tree_size} with root {proof.root_hash.hex()[:16]}..."
        )
    return None


def _root_from_proof(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
    """RFC 6962 / 9162 root from an inclusion proof; None when the proof has the wrong length."""
    if index < 0 or index >= size:
        return None
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    if len(proof) != inner + border or any(len(h) != 32 for h in proof):
        return None
    node = leaf
    for i, sibling in enumerate(proof[:inner]):
        if (index >> i) & 1 == 0:
            node = hashlib.sha256(b"\x01" + node + sibling).digest()
        else:
            node = hashlib.sha256(b"\x01" + sibling + node).digest()
    for sibling in proof[inner:]:
        node = hashlib.sha256(b"\x01" + sibling + node).digest()
    return node


_SIGNATURE_LINE = re.compile(r"\u2014 (\S+) (\S+)\n")


def _parse_checkpoint(text: str) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]] | None:
    """Parse a signed note: ``(signed text, tree size, root hash, [(key hint, signature)])``."""
    if len(text) > 64 * 1024 or text.count("\n\n") != 1:
        return None
    header, signature_block = text.split("\n\n")
    lines = header.split("\n")
    if len(lines) < 3 or not lines[0] or not lines[1].isdigit():
        return None
    root = legacy._b64(lines[2])
    if root is None:
        return None
    signatures = []
    for _, blob in _SIGNATURE_LINE.findall(signature_block):
        raw = legacy._b64(blob)
        if raw is not None and len(raw) > 4:
            signatures.append((raw[:4], raw[4:]))
    return (header + "\n").encode(), int(lines[1]), root, signatures


def _check_timestamps(run: legacy._Run, parsed: _Bundle, trust_root: TrustRoot) -> None:
    """RFC 3161 timestamps over the signature, from a timestamp authority of the trust root."""
    if not parsed.timestamps:
        return
    from rfc3161_client import VerificationError as TimestampError
    from rfc3161_client import VerifierBuilder, decode_timestamp_response

    problems = []
    for der in parsed.timestamps:
        try:
            response = decode_timestamp_response(der)
        except ValueError as err:
            run.fail(
                Stage.TIMESTAMP,
                "timestamp_malformed",
                f"an RFC 3161 timestamp cannot be read: {legacy._short(str(err))}",
                "the timestamp is damaged",
                _MALFORMED,
            )
            continue
        for tsa in trust_root.timestamp_authorities:
            certs = list(tsa.certificates)
            if len(certs) < 2:
                continue
            builder = VerifierBuilder().tsa_certificate(certs[0]).add_root_certificate(certs[-1])
            for cert in certs[1:-1]:
                builder = builder.add_intermediate_certificate(cert)
            try:
                builder.build().verify_message(response, parsed.signature)
            except (TimestampError, ValueError) as err:
                problems.append(f"{tsa.name}: {legacy._short(str(err), 80)}")
                continue
            when = response.tst_info.gen_time
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
            if not tsa.validity.contains(when):
                problems.append(f"{tsa.name}: time {when.isoformat()} outside {tsa.validity.describe()}")
                continue
            if run.signed_time is None:
                run.signed_time, run.signed_time_source = when, f"the RFC 3161 timestamp of {tsa.name}"
            run.ok(
                Stage.TIMESTAMP,
                "timestamp_ok",
                f"an RFC 3161 timestamp from {tsa.name} ({tsa.uri or 'no uri'}) "
                f"puts the signature at {when.isoformat()}",
            )
            break
    if run.signed_time is None and not any(c.code == "timestamp_malformed" for c, _ in run.checks):
        known = ", ".join(t.name for t in trust_root.timestamp_authorities) or "none"
        run.fail(
            Stage.TIMESTAMP,
            "tsa_untrusted",
            f"no RFC 3161 timestamp of the bundle verifies with a timestamp authority of the trust root "
            f"{trust_root.name!r} (authorities: {known}){': ' + '; '.join(problems[:3]) if problems else ''}",
            "the timestamp comes from an authority this trust root does not know; use that instance's root",
            Outcome.UNTRUSTED,
        )


def _first_timestamp_time(parsed: _Bundle) -> datetime | None:
    """The (unverified) time of the first RFC 3161 timestamp, for explaining a failure."""
    if not parsed.timestamps:
        return None
    from rfc3161_client import decode_timestamp_response

    try:
        when = decode_timestamp_response(parsed.timestamps[0]).tst_info.gen_time
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
