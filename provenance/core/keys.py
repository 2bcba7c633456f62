"""Long-lived public keys as trust anchors (``cosign.pub``): which are acceptable, and how they are named."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from provenance.core.errors import MalformedEvidenceError
from provenance.core.trustroot import spki_sha256

__all__ = ["MAX_KEY_BYTES", "PublicKeyInfo", "read_public_key"]

MAX_KEY_BYTES = 16 * 1024
_CURVES = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}


@dataclass(frozen=True, slots=True)
class PublicKeyInfo:
    """A validated public key: canonical PEM, ``sha256:<hex>`` of its DER SPKI (as in results), algorithm."""

    pem: bytes
    fingerprint: str
    algorithm: str


def read_public_key(data: bytes) -> PublicKeyInfo:
    """Validate a PEM public key as a signing trust anchor: ECDSA P-256/384/521, Ed25519, or RSA >= 2048 bits.

    Raises :class:`MalformedEvidenceError` (code ``public_key_invalid``) for anything else, saying why.
    """
    if len(data) > MAX_KEY_BYTES:
        raise MalformedEvidenceError(
            f"the key is {len(data)} bytes; a PEM public key is far smaller", code="public_key_invalid"
        )
    try:
        key = serialization.load_pem_public_key(data.strip() + b"\n")
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        hint = " (this is a private key: upload the public half, cosign.pub)" if b"PRIVATE KEY" in data else ""
        raise MalformedEvidenceError(f"not a PEM public key{hint}: {err}", code="public_key_invalid") from err
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        algorithm = _CURVES[key.curve.name]
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = "ed25519"
    elif isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        algorithm = f"rsa-{key.key_size}"
    else:
        size = getattr(key, "key_size", "?")
        raise MalformedEvidenceError(
            f"unsupported key type {type(key).__name__} ({size} bits): use ECDSA P-256/P-384, Ed25519 or RSA >= 2048",
            code="public_key_invalid",
        )
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKeyInfo(pem, f"sha256:{spki_sha256(key).hex()}", algorithm)
