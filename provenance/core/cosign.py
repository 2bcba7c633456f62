"""Verification of cosign *legacy* layers: the ``sha256-<hex>.sig`` and ``sha256-<hex>.att`` tag formats.

The ``sigstore`` package cannot verify these: their transparency-log evidence is a Rekor *bundle annotation*
holding only a signed entry timestamp (SET, a promise of inclusion), never an inclusion proof, and old
attestations are logged as ``intoto`` entries. This module checks them completely, as ``cosign verify`` and
``cosign verify-attestation`` do, and explains every failure:

* format: the payload and annotations parse, within size bounds;
* keyless signer: the leaf certificate chains to a CA of the trust root at the log's integrated time, the CA was
  valid then, the certificate is a code-signing certificate with an embedded SCT from a trusted CT log, and its
  identity (SAN) and OIDC issuer match the policy; key-based signer: the given public key;
* signature: over the simple-signing payload (``.sig``) or the DSSE pre-authentication encoding (``.att``);
* transparency log: the SET verifies with the trusted Rekor key named by the entry's log id, the log's
  integrated time falls in the certificate's validity, and the logged entry describes *this* payload,
  signature and signer (a SET for some other entry proves nothing);
* subject: the signed image digest (``.sig``) or an in-toto subject digest (``.att``) is the image's digest.

Every check becomes a :class:`CheckResult` with a stable code; nothing here raises on bad evidence.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.certificate_transparency import LogEntryType, SignedCertificateTimestamp
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store
from cryptography.x509.verification import VerificationError as X509VerificationError

from provenance.core.claims import WorkflowClaims, der_utf8, read_claims
from provenance.core.errors import MalformedEvidenceError
from provenance.core.trustroot import CertificateAuthority, LogKey, TrustRoot, spki_sha256
from provenance.core.types import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    ANNOTATION_PREDICATE_TYPE,
    ANNOTATION_RFC3161,
    ANNOTATION_SIGNATURE,
    CheckResult,
    Digest,
    IdentityPolicy,
    MediaType,
    Outcome,
    SignedLayer,
    Stage,
    VerificationResult,
)

__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "MAX_ANNOTATION_BYTES",
    "MAX_ATTESTATION_PAYLOAD_BYTES",
    "MAX_SIGNATURE_PAYLOAD_BYTES",
    "SIMPLE_SIGNING_TYPE",
    "layers_from_download",
    "verify_attestation_layer",
    "verify_signature_layer",
]

SIMPLE_SIGNING_TYPE = "cosign container image signature"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"})

# A simple-signing payload is ~300 bytes; attestations carry whole SBOMs, which reach tens of MiB.
MAX_SIGNATURE_PAYLOAD_BYTES = 256 * 1024
MAX_ATTESTATION_PAYLOAD_BYTES = 32 * 1024 * 1024
# A certificate chain or a Rekor bundle is a few KiB.
MAX_ANNOTATION_BYTES = 128 * 1024

_OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OID_OTHERNAME_USERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")

# Which failure means which verdict. Anything not listed (a bug) counts as INVALID, never as verified.
_MALFORMED = Outcome.MALFORMED
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

# RFC 8785 (the SET's canonical form) only has integers up to 2**53; times must also be dates Python can hold.
_MAX_JSON_INT = 2**53 - 1
_MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z

_SIG_BODY_KINDS = frozenset({("hashedrekord", "0.0.1"), ("rekord", "0.0.1")})
_ATT_BODY_KINDS = frozenset({("intoto", "0.0.2"), ("intoto", "0.0.1"), ("dsse", "0.0.1")})


# -- public API -----------------------------------------------------------------------------------------------


def verify_signature_layer(
    layer: SignedLayer,
    *,
    image_digest: Digest,
    trust_root: TrustRoot,
    identity: IdentityPolicy | None = None,
    public_key: bytes | None = None,
    require_tlog: bool = True,
    now: datetime | None = None,
) -> VerificationResult:
    """Verify one layer of a cosign ``.sig`` manifest against ``image_digest``.

    Keyless (no ``public_key``): the certificate must chain to ``trust_root`` and match ``identity``.
    Key-based: ``public_key`` is the signer's PEM public key. ``now`` is the time used for the certificate
    when there is no transparency-log time (only with ``require_tlog=False``); it defaults to the current time.

    Returns a :class:`VerificationResult`: ``VERIFIED`` only when every check passed. Never raises on bad
    evidence; a public key that cannot be read gives ``ERROR``.
    """
    run = _Run(require_tlog=require_tlog)
    if not _admit(layer, run, media_type=MediaType.COSIGN_SIMPLESIGNING, limit=MAX_SIGNATURE_PAYLOAD_BYTES):
        return run.result(_Signer())
    payload = _parse_simple_signing(layer, run)
    signature = _signature_annotation(layer, run)
    signer = _signer(layer, run, public_key)
    entry = _rekor_entry(layer, run, _SIG_BODY_KINDS)

    if signature is not None and signer.key is not None:
        if _verify_signature(signer.key, signature, layer.payload):
            run.ok(Stage.SIGNATURE, "signature_ok", "the signature over the payload verifies with the signer's key")
        else:
            run.fail(
                Stage.SIGNATURE,
                "signature_invalid",
                f"the signature does not verify over the payload (sha256:{_sha256(layer.payload)}) "
                f"with {signer.describe()}",
                "the payload or the signature was altered, or it was signed with another key; re-sign the image",
                Outcome.INVALID,
            )

    expected = _Expected(layer_sha256=_sha256(layer.payload), signatures=[signature] if signature else [])
    _check_tlog(run, entry, signer, expected, trust_root)
    _check_signer(run, signer, trust_root, identity, now)

    if payload is not None:
        signed = payload["critical"]["image"]["docker-manifest-digest"]
        run.extra["docker_reference"] = str(_get(payload, "critical", "identity", "docker-reference") or "")[:500]
        if signed == str(image_digest):
            run.ok(Stage.SUBJECT, "digest_ok", f"the signature is for {image_digest}")
        else:
            run.fail(
                Stage.SUBJECT,
                "digest_mismatch",
                f"the signature is for {signed[:100]}, not for this image ({image_digest}); "
                "it was copied from another image",
                f"sign {image_digest} itself; a signature of another image says nothing about this one",
                Outcome.INVALID,
            )
    return run.result(signer)


def verify_attestation_layer(
    layer: SignedLayer,
    *,
    image_digest: Digest,
    trust_root: TrustRoot,
    identity: IdentityPolicy | None = None,
    public_key: bytes | None = None,
    require_tlog: bool = True,
    now: datetime | None = None,
) -> tuple[VerificationResult, dict[str, Any] | None]:
    """Verify one layer of a cosign ``.att`` manifest (a DSSE envelope holding an in-toto statement).

    Arguments as for :func:`verify_signature_layer`. The statement must name ``image_digest`` among its
    subjects (sha256 or sha512 digests both occur).

    Returns the result and, only when it is ``VERIFIED``, the verified in-toto statement. Never raises on bad
    evidence.
    """
    run = _Run(require_tlog=require_tlog)
    if not _admit(layer, run, media_type=MediaType.DSSE_ENVELOPE, limit=MAX_ATTESTATION_PAYLOAD_BYTES):
        return run.result(_Signer()), None
    envelope = _parse_envelope(layer, run)
    signer = _signer(layer, run, public_key)
    entry = _rekor_entry(layer, run, _ATT_BODY_KINDS)

    signatures = envelope.signatures if envelope else []
    if envelope is not None and signer.key is not None:
        pae = _pae(envelope.payload_type, envelope.payload)
        if any(_verify_signature(signer.key, sig, pae) for sig in envelope.signatures):
            run.ok(
                Stage.SIGNATURE, "signature_ok", "the DSSE signature over the statement verifies with the signer key"
            )
        else:
            run.fail(
                Stage.SIGNATURE,
                "signature_invalid",
                f"none of the envelope's {len(envelope.signatures)} signature(s) verifies over the DSSE "
                f"pre-authentication encoding with {signer.describe()}",
                "the statement or the signature was altered, or it was signed with another key; re-attest",
                Outcome.INVALID,
            )

    expected = _Expected(
        layer_sha256=_sha256(layer.payload),
        signatures=signatures,
        payload_sha256=_sha256(envelope.payload) if envelope else "",
        payload_type=envelope.payload_type if envelope else "",
    )
    _check_tlog(run, entry, signer, expected, trust_root)
    _check_signer(run, signer, trust_root, identity, now)

    statement = envelope.statement if envelope else None
    if statement is not None:
        run.extra["predicate_type"] = str(statement.get("predicateType", ""))[:500]
        subjects = statement["subject"]
        if any(_subject_matches(subject, image_digest) for subject in subjects):
            run.ok(Stage.SUBJECT, "subject_ok", f"the statement names {image_digest} as a subject")
        else:
            found = ", ".join(_describe_subject(s) for s in subjects[:5]) or "no subject"
            run.fail(
                Stage.SUBJECT,
                "subject_mismatch",
                f"no subject of the statement has the digest {image_digest}; found {found}",
                f"attest {image_digest} itself; an attestation about another artifact says nothing about this one",
                Outcome.INVALID,
            )
    result = run.result(signer)
    return result, (statement if result.is_verified else None)


def layers_from_download(data: bytes) -> list[SignedLayer]:
    """Turn the JSON output of ``cosign download signature`` into ``.sig`` layers.

    That output lists, per signature, ``Base64Signature``, ``Payload`` (base64), ``Cert``, ``Chain``,
    ``Bundle`` and ``RFC3161Timestamp``: the same material as the layer blob and its annotations.

    Returns the layers in order. Raises :class:`MalformedEvidenceError` (code ``download_malformed``) when
    the document is not such a list or a payload is not base64.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedEvidenceError(f"cosign download output is not JSON: {err}", code="download_malformed") from err
    if not isinstance(doc, list) or not all(isinstance(item, dict) for item in doc):
        raise MalformedEvidenceError("cosign download output is not a list of signatures", code="download_malformed")
    layers = []
    for i, item in enumerate(doc):
        try:
            payload = base64.b64decode(str(item.get("Payload") or ""), validate=True)
        except (binascii.Error, ValueError) as err:
            raise MalformedEvidenceError(
                f"signature {i} of the cosign download output: Payload is not base64 ({err})",
                code="download_malformed",
            ) from err
        annotations = {ANNOTATION_SIGNATURE: str(item.get("Base64Signature") or "")}
        if item.get("Cert"):
            annotations[ANNOTATION_CERTIFICATE] = str(item["Cert"])
        if item.get("Chain"):
            annotations[ANNOTATION_CHAIN] = str(item["Chain"])
        if item.get("Bundle"):
            annotations[ANNOTATION_BUNDLE] = json.dumps(item["Bundle"])
        if item.get("RFC3161Timestamp"):
            annotations[ANNOTATION_RFC3161] = json.dumps(item["RFC3161Timestamp"])
        layers.append(SignedLayer(MediaType.COSIGN_SIMPLESIGNING, payload, annotations))
    return layers


# -- the run: checks collected so far --------------------------------------------------------------------------


@dataclass
class _Run:
    require_tlog: bool
    checks: list[tuple[CheckResult, Outcome | None]] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    tlog: str = ""
    integrated_time: int | None = None  # set only once the SET verified with a trusted log key
    claimed_time: int | None = None  # the bundle's integratedTime, trusted or not
    signed_time: datetime | None = None  # a verified time from elsewhere (an RFC 3161 timestamp), bundles only
    signed_time_source: str = ""

    def ok(self, stage: Stage, code: str, message: str) -> None:
        self.checks.append((CheckResult(stage, code, True, message), None))

    def fail(self, stage: Stage, code: str, message: str, hint: str, outcome: Outcome) -> None:
        self.checks.append((CheckResult(stage, code, False, message, hint), outcome))

    def result(self, signer: _Signer) -> VerificationResult:
        outcomes = {outcome for _, outcome in self.checks if outcome is not None}
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
        )


def _rank(item: tuple[CheckResult, Outcome | None]) -> tuple[int, int]:
    """Sort key: failures by the verdict they imply, then by stage (the signer before the log); passes last."""
    check, outcome = item
    if outcome is None:
        return (len(_OUTCOME_ORDER), 0)
    by_outcome = _OUTCOME_ORDER.index(outcome) if outcome in _OUTCOME_ORDER else len(_OUTCOME_ORDER) - 1
    by_stage = _STAGE_ORDER.index(check.stage) if check.stage in _STAGE_ORDER else len(_STAGE_ORDER)
    return (by_outcome, by_stage)


@dataclass
class _Signer:
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


@dataclass
class _Expected:
    """What the transparency-log entry must describe for it to be about this layer."""

    layer_sha256: str
    signatures: list[bytes]
    payload_sha256: str = ""
    payload_type: str = ""


@dataclass
class _Envelope:
    payload_type: str
    payload: bytes
    signatures: list[bytes]
    statement: dict[str, Any] | None = None  # set once the payload parsed as an in-toto statement


@dataclass
class _Entry:
    """The bundle annotation: a Rekor entry and its signed entry timestamp."""

    set_signature: bytes
    body_b64: str
    body: dict[str, Any] | None
    integrated_time: int
    log_index: int
    log_id: str


# -- format ---------------------------------------------------------------------------------------------------


def _admit(layer: SignedLayer, run: _Run, *, media_type: str, limit: int) -> bool:
    """Check what must hold before anything is parsed: bounded sizes and text annotations.

    Returns False when the layer is not worth reading further (the failure is recorded).
    """
    if layer.media_type != media_type:
        # Not fatal: a wrong media type is a damaged layer, but the rest can still be explained.
        run.fail(
            Stage.FORMAT,
            "wrong_media_type",
            f"the layer's media type is {_short(layer.media_type)}, expected {media_type!r}",
            "only cosign simple-signing layers (.sig) and DSSE envelopes (.att) are verified here",
            _MALFORMED,
        )
    if not isinstance(layer.payload, bytes) or len(layer.payload) > limit:
        size = f"{len(layer.payload)} bytes" if isinstance(layer.payload, bytes) else "not bytes"
        run.fail(
            Stage.FORMAT,
            "payload_too_large",
            f"the layer is {size}; at most {limit} bytes are accepted",
            "this is not a cosign layer of the expected kind",
            _MALFORMED,
        )
        return False
    for name, value in layer.annotations.items():
        if not isinstance(value, str):
            run.fail(
                Stage.FORMAT,
                "annotation_not_text",
                f"the annotation {_short(name)} is {type(value).__name__}, not text",
                "this is not a cosign layer of the expected kind",
                _MALFORMED,
            )
            return False
        if len(value) > MAX_ANNOTATION_BYTES:
            run.fail(
                Stage.FORMAT,
                "annotation_too_large",
                f"the annotation {_short(name)} is {len(value)} characters; at most {MAX_ANNOTATION_BYTES} allowed",
                "this is not a cosign layer of the expected kind",
                _MALFORMED,
            )
            return False
    return True


def _parse_simple_signing(layer: SignedLayer, run: _Run) -> dict[str, Any] | None:
    try:
        payload = json.loads(layer.payload)
    except (ValueError, UnicodeDecodeError) as err:
        run.fail(
            Stage.FORMAT,
            "payload_not_json",
            f"the signed payload is not JSON: {err}",
            "the layer is not a cosign signature payload",
            _MALFORMED,
        )
        return None
    critical = payload.get("critical") if isinstance(payload, dict) else None
    if not isinstance(critical, dict) or critical.get("type") != SIMPLE_SIGNING_TYPE:
        kind = critical.get("type") if isinstance(critical, dict) else None
        run.fail(
            Stage.FORMAT,
            "wrong_payload_type",
            f"critical.type is {_short(kind)}, expected {SIMPLE_SIGNING_TYPE!r}",
            "the layer is not a cosign container image signature",
            _MALFORMED,
        )
        return None
    image = critical.get("image")
    signed = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(signed, str) or not signed:
        run.fail(
            Stage.FORMAT,
            "payload_missing_digest",
            f"critical.image.docker-manifest-digest is {_short(signed)}, expected a digest",
            "the layer is not a cosign container image signature",
            _MALFORMED,
        )
        return None
    run.ok(Stage.FORMAT, "format_ok", "the layer is a cosign simple-signing payload")
    return dict(payload)


def _parse_envelope(layer: SignedLayer, run: _Run) -> _Envelope | None:
    hint = "the layer is not a cosign attestation (a DSSE envelope)"
    try:
        doc = json.loads(layer.payload)
    except (ValueError, UnicodeDecodeError) as err:
        run.fail(Stage.FORMAT, "envelope_unreadable", f"the DSSE envelope is not JSON: {err}", hint, _MALFORMED)
        return None
    payload_type = doc.get("payloadType") if isinstance(doc, dict) else None
    raw_signatures = doc.get("signatures") if isinstance(doc, dict) else None
    payload = _b64(doc.get("payload")) if isinstance(doc, dict) else None
    signatures = [_b64(s.get("sig")) if isinstance(s, dict) else None for s in raw_signatures or []]
    if not isinstance(payload_type, str) or payload is None or not signatures or None in signatures:
        run.fail(
            Stage.FORMAT,
            "envelope_unreadable",
            "the DSSE envelope needs a payloadType, a base64 payload and at least one base64 signature",
            hint,
            _MALFORMED,
        )
        return None
    envelope = _Envelope(payload_type, payload, [s for s in signatures if s is not None])
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        run.fail(
            Stage.FORMAT,
            "wrong_payload_type",
            f"the envelope's payloadType is {_short(payload_type)}, expected {IN_TOTO_PAYLOAD_TYPE!r}",
            "only in-toto attestations are verified here",
            _MALFORMED,
        )
        return envelope
    try:
        statement = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        run.fail(Stage.FORMAT, "statement_unreadable", f"the in-toto statement is not JSON: {err}", hint, _MALFORMED)
        return envelope
    if not _is_statement(statement):
        found = statement.get("_type") if isinstance(statement, dict) else statement
        run.fail(
            Stage.FORMAT,
            "statement_unreadable",
            f"the payload is not an in-toto statement with subjects and a predicateType (_type {_short(found)})",
            hint,
            _MALFORMED,
        )
        return envelope
    annotated = layer.annotations.get(ANNOTATION_PREDICATE_TYPE)
    if annotated and annotated != statement["predicateType"]:
        # The annotation is unsigned; the statement is what was signed. Routing by a lying annotation misleads.
        run.fail(
            Stage.FORMAT,
            "predicate_type_mismatch",
            f"the layer annotation says predicate type {_short(annotated)} but the signed statement says "
            f"{_short(statement['predicateType'])}",
            "the annotation was altered after signing; re-attest or re-push the attestation unchanged",
            _MALFORMED,
        )
        return envelope
    envelope.statement = statement
    run.ok(Stage.FORMAT, "format_ok", "the layer is a DSSE envelope holding an in-toto statement")
    return envelope


def _is_statement(statement: Any) -> TypeGuard[dict[str, Any]]:
    """Whether ``statement`` (parsed JSON) is an in-toto statement: a known ``_type``, a list of subjects with
    digests, and a ``predicateType``."""
    if not isinstance(statement, dict):
        return False
    subjects = statement.get("subject")
    return (
        statement.get("_type") in IN_TOTO_STATEMENT_TYPES
        and isinstance(subjects, list)
        and all(isinstance(s, dict) and isinstance(s.get("digest"), dict) for s in subjects)
        and isinstance(statement.get("predicateType"), str)
    )


def _signature_annotation(layer: SignedLayer, run: _Run) -> bytes | None:
    text = layer.annotations.get(ANNOTATION_SIGNATURE, "")
    if not text:
        run.fail(
            Stage.FORMAT,
            "signature_missing",
            f"the layer has no {ANNOTATION_SIGNATURE} annotation",
            "the layer is not a cosign signature",
            _MALFORMED,
        )
        return None
    signature = _b64(text)
    if signature is None:
        run.fail(
            Stage.FORMAT,
            "signature_not_base64",
            f"the {ANNOTATION_SIGNATURE} annotation is not base64",
            "the layer is not a cosign signature",
            _MALFORMED,
        )
    return signature


def _rekor_entry(layer: SignedLayer, run: _Run, kinds: frozenset[tuple[str, str]]) -> _Entry | None:
    text = layer.annotations.get(ANNOTATION_BUNDLE)
    if not text:
        return None
    hint = "the Rekor bundle annotation is damaged; re-sign, or fetch the entry from the log"
    try:
        doc = json.loads(text)
        payload = doc["Payload"]
        entry = _Entry(
            set_signature=_b64_strict(doc["SignedEntryTimestamp"]),
            body_b64=payload["body"],
            body=None,
            integrated_time=payload["integratedTime"],
            log_index=payload["logIndex"],
            log_id=payload["logID"],
        )
        if not (
            isinstance(entry.body_b64, str)
            and _is_int(entry.integrated_time, _MAX_TIMESTAMP)
            and _is_int(entry.log_index, _MAX_JSON_INT)
            and isinstance(entry.log_id, str)
            and re.fullmatch(r"[0-9a-f]{64}", entry.log_id)
        ):
            raise ValueError("Payload needs a body string, integer integratedTime and logIndex, and a hex logID")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, binascii.Error) as err:
        run.fail(
            Stage.FORMAT,
            "bundle_unreadable",
            f"the {ANNOTATION_BUNDLE} annotation is not a Rekor bundle: {_short(str(err))}",
            hint,
            _MALFORMED,
        )
        return None
    run.extra["log_index"] = str(entry.log_index)
    run.extra["log_id"] = entry.log_id
    try:
        body = json.loads(base64.b64decode(entry.body_b64, validate=True))
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            raise ValueError("no spec")
        entry.body = body
    except (ValueError, binascii.Error, UnicodeDecodeError) as err:
        run.fail(
            Stage.FORMAT,
            "tlog_body_unreadable",
            f"the logged entry body is not a base64 Rekor entry: {_short(str(err))}",
            hint,
            _MALFORMED,
        )
        return entry
    kind = (str(body.get("kind")), str(body.get("apiVersion")))
    if kind not in kinds:
        run.fail(
            Stage.TLOG,
            "tlog_body_unsupported",
            f"the log entry is a {kind[0][:40]}/{kind[1][:20]} entry; expected one of "
            f"{', '.join(f'{k}/{v}' for k, v in sorted(kinds))}",
            "this kind of log entry is not checked here",
            Outcome.UNSUPPORTED,
        )
        entry.body = None
    return entry


# -- signer: key or certificate ---------------------------------------------------------------------------


def _signer(layer: SignedLayer, run: _Run, public_key: bytes | None) -> _Signer:
    if public_key is not None:
        try:
            key = serialization.load_pem_public_key(public_key)
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:
            run.fail(
                Stage.TRUST_ROOT,
                "public_key_unreadable",
                f"the configured public key is not a PEM public key: {_short(str(err))}",
                "configure the signer's public key in PEM (cosign.pub)",
                Outcome.ERROR,
            )
            return _Signer()
        return _Signer(key=key, fingerprint=f"sha256:{spki_sha256(key).hex()}")

    cert_text = layer.annotations.get(ANNOTATION_CERTIFICATE, "")
    chain_text = layer.annotations.get(ANNOTATION_CHAIN, "")
    presented: list[x509.Certificate] = []
    if chain_text:
        # The chain annotation is never trusted (only the trust root is), but a damaged one means a damaged layer.
        try:
            presented = [_readable(c) for c in x509.load_pem_x509_certificates(chain_text.encode())]
        except (ValueError, UnsupportedAlgorithm) as err:
            run.fail(
                Stage.FORMAT,
                "chain_unreadable",
                f"the {ANNOTATION_CHAIN} annotation is not PEM certificates: {_short(str(err))}",
                "re-push the signature unchanged",
                _MALFORMED,
            )
    if not cert_text:
        run.fail(
            Stage.CHAIN,
            "certificate_missing",
            "the signature carries no certificate, and no public key was given to verify it with",
            "this looks like a key-based signature: configure the signer's public key",
            Outcome.UNTRUSTED,
        )
        return _Signer()
    try:
        cert = _readable(x509.load_pem_x509_certificate(cert_text.encode()))
        key = cert.public_key()
        sans = _sans(cert)
        issuer = _oidc_issuer(cert) or ""
    except (ValueError, UnsupportedAlgorithm) as err:
        run.fail(
            Stage.FORMAT,
            "certificate_unreadable",
            f"the {ANNOTATION_CERTIFICATE} annotation is not a PEM certificate: {_short(str(err))}",
            "re-push the signature unchanged",
            _MALFORMED,
        )
        return _Signer()
    return _Signer(
        key=key,
        cert=cert,
        identity=sans[0] if sans else "",
        issuer=issuer,
        sans=sans,
        presented_chain=presented,
    )


def _readable(cert: x509.Certificate) -> x509.Certificate:
    """Return ``cert`` once every field we read parses; raises ``ValueError`` otherwise.

    ``cryptography`` parses fields lazily, so a damaged certificate loads and fails later, at first use.
    """
    _ = (cert.issuer, cert.subject, cert.not_valid_before_utc, cert.not_valid_after_utc, cert.extensions)
    _ = cert.public_key()
    return cert


def _check_signer(
    run: _Run, signer: _Signer, trust_root: TrustRoot, identity: IdentityPolicy | None, now: datetime | None
) -> None:
    """Keyless only: chain, CA window, certificate profile, SCT and identity policy."""
    if signer.cert is None:
        return
    when = now or datetime.now(UTC)
    when = when if when.tzinfo else when.replace(tzinfo=UTC)  # a naive time is taken as UTC
    _check_certificate(run, signer, trust_root, fallback=(when, "the verification time (no log time)"))
    _check_identity(run, signer, identity)


def _check_certificate(run: _Run, signer: _Signer, trust_root: TrustRoot, *, fallback: tuple[datetime, str]) -> None:
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

    chain = _check_chain(run, cert, trust_root, when, source)
    _check_profile(run, cert)
    if chain is not None:
        issuer: x509.Certificate | None = chain[1] if len(chain) > 1 else chain[0]
    else:
        # The chain failed already; still say whether a CT log we trust saw this certificate, which tells a
        # certificate from another Sigstore instance apart from a forged one. The issuer named by the untrusted
        # chain annotation only serves to recompute what the CT log signed.
        issuer = next((c for c in signer.presented_chain if c.subject == cert.issuer), None)
    if issuer is not None:
        _check_sct(run, cert, issuer, trust_root)


def _check_chain(
    run: _Run, cert: x509.Certificate, trust_root: TrustRoot, when: datetime, source: str
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
        f"the certificate (issuer {_short(cert.issuer.rfc4514_string())}) does not chain to any CA of the trust "
        f"root {trust_root.name!r}: {_short('; '.join(problems), 300)}",
        "it was issued by another Sigstore instance (a private Fulcio, or staging vs production): "
        "verify with that instance's trusted root",
        Outcome.UNTRUSTED,
    )
    return None


def _check_profile(run: _Run, cert: x509.Certificate) -> None:
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


def _check_sct(run: _Run, cert: x509.Certificate, issuer: x509.Certificate, trust_root: TrustRoot) -> None:
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
        return "sct_invalid", f"SCT from {name} cannot be read: {_short(str(err))}"
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


def _check_identity(
    run: _Run, signer: _Signer, policy: IdentityPolicy | None, claims: WorkflowClaims | None = None
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


def _check_issuer_extensions(run: _Run, cert: x509.Certificate) -> None:
    """Fulcio writes the OIDC issuer twice (1.1 raw, 1.8 DER); two different values mean a forged certificate."""
    v2, v1 = _issuer_extension(cert, _OID_ISSUER_V2, True), _issuer_extension(cert, _OID_ISSUER_V1, False)
    if v2 and v1 and v2 != v1:
        run.fail(
            Stage.IDENTITY,
            "issuer_extensions_disagree",
            f"the certificate names two different OIDC issuers: {_short(v2)} (1.3.6.1.4.1.57264.1.8) and "
            f"{_short(v1)} (1.3.6.1.4.1.57264.1.1)",
            "a CA that writes two issuers is misbehaving; do not trust this certificate",
            Outcome.INVALID,
        )


def _check_claims(run: _Run, cert: x509.Certificate, claims: WorkflowClaims) -> None:
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


# -- transparency log -------------------------------------------------------------------------------------


def _check_tlog(run: _Run, entry: _Entry | None, signer: _Signer, expected: _Expected, trust_root: TrustRoot) -> None:
    if entry is None:
        if run.require_tlog:
            run.fail(
                Stage.TLOG,
                "tlog_missing",
                f"the layer has no {ANNOTATION_BUNDLE} annotation: nothing shows it was logged in a transparency log",
                "sign with transparency-log upload enabled (cosign's default), or relax the policy to not "
                "require a log entry",
                Outcome.UNTRUSTED,
            )
        else:
            run.ok(Stage.TLOG, "tlog_not_required", "no transparency-log entry; the policy does not require one")
        return

    run.claimed_time = entry.integrated_time
    log = _trusted_log(run, trust_root, bytes.fromhex(entry.log_id))
    if log is not None:
        logged_at = _check_set(
            run,
            log,
            signature=entry.set_signature,
            body_b64=entry.body_b64,
            integrated_time=entry.integrated_time,
            log_index=entry.log_index,
            hint="the bundle annotation was altered; re-sign, or fetch the entry from the log",
        )
        if logged_at is not None:
            run.ok(
                Stage.TLOG,
                "tlog_ok",
                f"the signed entry timestamp verifies: {log.base_url or entry.log_id} promised to include entry "
                f"{entry.log_index} at {logged_at.isoformat()} (a promise, not an inclusion proof)",
            )
    if entry.body is not None:
        hint = "the bundle was copied from another signature"
        _check_body(run, entry.body, signer, expected, what="layer", hint=hint)


def _trusted_log(run: _Run, trust_root: TrustRoot, log_id: bytes) -> LogKey | None:
    """Return the trust root's key for the log ``log_id``; None (after recording ``tlog_unknown_log``) if unknown."""
    log = trust_root.tlog_key(log_id)
    if log is None:
        known = ", ".join(k.log_id_hex[:16] for k in trust_root.tlog_keys.values())
        run.fail(
            Stage.TLOG,
            "tlog_unknown_log",
            f"the entry was logged by {log_id.hex()}, which is not a log of the trust root "
            f"{trust_root.name!r} (known: {known})",
            "verify with the trusted root of the Sigstore instance that logged it",
            Outcome.UNTRUSTED,
        )
    return log


def _check_set(
    run: _Run, log: LogKey, *, signature: bytes, body_b64: str, integrated_time: int, log_index: int, hint: str
) -> datetime | None:
    """Verify a signed entry timestamp (SET): ``log``'s signature over the entry's RFC 8785 canonical form.

    Returns the integrated time when the SET verifies and the log key was valid then; it also becomes the run's
    verified time (an inclusion promise). Otherwise records ``tlog_set_invalid`` (with ``hint``) or
    ``tlog_key_not_valid_at_time`` and returns None. The caller records what a verified SET means for it.
    """
    canonical = rfc8785.dumps(
        {
            "body": body_b64,
            "integratedTime": integrated_time,
            "logID": log.log_id_hex,
            "logIndex": log_index,
        }
    )
    logged_at = datetime.fromtimestamp(integrated_time, tz=UTC)
    if not log.verify(signature, canonical):
        run.fail(
            Stage.TLOG,
            "tlog_set_invalid",
            f"the signed entry timestamp does not verify with the key of {log.base_url or log.log_id_hex} "
            f"(entry {log_index})",
            hint,
            Outcome.INVALID,
        )
        return None
    if not log.validity.contains(logged_at):
        run.fail(
            Stage.TLOG,
            "tlog_key_not_valid_at_time",
            f"the entry's integrated time {logged_at.isoformat()} is outside the log key's window "
            f"{log.validity.describe()}",
            "the log key was not trusted at that time",
            Outcome.UNTRUSTED,
        )
        return None
    run.tlog = run.tlog or "inclusion_promise"
    run.integrated_time = integrated_time
    return logged_at


def _check_body(run: _Run, body: dict[str, Any], signer: _Signer, expected: _Expected, *, what: str, hint: str) -> None:
    """Record whether the Rekor entry ``body`` describes this ``what`` (a layer, a bundle); ``hint`` says how a
    mismatch came about. A SET or proof for some other entry proves nothing about this signature."""
    problems = _body_problems(body, signer, expected)
    if problems:
        run.fail(
            Stage.TLOG,
            "tlog_body_mismatch",
            f"the log entry is not about this {what}: {'; '.join(problems)}",
            f"{hint}; re-sign",
            Outcome.INVALID,
        )
    else:
        run.ok(Stage.TLOG, "tlog_body_ok", "the log entry records this signature, content and signer")


def _body_problems(body: dict[str, Any], signer: _Signer, expected: _Expected) -> list[str]:
    """Compare a Rekor entry body with the layer: the fields cosign compares, and the payload hash when logged."""
    kind = body.get("kind")
    spec = body["spec"]
    problems: list[str] = []
    if kind in ("hashedrekord", "rekord"):
        _hash_problem(problems, "data hash", _get(spec, "data", "hash"), expected.layer_sha256)
        logged_sig = _b64(_get(spec, "signature", "content"))
        if logged_sig not in expected.signatures:
            problems.append("the logged signature differs from the layer's signature")
        _verifier_problem(problems, _get(spec, "signature", "publicKey", "content"), signer)
    elif kind == "intoto":
        content = _obj(spec.get("content"))
        if expected.layer_sha256:  # unknown for Sigstore bundles: the envelope is re-serialized JSON there
            _hash_problem(problems, "envelope hash", content.get("hash"), expected.layer_sha256)
        if content.get("payloadHash") is not None:
            _hash_problem(problems, "payload hash", content.get("payloadHash"), expected.payload_sha256)
        if body.get("apiVersion") == "0.0.1":
            _verifier_problem(problems, spec.get("publicKey"), signer)
        else:
            envelope = _obj(content.get("envelope"))
            if envelope.get("payloadType") != expected.payload_type:
                problems.append(f"the logged payloadType is {_short(envelope.get('payloadType'))}")
            logged = _list(envelope.get("signatures"))
            if not logged:
                problems.append("the log entry records no signature")
            for item in logged:
                item = _obj(item)
                # intoto/0.0.2 stores each signature base64-encoded twice (the envelope's base64 text, encoded).
                once = _b64(item.get("sig"))
                twice = _b64(once.decode("ascii", "replace")) if once else None
                if once not in expected.signatures and twice not in expected.signatures:
                    problems.append("a logged signature differs from the envelope's signatures")
                _verifier_problem(problems, item.get("publicKey"), signer)
    elif kind == "dsse":
        if expected.layer_sha256:
            _hash_problem(problems, "envelope hash", spec.get("envelopeHash"), expected.layer_sha256)
        _hash_problem(problems, "payload hash", spec.get("payloadHash"), expected.payload_sha256)
        logged = _list(spec.get("signatures"))
        if not logged:
            problems.append("the log entry records no signature")
        for item in logged:
            item = _obj(item)
            if _b64(item.get("signature")) not in expected.signatures:
                problems.append("a logged signature differs from the envelope's signatures")
            _verifier_problem(problems, item.get("verifier"), signer)
    return problems


def _hash_problem(problems: list[str], what: str, logged: Any, expected: str) -> None:
    if not isinstance(logged, dict) or logged.get("algorithm") != "sha256":
        problems.append(f"the logged {what} is not a sha256 hash")
    elif logged.get("value") != expected:
        problems.append(f"the logged {what} is sha256:{_short(logged.get('value'))}, this layer's is sha256:{expected}")


def _verifier_problem(problems: list[str], logged_b64: Any, signer: _Signer) -> None:
    """The logged verifier (base64 of a PEM certificate or key) must be the signer that verified the layer."""
    if signer.key is None:
        return  # no signer to compare with; that failure is reported on its own
    pem = _b64(logged_b64)
    if pem is None:
        problems.append("the log entry records no readable public key or certificate")
        return
    logged_key: PublicKeyTypes
    try:
        if b"CERTIFICATE" in pem:
            logged_cert = x509.load_pem_x509_certificate(pem)
            if signer.cert is not None and logged_cert != signer.cert:
                problems.append("the logged certificate is not the layer's certificate")
                return
            logged_key = logged_cert.public_key()
        else:
            logged_key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        problems.append("the logged public key or certificate cannot be read")
        return
    if spki_sha256(logged_key) != spki_sha256(signer.key):
        problems.append(f"the logged key (sha256:{spki_sha256(logged_key).hex()[:16]}...) is not {signer.describe()}")


# -- helpers --------------------------------------------------------------------------------------------------


def _verify_signature(key: PublicKeyTypes, signature: bytes, data: bytes) -> bool:
    """Verify as cosign does: SHA-256 for ECDSA and RSA (cosign's default for every curve), pure Ed25519."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithms: list[hashes.HashAlgorithm] = [hashes.SHA256()]
            # Some signers hash to the curve's size; accept that too (it is as strong).
            if key.curve.key_size == 384:
                algorithms.append(hashes.SHA384())
            elif key.curve.key_size == 521:
                algorithms.append(hashes.SHA512())
            for algorithm in algorithms:
                try:
                    key.verify(signature, data, ec.ECDSA(algorithm))
                    return True
                except InvalidSignature:
                    continue
            return False
        if isinstance(key, rsa.RSAPublicKey):
            for pad in (padding.PKCS1v15(), padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)):
                try:
                    key.verify(signature, data, pad, hashes.SHA256())
                    return True
                except InvalidSignature:
                    continue
            return False
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return False


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def _sans(cert: x509.Certificate) -> list[str]:
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


def _oidc_issuer(cert: x509.Certificate) -> str | None:
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


def _subject_matches(subject: dict[str, Any], image_digest: Digest) -> bool:
    digests = subject.get("digest")
    return isinstance(digests, dict) and digests.get(image_digest.algorithm) == image_digest.hex


def _describe_subject(subject: dict[str, Any]) -> str:
    digests = _obj(subject.get("digest"))
    shown = ", ".join(f"{alg}:{str(value)[:16]}..." for alg, value in list(digests.items())[:2])
    return f"{_short(subject.get('name', ''), 60)} ({shown or 'no digest'})"


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _b64(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64_strict(value: Any) -> bytes:
    decoded = _b64(value)
    if decoded is None:
        raise ValueError("SignedEntryTimestamp is not base64")
    return decoded


def _is_int(value: Any, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _short(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
