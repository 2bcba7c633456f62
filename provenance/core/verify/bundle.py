"""Verification of Sigstore bundles (v0.1 to v0.3): message signatures and DSSE envelopes, keyless or key-based.

Two engines, one result, and the reference decides where it can:

* **sigstore-python** decides every certificate-based bundle it reads completely (one ``hashedrekord`` or
  ``dsse`` entry): its rejection stands, whatever our own checks would say. We call it with no identity policy
  of its own and translate its one exception into a stage and a stable code (refined by our own chain and SCT
  checks, which say *why*). The one exception: a timestamp exactly at its authority's validity end, which the
  spec includes (``Leniency.TSA_END_INCLUSIVE``).
* **our own checks** cover the rest, each acceptance resting on a named :class:`~provenance.core.types.Leniency`
  recorded on the result and shown: key-based bundles (``key_based``), v0.1 bundles whose log evidence is only a
  signed entry timestamp (``v01_inclusion_promise``: v0.2 and later need an inclusion proof with a signed
  checkpoint), ``intoto`` entries (``intoto_entry``), a trust domain without a log (``tsa_only``) and the
  insecure opt-out of the log (``not_logged``).

Identity (exact or anchored regexp SAN, OtherName decoded, issuer in both extensions, GitHub workflow claims)
and the DSSE subject (sha256 or sha512 digest of the artifact) are always checked here, never by sigstore.
Nothing here raises on bad evidence: every check is a :class:`CheckResult` with a stable code.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from provenance.core.claims import WorkflowClaims
from provenance.core.errors import TrustRootError
from provenance.core.jsonbounds import loads as json_loads
from provenance.core.trustroot import TrustRoot, spki_sha256
from provenance.core.types import (
    Digest,
    IdentityPolicy,
    Leniency,
    LogEvidence,
    Outcome,
    Stage,
    VerificationResult,
)
from provenance.core.verify.certificate import (
    Signer,
    check_certificate,
    check_chain,
    check_identity,
    check_profile,
    check_sct,
    check_signed_times,
    oidc_issuer,
    readable,
    sans_of,
)
from provenance.core.verify.checks import MALFORMED, Requirement, Run
from provenance.core.verify.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, describe_subject, is_statement, pae
from provenance.core.verify.encoding import MAX_JSON_INT, MAX_TIMESTAMP, b64decode, is_int, sha256_hex, short
from provenance.core.verify.signature import verify_message, verify_signature
from provenance.core.verify.timestamps import MAX_TIMESTAMPS, check_timestamps, first_timestamp_time
from provenance.core.verify.tlog import (
    MAX_PROOF_HASHES,
    Expected,
    Proof,
    TlogEntry,
    check_body,
    check_set,
    inclusion_problem,
    trusted_log,
)

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


# Log entry kinds sigstore verifies completely (with a proof and checkpoint), by content type.
_SIGSTORE_KINDS = {
    "message": frozenset({("hashedrekord", "0.0.1"), ("hashedrekord", "0.0.2")}),
    "dsse": frozenset({("dsse", "0.0.1"), ("hashedrekord", "0.0.2")}),
}


# Kinds our own checks understand (Rekor v1 and v2 bodies).
_OWN_KINDS = {
    "message": frozenset({("hashedrekord", "0.0.1"), ("hashedrekord", "0.0.2")}),
    "dsse": frozenset({("dsse", "0.0.1"), ("intoto", "0.0.1"), ("intoto", "0.0.2"), ("hashedrekord", "0.0.2"),
                       ("dsse", "0.0.2")}),
}


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
    run = Run(require_tlog=require_tlog)
    parsed = _parse(bundle, run)
    if parsed is None:
        return BundleVerification(run.result(Signer()))
    target = _Target.of(artifact)
    statement = _check_content(parsed, target, run)
    signer = _signer(parsed, target, run, public_keys)
    if fetch_inclusion_proof is not None:
        parsed = _with_fetched_proof(parsed, run, trust_root, fetch_inclusion_proof)

    if signer.cert is not None and _sigstore_decides(parsed, target):
        # sigstore-python reads this bundle completely: its rejection stands, whatever our own checks say.
        _verify_with_sigstore(parsed, target, signer, run, trust_root)
    else:
        _verify_ourselves(parsed, target, signer, run, trust_root)

    if signer.cert is not None:
        check_identity(run, signer, identity, claims)
    elif signer.fingerprint:
        run.lenient(Leniency.KEY_BASED, Stage.SIGNATURE)
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


@dataclass
class _Bundle:
    raw: bytes
    version: str
    certificates: list[x509.Certificate]  # leaf first; empty for key-based bundles
    key_hint: str | None  # verificationMaterial.publicKey.hint (key-based); None when keyless
    entries: list[TlogEntry]
    timestamps: list[bytes]  # DER RFC 3161 responses
    message_digest: tuple[str, bytes] | None  # (algorithm, digest) of a message signature
    signature: bytes  # the message signature, or the envelope's first signature
    envelope: Envelope | None
    extra: dict[str, Any] = field(default_factory=dict)


class _Unreadable(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _parse(raw: bytes, run: Run) -> _Bundle | None:
    hint = "the bundle is damaged or not a Sigstore bundle; fetch it again or re-sign"
    try:
        if not isinstance(raw, bytes | bytearray) or len(raw) > MAX_BUNDLE_BYTES:
            size = f"{len(raw)} bytes" if isinstance(raw, bytes | bytearray) else type(raw).__name__
            raise _Unreadable("bundle_too_large", f"the bundle is {size}; at most {MAX_BUNDLE_BYTES} are accepted")
        try:
            doc = json_loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise _Unreadable("bundle_not_json", f"the bundle is not JSON: {short(str(err))}") from err
        parsed = _read_bundle(bytes(raw), doc)
    except _Unreadable as err:
        run.fail(Stage.FORMAT, err.code, str(err), hint, MALFORMED)
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
            f"the bundle's mediaType is {short(media_type)}; expected a Sigstore bundle v0.1, v0.2 or v0.3",
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
        envelope = Envelope(payload_type, payload, signatures)
        signature = signatures[0]
    return _Bundle(raw, version, certificates, key_hint, entries, timestamps, message_digest, signature, envelope)


def _tlog_entry(item: Any, i: int) -> TlogEntry:
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
        _u64(integrated, f"{where}.integratedTime", MAX_TIMESTAMP) if integrated not in (None, "") else None
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
        proof = Proof(
            log_index=_u64(raw_proof.get("logIndex"), f"{where}.inclusionProof.logIndex"),
            tree_size=_u64(raw_proof.get("treeSize"), f"{where}.inclusionProof.treeSize"),
            root_hash=_b64_field(raw_proof, "rootHash", f"{where}.inclusionProof.rootHash"),
            hashes=[_b64_value(h, f"{where}.inclusionProof.hashes") for h in hashes_raw],
            checkpoint=envelope if isinstance(envelope, str) else "",
        )
    body_raw = _b64_field(item, "canonicalizedBody", f"{where}.canonicalizedBody")
    try:
        body = json_loads(body_raw)
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            body = None
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = None
    return TlogEntry(log_index, log_id, kind, version, integrated_time, set_signature, proof, body_raw, body)


def _field(obj: dict[str, Any], key: str, kind: type, path: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise _Unreadable("bundle_malformed", f"{path} is {short(value, 60)}, expected a {kind.__name__}")
    return value


def _obj_or_fail(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Unreadable("bundle_malformed", f"{path} is not an object")
    return value


def _b64_value(value: Any, path: str, allow_empty: bool = False) -> bytes:
    if value == "" and allow_empty:
        return b""
    decoded = b64decode(value)
    if decoded is None:
        raise _Unreadable("bundle_malformed", f"{path} is not base64")
    return decoded


def _b64_field(obj: dict[str, Any], key: str, path: str, allow_empty: bool = False) -> bytes:
    return _b64_value(obj.get(key), path, allow_empty)


def _u64(value: Any, path: str, limit: int = MAX_JSON_INT) -> int:
    # protobuf JSON writes 64-bit integers as strings
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        value = int(value)
    if value is None:
        value = 0  # protobuf omits zero values
    if not is_int(value, limit):
        raise _Unreadable("bundle_malformed", f"{path} is {short(value, 40)}, expected an integer")
    return int(value)


def _certificate(item: Any) -> x509.Certificate:
    der = _b64_field(_obj_or_fail(item, "certificate"), "rawBytes", "certificate.rawBytes")
    try:
        return readable(x509.load_der_x509_certificate(der))
    except (ValueError, UnsupportedAlgorithm) as err:
        raise _Unreadable("certificate_unreadable", f"a bundle certificate is not DER X.509: {err}") from err


def _check_content(parsed: _Bundle, target: _Target, run: Run) -> dict[str, Any] | None:
    """Message digest vs the artifact, or the in-toto statement's subjects vs the artifact."""
    if parsed.envelope is None:
        if parsed.message_digest is None:
            return None
        algorithm, digest = parsed.message_digest
        if algorithm != "SHA2_256":
            run.fail(
                Stage.UNSUPPORTED,
                "digest_algorithm_unsupported",
                f"the message digest uses {short(algorithm, 40)}; only SHA2_256 is verified",
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
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        run.fail(
            Stage.UNSUPPORTED,
            "payload_type_unsupported",
            f"the envelope's payloadType is {short(envelope.payload_type)}, expected "
            f"{IN_TOTO_PAYLOAD_TYPE!r}: nothing ties it to an artifact",
            "only in-toto statements are verified",
            Outcome.UNSUPPORTED,
        )
        return None
    try:
        statement = json_loads(envelope.payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        run.fail(
            Stage.FORMAT,
            "statement_unreadable",
            f"the in-toto statement is not JSON: {short(str(err))}",
            hint,
            MALFORMED,
        )
        return None
    if not is_statement(statement):
        found = statement.get("_type") if isinstance(statement, dict) else type(statement).__name__
        run.fail(
            Stage.FORMAT,
            "statement_unreadable",
            f"the payload is not an in-toto statement with subjects and a predicateType (_type {short(found)})",
            hint,
            MALFORMED,
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
        found = ", ".join(describe_subject(s) for s in subjects[:5]) or "no subject"
        run.fail(
            Stage.SUBJECT,
            "subject_mismatch",
            f"no subject of the statement has the digest {target.digest}; found {found}",
            f"attest {target.digest} itself; a statement about another artifact says nothing about this one",
            Outcome.INVALID,
        )
    return dict(statement)


def _signer(parsed: _Bundle, target: _Target, run: Run, public_keys: tuple[bytes, ...]) -> Signer:
    if parsed.certificates:
        cert = parsed.certificates[0]
        sans = sans_of(cert)
        return Signer(
            key=cert.public_key(),
            cert=cert,
            identity=sans[0] if sans else "",
            issuer=oidc_issuer(cert) or "",
            sans=sans,
            presented_chain=parsed.certificates[1:],
        )
    hint_text = f" (key hint {short(parsed.key_hint, 80)})" if parsed.key_hint else ""
    if not public_keys:
        run.fail(
            Stage.TRUST_ROOT,
            "public_key_required",
            f"the bundle was signed with a long-lived key{hint_text}, and no public key was given",
            "configure the signer's public key (cosign.pub) as a trust anchor",
            Outcome.UNTRUSTED,
        )
        return Signer()
    keys: list[PublicKeyTypes] = []
    for pem in public_keys:
        try:
            keys.append(serialization.load_pem_public_key(pem))
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:
            run.fail(
                Stage.TRUST_ROOT,
                "public_key_unreadable",
                f"a configured public key is not a PEM public key: {short(str(err))}",
                "configure the signer's public key in PEM (cosign.pub)",
                Outcome.ERROR,
            )
    if not keys:
        return Signer()
    # Pick the key that made the signature; else the one the hint names; else the first (and fail with it).
    chosen = next((k for k in keys if _signature_ok(parsed, k, target)), None)
    if chosen is None and parsed.key_hint:
        chosen = next((k for k in keys if base64.b64encode(spki_sha256(k)).decode() == parsed.key_hint), None)
    chosen = chosen or keys[0]
    fingerprint = f"sha256:{spki_sha256(chosen).hex()}"
    run.ok(Stage.TRUST_ROOT, "key_trusted", f"the signer is the configured public key {fingerprint}")
    return Signer(key=chosen, fingerprint=fingerprint)


def _signature_ok(parsed: _Bundle, key: PublicKeyTypes, target: _Target) -> bool:
    """Whether ``key`` made the bundle's signature: DSSE over the PAE; a message signature over the digest the
    bundle states (whether that digest is the artifact's is a separate check), else over the artifact."""
    if parsed.envelope is not None:
        encoded = pae(parsed.envelope.payload_type, parsed.envelope.payload)
        return any(verify_signature(key, sig, encoded) for sig in parsed.envelope.signatures)
    return verify_message(key, parsed.signature, target.data, _signed_digest(parsed, target))


def _signed_digest(parsed: _Bundle, target: _Target) -> bytes | None:
    """The SHA-256 a message signature covers: the bundle's messageDigest, else the artifact's."""
    if parsed.message_digest is not None and parsed.message_digest[0] == "SHA2_256":
        return parsed.message_digest[1]
    return target.sha256


def _sigstore_decides(parsed: _Bundle, target: _Target) -> bool:
    """Whether sigstore-python reads this (certificate-based) bundle completely; then its verdict stands.

    The rest is ours: key-based bundles, entry kinds it does not read (intoto), no or several entries, and a
    v0.1 bundle whose only log evidence is the signed entry timestamp the v0.1 format allows. Each acceptance
    there rests on a named :class:`Leniency`.
    """
    if len(parsed.entries) != 1 or (parsed.envelope is None and target.sha256 is None):
        return False
    entry = parsed.entries[0]
    if (entry.kind, entry.version) not in _SIGSTORE_KINDS["dsse" if parsed.envelope else "message"]:
        return False
    promise_only = entry.proof is None or not entry.proof.checkpoint
    return not (parsed.version == "0.1" and promise_only)


class _IdentityCheckedByProvenance:
    """A sigstore policy that accepts any certificate: the identity is checked afterwards, by us.

    sigstore's own policies cannot match OtherName SANs or regular expressions and explain only the first
    mismatch; ``verify_bundle`` always runs our identity check after sigstore's cryptographic checks.
    """

    def verify(self, cert: x509.Certificate) -> None:
        return None


_SIGSTORE_POLICY = _IdentityCheckedByProvenance()


def _verify_with_sigstore(
    parsed: _Bundle,
    target: _Target,
    signer: Signer,
    run: Run,
    trust_root: TrustRoot,
) -> None:
    """Verify the cryptography with sigstore and record the checks. A bundle it refuses to read is refused."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle
    from sigstore_models.common.v1 import HashAlgorithm

    entry = parsed.entries[0]
    try:
        bundle = Bundle.from_json(parsed.raw)
        verifier = trust_root.verifier()
        if parsed.envelope is not None:
            verifier.verify_dsse(bundle, _SIGSTORE_POLICY)
        else:
            assert target.sha256 is not None
            verifier.verify_artifact(
                Hashed(algorithm=HashAlgorithm.SHA2_256, digest=target.sha256), bundle, _SIGSTORE_POLICY
            )
    except (SigstoreError, ValueError, TrustRootError) as err:
        if _tsa_end_inclusive(parsed, trust_root):
            # The one place we accept what sigstore-python rejects for a bundle it reads: a timestamp exactly at
            # its authority's validity end, which the spec includes. Everything else is checked by our engine.
            _verify_ourselves(parsed, target, signer, run, trust_root)
            run.lenient(Leniency.TSA_END_INCLUSIVE, Stage.TIMESTAMP)
            return
        _translate(err, parsed, signer, run, trust_root)
        return

    cert = signer.cert
    assert cert is not None
    logged_at = entry.integrated_time
    run.tlog = LogEvidence.INCLUSION_PROOF
    if entry.set_signature and logged_at:
        run.integrated_time = logged_at
        run.add_signed_time(datetime.fromtimestamp(logged_at, tz=UTC), "the log's signed integrated time")
    else:
        when = first_timestamp_time(parsed.timestamps)
        run.integrated_time = int(when.timestamp()) if when else None
    # sigstore verified the timestamps; ours record each verified time, and every one must lie in the
    # certificate's validity (sigstore checks that too: a second, independent look costs little).
    check_timestamps(run, signature=parsed.signature, timestamps=parsed.timestamps, trust_root=trust_root)
    check_signed_times(run, cert)
    check_profile(run, cert)
    run.require(Requirement.LOG_BODY)
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


def _tsa_end_inclusive(parsed: _Bundle, trust_root: TrustRoot) -> bool:
    """Whether a timestamp lies exactly at the end of a trusted authority's validity (sigstore-python excludes
    the end; the Sigstore spec includes it). Only decides whether our engine takes a second look."""
    ends = {tsa.validity.end for tsa in trust_root.timestamp_authorities if tsa.validity.end is not None}
    if not ends or not parsed.timestamps:
        return False
    from rfc3161_client import decode_timestamp_response

    for der in parsed.timestamps:
        try:
            when = decode_timestamp_response(der).tst_info.gen_time
        except ValueError:
            continue
        if (when if when.tzinfo else when.replace(tzinfo=UTC)) in ends:
            return True
    return False


def _translate(
    err: Exception, parsed: _Bundle, signer: Signer, run: Run, trust_root: TrustRoot
) -> None:
    """Turn sigstore's one exception into a stage and stable code, refined by our own diagnosis."""
    text = str(err.args[0]) if err.args else str(err)
    if len(err.args) > 1:
        text += " " + " ".join(str(a) for a in err.args[1:])
    detail = f"sigstore: {short(text, 300)}"
    entry = parsed.entries[0]
    run.claimed_time = entry.integrated_time
    cert = signer.cert
    assert cert is not None

    if entry.proof is None or not entry.proof.checkpoint:
        run.fail(
            Stage.TLOG,
            "tlog_inclusion_proof_missing",
            f"the v{parsed.version} bundle's log entry carries no inclusion proof"
            + (" with a signed checkpoint" if entry.proof is not None else "")
            + ": from v0.2 on a bundle must prove its entry is in the log; a signed entry timestamp only promises "
            f"it ({detail})",
            "fetch the bundle again from the signer (cosign and sigstore write the proof), or re-sign",
            Outcome.INVALID,
        )
        return

    if "certificate chain" in text or "expired at time of signing" in text:
        # Which signed time was outside the certificate? Our own look at each, on a scratch run.
        scratch = Run(require_tlog=run.require_tlog)
        check_timestamps(scratch, signature=parsed.signature, timestamps=parsed.timestamps, trust_root=trust_root)
        if entry.integrated_time and entry.set_signature:
            scratch.add_signed_time(datetime.fromtimestamp(entry.integrated_time, tz=UTC),
                                    "the log's (claimed) integrated time")
        check_signed_times(scratch, cert)
        outside = [(c, o) for c, o in scratch.checks if c.code == "cert_not_valid_at_signing_time"]
        if outside:
            check, outcome = outside[0]
            run.fail(check.stage, check.code, f"{check.message} ({detail})", check.hint, outcome or Outcome.UNTRUSTED)
            return
        before = len(run.checks)
        when = datetime.fromtimestamp(entry.integrated_time, tz=UTC) if entry.integrated_time else None
        when = when or first_timestamp_time(parsed.timestamps) or datetime.now(UTC)
        check_chain(run, cert, trust_root, when, "the signing time")
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
            check_sct(run, cert, issuer, trust_root)
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
        "must contain an inclusion promise or signed timestamp",
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


def _verify_ourselves(
    parsed: _Bundle,
    target: _Target,
    signer: Signer,
    run: Run,
    trust_root: TrustRoot,
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
    expected = Expected(
        layer_sha256=(_signed_digest(parsed, target) or b"").hex() if parsed.envelope is None else "",
        signatures=parsed.envelope.signatures if parsed.envelope else [parsed.signature],
        payload_sha256=sha256_hex(parsed.envelope.payload) if parsed.envelope else "",
        payload_type=parsed.envelope.payload_type if parsed.envelope else "",
        pae_sha256=sha256_hex(pae(parsed.envelope.payload_type, parsed.envelope.payload)) if parsed.envelope else "",
    )
    kinds = _OWN_KINDS["dsse" if parsed.envelope else "message"]
    if len(parsed.entries) > 1:
        run.fail(
            Stage.FORMAT,
            "tlog_entries_many",
            f"the bundle holds {len(parsed.entries)} transparency-log entries; a Sigstore bundle holds exactly one",
            "the bundle was assembled from parts; re-sign",
            MALFORMED,
        )
    else:
        for entry in parsed.entries:
            _check_entry(run, entry, signer, expected, trust_root, kinds, version=parsed.version)
    check_timestamps(run, signature=parsed.signature, timestamps=parsed.timestamps, trust_root=trust_root)
    if not parsed.entries:
        if not trust_root.tlog_keys and run.signed_times and run.require_tlog:
            run.tlog = LogEvidence.TIMESTAMPED_NOT_LOGGED
            run.ok(
                Stage.TLOG,
                "tlog_absent_tsa_only",
                f"timestamped, not logged: the trust root {trust_root.name!r} has no transparency log, and an "
                "RFC 3161 timestamp of its authority dates the signature",
            )
            run.lenient(Leniency.TSA_ONLY)
        elif run.require_tlog:
            run.fail(
                Stage.TLOG,
                "tlog_missing",
                "the bundle has no transparency-log entry: nothing shows the signature was published",
                "sign with transparency-log upload enabled",
                Outcome.UNTRUSTED,
            )
        else:
            run.tlog = LogEvidence.NOT_LOGGED
            run.ok(Stage.TLOG, "tlog_not_required", "no transparency-log entry; the log was not required "
                                                    "(insecure: --insecure-ignore-tlog)")
            run.lenient(Leniency.NOT_LOGGED)
    if signer.cert is None and run.require_tlog and run.integrated_time is None and run.signed_time is None:
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
        check_certificate(run, signer, trust_root, fallback=(start, "the certificate's start (no signed time)"))


def _check_entry(
    run: Run,
    entry: TlogEntry,
    signer: Signer,
    expected: Expected,
    trust_root: TrustRoot,
    kinds: frozenset[tuple[str, str]],
    *,
    version: str,
) -> None:
    run.require(Requirement.LOG_BODY)
    run.extra["log_index"] = str(entry.log_index)
    run.extra["log_id"] = entry.log_id.hex()
    if run.claimed_time is None:
        run.claimed_time = entry.integrated_time
    log = trusted_log(run, trust_root, entry.log_id)
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
            MALFORMED,
        )
    elif (str(entry.body.get("kind")), str(entry.body.get("apiVersion"))) != (entry.kind, entry.version):
        run.fail(
            Stage.TLOG,
            "tlog_body_mismatch",
            f"the entry says it is {entry.kind}/{entry.version}, but its body is "
            f"{short(entry.body.get('kind'), 30)}/{short(entry.body.get('apiVersion'), 20)}",
            _LOG_HINT,
            Outcome.INVALID,
        )
    elif (entry.kind, entry.version) not in kinds:
        run.fail(
            Stage.UNSUPPORTED,
            "tlog_body_unsupported",
            f"the log entry is a {short(entry.kind, 40)}/{short(entry.version, 20)} entry; "
            f"expected one of {', '.join(f'{k}/{v}' for k, v in sorted(kinds))} for this bundle",
            "this kind of log entry is not checked here",
            Outcome.UNSUPPORTED,
        )
    elif signer.key is not None:
        hint = "the bundle was assembled from parts of others"
        check_body(run, entry.body, signer, expected, what="bundle", hint=hint)
        if entry.kind == "intoto":
            run.lenient(Leniency.INTOTO_ENTRY)
        elif (entry.kind, entry.version) == ("dsse", "0.0.2"):
            run.lenient(Leniency.DSSE_V2_ENTRY)
        if entry.version == "0.0.2" and signer.cert is None:
            run.lenient(Leniency.KEY_REKOR_V2)

    # inclusion promise (SET)
    if entry.set_signature is not None and entry.integrated_time is not None:
        logged_at = check_set(
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
    if proof is None or not proof.checkpoint:
        if version != "0.1":
            # v0.2 and later: an inclusion proof to a signed checkpoint is required, whatever the SET says.
            run.fail(
                Stage.TLOG,
                "tlog_inclusion_proof_missing",
                f"the v{version} bundle's log entry carries no inclusion proof"
                + (" with a signed checkpoint" if proof is not None else "")
                + ": from v0.2 on a bundle must prove its entry is in the log; a signed entry timestamp "
                "only promises it",
                "fetch the bundle again from the signer (cosign and sigstore write the proof), or re-sign",
                Outcome.INVALID,
            )
            return
        if run.tlog == LogEvidence.INCLUSION_PROMISE:
            run.ok(
                Stage.TLOG,
                "tlog_promise_only" if proof is None else "tlog_proof_unsigned",
                "inclusion promised, not proven: the v0.1 bundle's log evidence is a signed entry timestamp"
                + (" (its inclusion proof has no signed checkpoint, so its root proves nothing)" if proof else ""),
            )
            run.lenient(Leniency.INCLUSION_PROMISE)
        return
    problem = inclusion_problem(entry, proof, trust_root)
    if problem is not None:
        code, message = problem
        run.fail(Stage.TLOG, code, message, _LOG_HINT, Outcome.INVALID)
        return
    run.tlog = LogEvidence.INCLUSION_PROOF
    run.ok(
        Stage.TLOG,
        "tlog_ok",
        f"entry {entry.log_index} is in {name}: the inclusion proof leads to the root "
        f"of a checkpoint signed by the log (tree size {proof.tree_size})",
    )


def _with_fetched_proof(parsed: _Bundle, run: Run, trust_root: TrustRoot, fetch: InclusionProofFetcher) -> _Bundle:
    """The bundle with the inclusion proof its log gives for an entry that carries only a SET, so that it is
    verified like any bundle with a proof; the bundle unchanged when there is nothing to fetch or fetching fails."""
    if len(parsed.entries) != 1:
        return parsed
    entry = parsed.entries[0]
    log = trust_root.tlog_key(entry.log_id)
    if (entry.proof is not None and entry.proof.checkpoint) or entry.set_signature is None or log is None:
        return parsed
    proof = _fetched_proof(run, entry, log.base_url, fetch)
    if proof is None:
        return parsed
    doc = json.loads(parsed.raw)
    doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"] = {
        "logIndex": str(proof.log_index),
        "rootHash": base64.b64encode(proof.root_hash).decode(),
        "treeSize": str(proof.tree_size),
        "hashes": [base64.b64encode(h).decode() for h in proof.hashes],
        "checkpoint": {"envelope": proof.checkpoint},
    }
    raw = json.dumps(doc).encode()
    try:
        upgraded = _read_bundle(raw, doc)
    except _Unreadable as err:
        run.ok(Stage.TLOG, "tlog_proof_fetch_failed", f"the log's inclusion proof is unusable ({err}); the "
                                                      "bundle is verified as it came")
        return parsed
    run.ok(Stage.TLOG, "tlog_proof_fetched", f"the inclusion proof of entry {entry.log_index} was fetched from "
                                             f"{log.base_url or 'the log'}")
    return upgraded


def _fetched_proof(run: Run, entry: TlogEntry, base_url: str, fetch: InclusionProofFetcher) -> Proof | None:
    """Ask the log for the inclusion proof of an entry that carries only a SET; None (and a note) on failure."""
    try:
        answer = fetch(base_url, entry.log_index)
        [(_, item)] = list(answer.items())
        if base64.b64decode(item["body"]) != entry.body_raw:
            raise ValueError("the log returned another entry body for this index")
        raw = item["verification"]["inclusionProof"]
        return Proof(
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
            f"{entry.log_index} from {base_url or 'the log'} ({short(str(err) or type(err).__name__)}); "
            "the result rests on the signed entry timestamp",
        )
        return None
