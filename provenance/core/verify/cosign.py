"""Verification of cosign *legacy* layers: the ``sha256-<hex>.sig`` and ``sha256-<hex>.att`` tag formats.

The ``sigstore`` package cannot verify these: their transparency-log evidence is a Rekor *bundle annotation*
holding only a signed entry timestamp (SET, a promise of inclusion, which this format allows), never an
inclusion proof, and old attestations are logged as ``intoto`` entries. This module checks them completely, as
``cosign verify`` and ``cosign verify-attestation`` do, and explains every failure:

* format: the payload and annotations parse, within size bounds;
* signer: keyless, the certificate (:mod:`provenance.core.verify.certificate`); key-based, the given key;
* signature: over the simple-signing payload (``.sig``) or the DSSE pre-authentication encoding (``.att``);
* transparency log: the SET verifies with the trusted Rekor key named by the entry's log id and the logged
  entry describes *this* payload, signature and signer (a SET for some other entry proves nothing);
* signed time: the SET's integrated time and cosign's RFC 3161 timestamp annotation, each verified and each
  inside the certificate's validity;
* subject: the signed image digest (``.sig``) or an in-toto subject digest (``.att``) is the image's digest.

Every check becomes a :class:`CheckResult` with a stable code; nothing here raises on bad evidence.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from provenance.core.errors import MalformedEvidenceError
from provenance.core.jsonbounds import loads as json_loads
from provenance.core.trustroot import TrustRoot, spki_sha256
from provenance.core.types import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    ANNOTATION_PREDICATE_TYPE,
    ANNOTATION_RFC3161,
    ANNOTATION_SIGNATURE,
    Digest,
    IdentityPolicy,
    Leniency,
    LogEvidence,
    MediaType,
    Outcome,
    SignedLayer,
    Stage,
    VerificationResult,
)
from provenance.core.verify.certificate import Signer, check_certificate, check_identity, oidc_issuer, readable, sans_of
from provenance.core.verify.checks import MALFORMED, Requirement, Run
from provenance.core.verify.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    describe_subject,
    is_statement,
    pae,
    subject_matches,
)
from provenance.core.verify.encoding import (
    MAX_JSON_INT,
    MAX_TIMESTAMP,
    b64decode,
    b64decode_strict,
    get_path,
    is_int,
    sha256_hex,
    short,
)
from provenance.core.verify.signature import verify_signature
from provenance.core.verify.timestamps import check_timestamps
from provenance.core.verify.tlog import Expected, check_body, check_set, trusted_log

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


# A simple-signing payload is ~300 bytes; attestations carry whole SBOMs, which reach tens of MiB.
MAX_SIGNATURE_PAYLOAD_BYTES = 256 * 1024


MAX_ATTESTATION_PAYLOAD_BYTES = 32 * 1024 * 1024


# A certificate chain or a Rekor bundle is a few KiB.
MAX_ANNOTATION_BYTES = 128 * 1024


_SIG_BODY_KINDS = frozenset({("hashedrekord", "0.0.1"), ("rekord", "0.0.1")})


_ATT_BODY_KINDS = frozenset({("intoto", "0.0.2"), ("intoto", "0.0.1"), ("dsse", "0.0.1")})


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
    run = Run(require_tlog=require_tlog)
    if not _admit(layer, run, media_type=MediaType.COSIGN_SIMPLESIGNING, limit=MAX_SIGNATURE_PAYLOAD_BYTES):
        return run.result(Signer())
    payload = _parse_simple_signing(layer, run)
    signature = _signature_annotation(layer, run)
    signer = _signer(layer, run, public_key)
    entry = _rekor_entry(layer, run, _SIG_BODY_KINDS)

    if signature is not None and signer.key is not None:
        if verify_signature(signer.key, signature, layer.payload):
            run.ok(Stage.SIGNATURE, "signature_ok", "the signature over the payload verifies with the signer's key")
        else:
            run.fail(
                Stage.SIGNATURE,
                "signature_invalid",
                f"the signature does not verify over the payload (sha256:{sha256_hex(layer.payload)}) "
                f"with {signer.describe()}",
                "the payload or the signature was altered, or it was signed with another key; re-sign the image",
                Outcome.INVALID,
            )

    expected = Expected(layer_sha256=sha256_hex(layer.payload), signatures=[signature] if signature else [])
    _check_tlog(run, entry, signer, expected, trust_root)
    if signature is not None:
        _check_timestamp_annotation(run, layer, signed=signature, trust_root=trust_root)
    _check_signer(run, signer, trust_root, identity, now)

    if payload is not None:
        signed = payload["critical"]["image"]["docker-manifest-digest"]
        run.extra["docker_reference"] = str(get_path(payload, "critical", "identity", "docker-reference") or "")[:500]
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
    run = Run(require_tlog=require_tlog)
    if not _admit(layer, run, media_type=MediaType.DSSE_ENVELOPE, limit=MAX_ATTESTATION_PAYLOAD_BYTES):
        return run.result(Signer()), None
    envelope = _parse_envelope(layer, run)
    signer = _signer(layer, run, public_key)
    entry = _rekor_entry(layer, run, _ATT_BODY_KINDS)

    signatures = envelope.signatures if envelope else []
    if envelope is not None and signer.key is not None:
        encoded = pae(envelope.payload_type, envelope.payload)
        if any(verify_signature(signer.key, sig, encoded) for sig in envelope.signatures):
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

    expected = Expected(
        layer_sha256=sha256_hex(layer.payload),
        signatures=signatures,
        payload_sha256=sha256_hex(envelope.payload) if envelope else "",
        payload_type=envelope.payload_type if envelope else "",
    )
    _check_tlog(run, entry, signer, expected, trust_root)
    _check_timestamp_annotation(run, layer, signed=layer.payload, trust_root=trust_root)
    _check_signer(run, signer, trust_root, identity, now)

    statement = envelope.statement if envelope else None
    if statement is not None:
        run.extra["predicate_type"] = str(statement.get("predicateType", ""))[:500]
        subjects = statement["subject"]
        if any(subject_matches(subject, image_digest) for subject in subjects):
            run.ok(Stage.SUBJECT, "subject_ok", f"the statement names {image_digest} as a subject")
        else:
            found = ", ".join(describe_subject(s) for s in subjects[:5]) or "no subject"
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
        doc = json_loads(data)
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


@dataclass
class _Entry:
    """The bundle annotation: a Rekor entry and its signed entry timestamp."""

    set_signature: bytes
    body_b64: str
    body: dict[str, Any] | None
    integrated_time: int
    log_index: int
    log_id: str


def _admit(layer: SignedLayer, run: Run, *, media_type: str, limit: int) -> bool:
    """Check what must hold before anything is parsed: bounded sizes and text annotations.

    Returns False when the layer is not worth reading further (the failure is recorded).
    """
    if layer.media_type != media_type:
        # Not fatal: a wrong media type is a damaged layer, but the rest can still be explained.
        run.fail(
            Stage.FORMAT,
            "wrong_media_type",
            f"the layer's media type is {short(layer.media_type)}, expected {media_type!r}",
            "only cosign simple-signing layers (.sig) and DSSE envelopes (.att) are verified here",
            MALFORMED,
        )
    if not isinstance(layer.payload, bytes) or len(layer.payload) > limit:
        size = f"{len(layer.payload)} bytes" if isinstance(layer.payload, bytes) else "not bytes"
        run.fail(
            Stage.FORMAT,
            "payload_too_large",
            f"the layer is {size}; at most {limit} bytes are accepted",
            "this is not a cosign layer of the expected kind",
            MALFORMED,
        )
        return False
    for name, value in layer.annotations.items():
        if not isinstance(value, str):
            run.fail(
                Stage.FORMAT,
                "annotation_not_text",
                f"the annotation {short(name)} is {type(value).__name__}, not text",
                "this is not a cosign layer of the expected kind",
                MALFORMED,
            )
            return False
        if len(value) > MAX_ANNOTATION_BYTES:
            run.fail(
                Stage.FORMAT,
                "annotation_too_large",
                f"the annotation {short(name)} is {len(value)} characters; at most {MAX_ANNOTATION_BYTES} allowed",
                "this is not a cosign layer of the expected kind",
                MALFORMED,
            )
            return False
    return True


def _parse_simple_signing(layer: SignedLayer, run: Run) -> dict[str, Any] | None:
    try:
        payload = json_loads(layer.payload)
    except (ValueError, UnicodeDecodeError) as err:
        run.fail(
            Stage.FORMAT,
            "payload_not_json",
            f"the signed payload is not JSON: {err}",
            "the layer is not a cosign signature payload",
            MALFORMED,
        )
        return None
    critical = payload.get("critical") if isinstance(payload, dict) else None
    if not isinstance(critical, dict) or critical.get("type") != SIMPLE_SIGNING_TYPE:
        kind = critical.get("type") if isinstance(critical, dict) else None
        run.fail(
            Stage.FORMAT,
            "wrong_payload_type",
            f"critical.type is {short(kind)}, expected {SIMPLE_SIGNING_TYPE!r}",
            "the layer is not a cosign container image signature",
            MALFORMED,
        )
        return None
    image = critical.get("image")
    signed = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(signed, str) or not signed:
        run.fail(
            Stage.FORMAT,
            "payload_missing_digest",
            f"critical.image.docker-manifest-digest is {short(signed)}, expected a digest",
            "the layer is not a cosign container image signature",
            MALFORMED,
        )
        return None
    run.ok(Stage.FORMAT, "format_ok", "the layer is a cosign simple-signing payload")
    return dict(payload)


def _parse_envelope(layer: SignedLayer, run: Run) -> Envelope | None:
    hint = "the layer is not a cosign attestation (a DSSE envelope)"
    try:
        doc = json_loads(layer.payload)
    except (ValueError, UnicodeDecodeError) as err:
        run.fail(Stage.FORMAT, "envelope_unreadable", f"the DSSE envelope is not JSON: {err}", hint, MALFORMED)
        return None
    payload_type = doc.get("payloadType") if isinstance(doc, dict) else None
    raw_signatures = doc.get("signatures") if isinstance(doc, dict) else None
    payload = b64decode(doc.get("payload")) if isinstance(doc, dict) else None
    if not isinstance(raw_signatures, list):
        raw_signatures = []  # absent, or not a list: no signatures (reported below)
    signatures = [b64decode(s.get("sig")) if isinstance(s, dict) else None for s in raw_signatures]
    if not isinstance(payload_type, str) or payload is None or not signatures or None in signatures:
        run.fail(
            Stage.FORMAT,
            "envelope_unreadable",
            "the DSSE envelope needs a payloadType, a base64 payload and at least one base64 signature",
            hint,
            MALFORMED,
        )
        return None
    envelope = Envelope(payload_type, payload, [s for s in signatures if s is not None])
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        run.fail(
            Stage.FORMAT,
            "wrong_payload_type",
            f"the envelope's payloadType is {short(payload_type)}, expected {IN_TOTO_PAYLOAD_TYPE!r}",
            "only in-toto attestations are verified here",
            MALFORMED,
        )
        return envelope
    try:
        statement = json_loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        run.fail(Stage.FORMAT, "statement_unreadable", f"the in-toto statement is not JSON: {err}", hint, MALFORMED)
        return envelope
    if not is_statement(statement):
        found = statement.get("_type") if isinstance(statement, dict) else statement
        run.fail(
            Stage.FORMAT,
            "statement_unreadable",
            f"the payload is not an in-toto statement with subjects and a predicateType (_type {short(found)})",
            hint,
            MALFORMED,
        )
        return envelope
    annotated = layer.annotations.get(ANNOTATION_PREDICATE_TYPE)
    if annotated and annotated != statement["predicateType"]:
        # The annotation is unsigned; the statement is what was signed. Routing by a lying annotation misleads.
        run.fail(
            Stage.FORMAT,
            "predicate_type_mismatch",
            f"the layer annotation says predicate type {short(annotated)} but the signed statement says "
            f"{short(statement['predicateType'])}",
            "the annotation was altered after signing; re-attest or re-push the attestation unchanged",
            MALFORMED,
        )
        return envelope
    envelope.statement = statement
    run.ok(Stage.FORMAT, "format_ok", "the layer is a DSSE envelope holding an in-toto statement")
    return envelope


def _signature_annotation(layer: SignedLayer, run: Run) -> bytes | None:
    text = layer.annotations.get(ANNOTATION_SIGNATURE, "")
    if not text:
        run.fail(
            Stage.FORMAT,
            "signature_missing",
            f"the layer has no {ANNOTATION_SIGNATURE} annotation",
            "the layer is not a cosign signature",
            MALFORMED,
        )
        return None
    signature = b64decode(text)
    if signature is None:
        run.fail(
            Stage.FORMAT,
            "signature_not_base64",
            f"the {ANNOTATION_SIGNATURE} annotation is not base64",
            "the layer is not a cosign signature",
            MALFORMED,
        )
    return signature


def _rekor_entry(layer: SignedLayer, run: Run, kinds: frozenset[tuple[str, str]]) -> _Entry | None:
    text = layer.annotations.get(ANNOTATION_BUNDLE)
    if not text:
        return None
    hint = "the Rekor bundle annotation is damaged; re-sign, or fetch the entry from the log"
    try:
        doc = json_loads(text)
        payload = doc["Payload"]
        entry = _Entry(
            set_signature=b64decode_strict(doc["SignedEntryTimestamp"]),
            body_b64=payload["body"],
            body=None,
            integrated_time=payload["integratedTime"],
            log_index=payload["logIndex"],
            log_id=payload["logID"],
        )
        if not (
            isinstance(entry.body_b64, str)
            and is_int(entry.integrated_time, MAX_TIMESTAMP)
            and is_int(entry.log_index, MAX_JSON_INT)
            and isinstance(entry.log_id, str)
            and re.fullmatch(r"[0-9a-f]{64}", entry.log_id)
        ):
            raise ValueError("Payload needs a body string, integer integratedTime and logIndex, and a hex logID")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, binascii.Error) as err:
        run.fail(
            Stage.FORMAT,
            "bundle_unreadable",
            f"the {ANNOTATION_BUNDLE} annotation is not a Rekor bundle: {short(str(err))}",
            hint,
            MALFORMED,
        )
        return None
    run.extra["log_index"] = str(entry.log_index)
    run.extra["log_id"] = entry.log_id
    try:
        body = json_loads(base64.b64decode(entry.body_b64, validate=True))
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            raise ValueError("no spec")
        entry.body = body
    except (ValueError, binascii.Error, UnicodeDecodeError) as err:
        run.fail(
            Stage.FORMAT,
            "tlog_body_unreadable",
            f"the logged entry body is not a base64 Rekor entry: {short(str(err))}",
            hint,
            MALFORMED,
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


def _signer(layer: SignedLayer, run: Run, public_key: bytes | None) -> Signer:
    if public_key is not None:
        try:
            key = serialization.load_pem_public_key(public_key)
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:
            run.fail(
                Stage.TRUST_ROOT,
                "public_key_unreadable",
                f"the configured public key is not a PEM public key: {short(str(err))}",
                "configure the signer's public key in PEM (cosign.pub)",
                Outcome.ERROR,
            )
            return Signer()
        fingerprint = f"sha256:{spki_sha256(key).hex()}"
        run.ok(Stage.TRUST_ROOT, "key_trusted", f"the signer is the configured public key {fingerprint}")
        return Signer(key=key, fingerprint=fingerprint)

    cert_text = layer.annotations.get(ANNOTATION_CERTIFICATE, "")
    chain_text = layer.annotations.get(ANNOTATION_CHAIN, "")
    presented: list[x509.Certificate] = []
    if chain_text:
        # The chain annotation is never trusted (only the trust root is), but a damaged one means a damaged layer.
        try:
            presented = [readable(c) for c in x509.load_pem_x509_certificates(chain_text.encode())]
        except (ValueError, UnsupportedAlgorithm) as err:
            run.fail(
                Stage.FORMAT,
                "chain_unreadable",
                f"the {ANNOTATION_CHAIN} annotation is not PEM certificates: {short(str(err))}",
                "re-push the signature unchanged",
                MALFORMED,
            )
    if not cert_text:
        run.fail(
            Stage.CHAIN,
            "certificate_missing",
            "the signature carries no certificate, and no public key was given to verify it with",
            "this looks like a key-based signature: configure the signer's public key",
            Outcome.UNTRUSTED,
        )
        return Signer()
    try:
        cert = readable(x509.load_pem_x509_certificate(cert_text.encode()))
        key = cert.public_key()
        sans = sans_of(cert)
        issuer = oidc_issuer(cert) or ""
    except (ValueError, UnsupportedAlgorithm) as err:
        run.fail(
            Stage.FORMAT,
            "certificate_unreadable",
            f"the {ANNOTATION_CERTIFICATE} annotation is not a PEM certificate: {short(str(err))}",
            "re-push the signature unchanged",
            MALFORMED,
        )
        return Signer()
    return Signer(
        key=key,
        cert=cert,
        identity=sans[0] if sans else "",
        issuer=issuer,
        sans=sans,
        presented_chain=presented,
    )


def _check_signer(
    run: Run, signer: Signer, trust_root: TrustRoot, identity: IdentityPolicy | None, now: datetime | None
) -> None:
    """Keyless only: chain, CA window, certificate profile, SCT and identity policy."""
    if signer.cert is None:
        return
    when = now or datetime.now(UTC)
    when = when if when.tzinfo else when.replace(tzinfo=UTC)  # a naive time is taken as UTC
    check_certificate(run, signer, trust_root, fallback=(when, "the verification time (no log time)"))
    check_identity(run, signer, identity)


def _check_timestamp_annotation(run: Run, layer: SignedLayer, *, signed: bytes, trust_root: TrustRoot) -> None:
    """cosign's RFC 3161 timestamp annotation (``{"SignedRFC3161Timestamp": base64 DER response}``), over the raw
    signature of a ``.sig`` layer or the envelope of an ``.att`` layer, as cosign timestamps them. Verified like a
    bundle's timestamps: each verified time must lie in the certificate's validity."""
    text = layer.annotations.get(ANNOTATION_RFC3161)
    if not text:
        return
    try:
        doc = json_loads(text)
        der = b64decode_strict(doc["SignedRFC3161Timestamp"]) if isinstance(doc, dict) else None
        if not der:
            raise ValueError("SignedRFC3161Timestamp is empty")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError, binascii.Error) as err:
        run.fail(
            Stage.FORMAT,
            "timestamp_malformed",
            f"the {ANNOTATION_RFC3161} annotation is not a cosign RFC 3161 timestamp: {short(str(err))}",
            "the timestamp annotation is damaged; re-sign",
            MALFORMED,
        )
        return
    check_timestamps(run, signature=signed, timestamps=[der], trust_root=trust_root)


def _check_tlog(run: Run, entry: _Entry | None, signer: Signer, expected: Expected, trust_root: TrustRoot) -> None:
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
            run.tlog = LogEvidence.NOT_LOGGED
            run.ok(Stage.TLOG, "tlog_not_required", "no transparency-log entry; the log was not required "
                                                    "(insecure: --insecure-ignore-tlog)")
            run.lenient(Leniency.NOT_LOGGED)
        return

    run.require(Requirement.LOG_BODY)
    run.claimed_time = entry.integrated_time
    log = trusted_log(run, trust_root, bytes.fromhex(entry.log_id))
    if log is not None:
        logged_at = check_set(
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
        check_body(run, entry.body, signer, expected, what="layer", hint=hint)
