"""Transparency-log evidence: which trusted log an entry names, its signed entry timestamp (SET), whether its body
describes this signature, RFC 6962 inclusion proofs up to a checkpoint signed by the log (signed note), and
consistency proofs between two checkpoints."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from provenance.core.trustroot import LogKey, TrustRoot, spki_sha256
from provenance.core.types import LogEvidence, Outcome, Stage
from provenance.core.verify.certificate import Signer
from provenance.core.verify.checks import Run
from provenance.core.verify.encoding import as_dict, as_list, b64decode, get_path, short


@dataclass
class Expected:
    """What the transparency-log entry must describe for it to be about this layer."""

    layer_sha256: str
    signatures: list[bytes]
    payload_sha256: str = ""
    payload_type: str = ""
    pae_sha256: str = ""  # a DSSE envelope's pre-authentication encoding, which Rekor v2 hashedrekord logs


def trusted_log(run: Run, trust_root: TrustRoot, log_id: bytes) -> LogKey | None:
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


def check_set(
    run: Run, log: LogKey, *, signature: bytes, body_b64: str, integrated_time: int, log_index: int, hint: str
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
    run.tlog = run.tlog or LogEvidence.INCLUSION_PROMISE
    run.integrated_time = integrated_time
    run.add_signed_time(logged_at, "the log's signed integrated time")
    return logged_at


def check_body(run: Run, body: dict[str, Any], signer: Signer, expected: Expected, *, what: str, hint: str) -> None:
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


def _body_problems(body: dict[str, Any], signer: Signer, expected: Expected) -> list[str]:
    """Compare a Rekor entry body with the layer: the fields cosign compares, and the payload hash when logged."""
    kind = body.get("kind")
    spec = body["spec"]
    problems: list[str] = []
    if body.get("apiVersion") == "0.0.2" and kind in ("hashedrekord", "dsse"):
        _v2_body_problems(problems, kind, spec, signer, expected)
    elif kind in ("hashedrekord", "rekord"):
        _hash_problem(problems, "data hash", get_path(spec, "data", "hash"), expected.layer_sha256)
        logged_sig = b64decode(get_path(spec, "signature", "content"))
        if logged_sig not in expected.signatures:
            problems.append("the logged signature differs from the layer's signature")
        _verifier_problem(problems, get_path(spec, "signature", "publicKey", "content"), signer)
    elif kind == "intoto":
        content = as_dict(spec.get("content"))
        if expected.layer_sha256:  # unknown for Sigstore bundles: the envelope is re-serialized JSON there
            _hash_problem(problems, "envelope hash", content.get("hash"), expected.layer_sha256)
        if content.get("payloadHash") is not None:
            _hash_problem(problems, "payload hash", content.get("payloadHash"), expected.payload_sha256)
        if body.get("apiVersion") == "0.0.1":
            _verifier_problem(problems, spec.get("publicKey"), signer)
        else:
            envelope = as_dict(content.get("envelope"))
            if envelope.get("payloadType") != expected.payload_type:
                problems.append(f"the logged payloadType is {short(envelope.get('payloadType'))}")
            logged = as_list(envelope.get("signatures"))
            if not logged:
                problems.append("the log entry records no signature")
            for item in logged:
                item = as_dict(item)
                # intoto/0.0.2 stores each signature base64-encoded twice (the envelope's base64 text, encoded).
                once = b64decode(item.get("sig"))
                twice = b64decode(once.decode("ascii", "replace")) if once else None
                if once not in expected.signatures and twice not in expected.signatures:
                    problems.append("a logged signature differs from the envelope's signatures")
                _verifier_problem(problems, item.get("publicKey"), signer)
    elif kind == "dsse":
        if expected.layer_sha256:
            _hash_problem(problems, "envelope hash", spec.get("envelopeHash"), expected.layer_sha256)
        _hash_problem(problems, "payload hash", spec.get("payloadHash"), expected.payload_sha256)
        logged = as_list(spec.get("signatures"))
        if not logged:
            problems.append("the log entry records no signature")
        for item in logged:
            item = as_dict(item)
            if b64decode(item.get("signature")) not in expected.signatures:
                problems.append("a logged signature differs from the envelope's signatures")
            _verifier_problem(problems, item.get("verifier"), signer)
    return problems


def _v2_body_problems(problems: list[str], kind: str, spec: dict[str, Any], signer: Signer,
                      expected: Expected) -> None:
    """Rekor v2 entries (protobuf JSON, rekor-tiles): ``hashedrekord`` 0.0.2 over the artifact's digest, or over a
    DSSE envelope's pre-authentication encoding (with its one signature), and ``dsse`` 0.0.2 over the payload
    hash with every envelope signature. The verifier is the DER certificate or public key itself."""
    if kind == "hashedrekord":
        record = as_dict(spec.get("hashedRekordV002"))
        digest = expected.pae_sha256 or expected.layer_sha256
        what = "pre-authentication encoding hash" if expected.pae_sha256 else "data hash"
        _v2_hash_problem(problems, what, record.get("data"), digest)
        if expected.pae_sha256 and len(expected.signatures) != 1:
            problems.append("a DSSE envelope logged as a hashedrekord must carry exactly one signature")
        logged = [as_dict(record.get("signature"))]
    else:
        record = as_dict(spec.get("dsseV002"))
        _v2_hash_problem(problems, "payload hash", record.get("payloadHash"), expected.payload_sha256)
        logged = [as_dict(item) for item in as_list(record.get("signatures"))]
        if len(logged) != len(expected.signatures):
            problems.append(f"the log entry records {len(logged)} signatures, the envelope has "
                            f"{len(expected.signatures)}")
    if not logged:
        problems.append("the log entry records no signature")
    for item in logged:
        if b64decode(item.get("content")) not in expected.signatures:
            problems.append("a logged signature differs from the signature here")
        _v2_verifier_problem(problems, as_dict(item.get("verifier")), signer)


def _v2_hash_problem(problems: list[str], what: str, logged: Any, expected: str) -> None:
    logged = as_dict(logged)
    digest = b64decode(logged.get("digest"))
    if logged.get("algorithm") != "SHA2_256" or digest is None:
        problems.append(f"the logged {what} is not a SHA2_256 digest")
    elif digest.hex() != expected:
        problems.append(f"the logged {what} is sha256:{digest.hex()[:16]}..., this one's is sha256:{expected[:16]}...")


def _v2_verifier_problem(problems: list[str], verifier: dict[str, Any], signer: Signer) -> None:
    if signer.key is None:
        return
    certificate = b64decode(get_path(verifier, "x509Certificate", "rawBytes"))
    key = b64decode(get_path(verifier, "publicKey", "rawBytes"))
    logged_key: PublicKeyTypes
    try:
        if certificate is not None:
            logged_cert = x509.load_der_x509_certificate(certificate)
            if signer.cert is not None and logged_cert != signer.cert:
                problems.append("the logged certificate is not the bundle's certificate")
                return
            logged_key = logged_cert.public_key()
        elif key is not None:
            loaded = serialization.load_der_public_key(key)
            if not isinstance(loaded, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
                problems.append("the logged public key is not a signing key")
                return
            logged_key = loaded
        else:
            problems.append("the log entry records no readable public key or certificate")
            return
    except (ValueError, UnsupportedAlgorithm):
        problems.append("the logged public key or certificate cannot be read")
        return
    if spki_sha256(logged_key) != spki_sha256(signer.key):
        problems.append(f"the logged key (sha256:{spki_sha256(logged_key).hex()[:16]}...) is not {signer.describe()}")


def _hash_problem(problems: list[str], what: str, logged: Any, expected: str) -> None:
    if not isinstance(logged, dict) or logged.get("algorithm") != "sha256":
        problems.append(f"the logged {what} is not a sha256 hash")
    elif logged.get("value") != expected:
        problems.append(f"the logged {what} is sha256:{short(logged.get('value'))}, this layer's is sha256:{expected}")


def _verifier_problem(problems: list[str], logged_b64: Any, signer: Signer) -> None:
    """The logged verifier (base64 of a PEM certificate or key) must be the signer that verified the layer."""
    if signer.key is None:
        return  # no signer to compare with; that failure is reported on its own
    pem = b64decode(logged_b64)
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


MAX_PROOF_HASHES = 64


@dataclass
class Proof:
    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: list[bytes]
    checkpoint: str  # empty when absent


@dataclass
class TlogEntry:
    log_index: int
    log_id: bytes
    kind: str
    version: str
    integrated_time: int | None
    set_signature: bytes | None
    proof: Proof | None
    body_raw: bytes
    body: dict[str, Any] | None


def inclusion_problem(entry: TlogEntry, proof: Proof, trust_root: TrustRoot) -> tuple[str, str] | None:
    """Check an RFC 6962 inclusion proof and its signed checkpoint; return (code, message) or None when ok."""
    if proof.log_index != entry.log_index and proof.log_index >= proof.tree_size:
        return "tlog_inclusion_proof_invalid", f"the proof's index {proof.log_index} is outside its tree size"
    leaf = hashlib.sha256(b"\x00" + entry.body_raw).digest()
    root = root_from_proof(proof.log_index, proof.tree_size, leaf, proof.hashes)
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
    log = trust_root.tlog_key(entry.log_id)
    assert log is not None
    signed = signed_checkpoint(proof.checkpoint, log)
    if isinstance(signed, str):
        return "tlog_checkpoint_invalid", signed
    size, root_b64 = signed
    if size != proof.tree_size or root_b64 != proof.root_hash:
        return "tlog_checkpoint_invalid", (
            f"the checkpoint is for a tree of {size} with root {root_b64.hex()[:16]}..., the proof for a tree of "
            f"{proof.tree_size} with root {proof.root_hash.hex()[:16]}..."
        )
    return None


def root_from_proof(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
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


def signed_checkpoint(text: str, log: LogKey) -> tuple[int, bytes] | str:
    """Check that ``text`` is a signed note carrying a valid signature by ``log`` (key hint: its log id's first
    4 bytes). Returns ``(tree size, root hash)``, or a message saying what is wrong."""
    note = parse_checkpoint(text)
    if note is None:
        return "the checkpoint is not a signed note (origin, size, root, signature)"
    body, size, root, signatures = note
    mine = [sig for hint, sig in signatures if hint == log.log_id[:4]]
    if not mine:
        return (
            f"the checkpoint carries no signature by the log {log.log_id.hex()[:16]}... (key hints found: "
            f"{', '.join(h.hex() for h, _ in signatures) or 'none'})"
        )
    if not any(log.verify(sig, body) for sig in mine):
        return "the checkpoint's signature does not verify with the log's key"
    return size, root


def is_consistent(old_size: int, old_root: bytes, new_size: int, new_root: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2: whether ``proof`` shows the tree of ``new_size`` with ``new_root`` extends the
    tree of ``old_size`` with ``old_root`` (same first ``old_size`` leaves). Never raises on bad input."""
    if old_size < 0 or new_size < old_size or any(len(h) != 32 for h in proof) or len(proof) > MAX_PROOF_HASHES:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof  # the empty tree is a prefix of every tree
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a complete subtree: the old root is the first node of the path
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = hashlib.sha256(b"\x01" + node + fr).digest()
            sr = hashlib.sha256(b"\x01" + node + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hashlib.sha256(b"\x01" + sr + node).digest()
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


_SIGNATURE_LINE = re.compile(r"\u2014 (\S+) (\S+)\n")


def parse_checkpoint(text: str) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]] | None:
    """Parse a signed note: ``(signed text, tree size, root hash, [(key hint, signature)])``."""
    if len(text) > 64 * 1024 or text.count("\n\n") != 1:
        return None
    header, signature_block = text.split("\n\n")
    lines = header.split("\n")
    if len(lines) < 3 or not lines[0] or not lines[1].isdigit():
        return None
    root = b64decode(lines[2])
    if root is None:
        return None
    signatures = []
    for _, blob in _SIGNATURE_LINE.findall(signature_block):
        raw = b64decode(blob)
        if raw is not None and len(raw) > 4:
            signatures.append((raw[:4], raw[4:]))
    return (header + "\n").encode(), int(lines[1]), root, signatures
