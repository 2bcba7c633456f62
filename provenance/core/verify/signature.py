"""Signature checks over bytes or a prehashed digest, for every key type cosign and Sigstore sign with.

ECDSA (SHA-256, cosign's default for every curve, or the hash matching a P-384/P-521 curve), RSA PKCS#1 v1.5
and PSS with SHA-256, and pure Ed25519. A key type or signature that cannot be checked is "does not verify",
never an exception.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed


def verify_signature(key: PublicKeyTypes, signature: bytes, data: bytes) -> bool:
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


def verify_message(key: PublicKeyTypes, signature: bytes, data: bytes | None, sha256: bytes | None) -> bool:
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
