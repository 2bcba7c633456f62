"""SLSA Verification Summary Attestations (https://slsa.dev/verification_summary/v1) in in-toto v1 statements,
signed as DSSE envelopes with the dashboard's own signing key; and that key, kept encrypted at rest.

The envelope is what ``cosign attest`` writes (payload type ``application/vnd.in-toto+json``, one ECDSA P-256
SHA-256 signature over the DSSE pre-authentication encoding), so ``cosign verify-attestation --key`` and
``cosign verify-blob-attestation --key`` check it as they check cosign's own.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provenance.core.credentials import CredentialBox
from provenance.core.errors import MalformedEvidenceError, ProvenanceError, VerificationError
from provenance.core.trustroot import spki_sha256
from provenance.core.verify import IN_TOTO_PAYLOAD_TYPE, as_list, b64decode, is_statement, pae

__all__ = [
    "VSA_PREDICATE_TYPE",
    "InputAttestation",
    "SigningKey",
    "SigningKeyError",
    "SigningKeyring",
    "sign_envelope",
    "verify_envelope",
    "vsa_statement",
]

VSA_PREDICATE_TYPE = "https://slsa.dev/verification_summary/v1"
IN_TOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"
MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
_KEY_FILE = re.compile(r"^vsa-signing-(\d{1,6})\.key$")


class SigningKeyError(ProvenanceError):
    """The signing key cannot be created, read or decrypted."""

    code = "signing_key_unavailable"


@dataclass(frozen=True, slots=True)
class InputAttestation:
    """An attestation the verification read: where it came from and the digest of its bytes."""

    uri: str
    digest: dict[str, str]  # algorithm -> hex


def vsa_statement(
    *,
    subject_name: str,
    subject_digest: str,
    verifier_id: str,
    time_verified: dt.datetime,
    resource_uri: str,
    policy_uri: str,
    policy_digest: dict[str, str],
    input_attestations: Sequence[InputAttestation],
    passed: bool,
    verified_levels: Sequence[str],
    verifier_version: dict[str, str] | None = None,
    dependency_levels: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Return the in-toto v1 statement of a SLSA VSA v1 for one artifact and one policy.

    ``subject_digest`` is ``algorithm:hex``; ``verified_levels`` are SLSA track levels (``SLSA_BUILD_LEVEL_2``)
    or organisation-specific names; on failure the VSA says ``FAILED`` and lists ``SLSA_BUILD_LEVEL_0`` when no
    level was given. Raises :class:`MalformedEvidenceError` (``vsa_invalid``) for a digest without an algorithm.
    """
    algorithm, _, hex_value = subject_digest.partition(":")
    if not algorithm or not hex_value:
        raise MalformedEvidenceError(f"subject digest {subject_digest!r} is not algorithm:hex", code="vsa_invalid")
    levels = list(verified_levels) or (["SLSA_BUILD_LEVEL_0"] if not passed else [])
    verifier: dict[str, Any] = {"id": verifier_id}
    if verifier_version:
        verifier["version"] = dict(verifier_version)
    predicate: dict[str, Any] = {
        "verifier": verifier,
        "timeVerified": time_verified.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resourceUri": resource_uri,
        "policy": {"uri": policy_uri, "digest": dict(policy_digest)},
        "inputAttestations": [{"uri": a.uri, "digest": dict(a.digest)} for a in input_attestations],
        "verificationResult": "PASSED" if passed else "FAILED",
        "verifiedLevels": levels,
        "slsaVersion": "1.0",
    }
    if dependency_levels:
        predicate["dependencyLevels"] = dict(dependency_levels)
    return {
        "_type": IN_TOTO_STATEMENT_V1,
        "subject": [{"name": subject_name, "digest": {algorithm: hex_value}}],
        "predicateType": VSA_PREDICATE_TYPE,
        "predicate": predicate,
    }


# -- DSSE --------------------------------------------------------------------------------------------------------


def sign_envelope(statement: dict[str, Any], key: SigningKey) -> bytes:
    """Serialise ``statement`` and sign it as a DSSE envelope with ``key``; return the envelope's JSON bytes."""
    payload = json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()
    signature = key.private_key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    envelope = {
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key.keyid, "sig": base64.b64encode(signature).decode()}],
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def verify_envelope(envelope: bytes, public_key_pem: bytes) -> dict[str, Any]:
    """Check a DSSE envelope's signature with ``public_key_pem`` (ECDSA) and return the in-toto statement it holds.

    Raises :class:`MalformedEvidenceError` (``envelope_unreadable``) for bytes that are no DSSE envelope with an
    in-toto statement, :class:`VerificationError` (``signature_invalid``) when no signature verifies.
    """
    if len(envelope) > MAX_ENVELOPE_BYTES:
        raise MalformedEvidenceError("the envelope is larger than 4 MiB", code="envelope_unreadable")
    try:
        data = json.loads(envelope)
    except (ValueError, UnicodeError) as err:
        raise MalformedEvidenceError(f"not JSON: {err}", code="envelope_unreadable") from err
    if not isinstance(data, dict) or data.get("payloadType") != IN_TOTO_PAYLOAD_TYPE:
        raise MalformedEvidenceError(f"not a DSSE envelope of type {IN_TOTO_PAYLOAD_TYPE}",
                                     code="envelope_unreadable")
    payload = b64decode(data.get("payload"))
    if payload is None:
        raise MalformedEvidenceError("the payload is not base64", code="envelope_unreadable")
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except (ValueError, TypeError) as err:
        raise MalformedEvidenceError(f"not a PEM public key: {err}", code="public_key_invalid") from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise MalformedEvidenceError("the key is not an ECDSA key", code="public_key_invalid")
    signed = pae(IN_TOTO_PAYLOAD_TYPE, payload)
    for entry in as_list(data.get("signatures")):
        signature = b64decode(entry.get("sig")) if isinstance(entry, dict) else None
        if signature is None:
            continue
        try:
            key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        try:
            statement = json.loads(payload)
        except (ValueError, UnicodeError) as err:
            raise MalformedEvidenceError(f"the payload is not JSON: {err}", code="envelope_unreadable") from err
        if not is_statement(statement):
            raise MalformedEvidenceError("the payload is not an in-toto statement", code="envelope_unreadable")
        return statement
    raise VerificationError("no signature of the envelope verifies with the given key", code="signature_invalid")


# -- the signing key ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One version of the dashboard's signing key (ECDSA P-256)."""

    version: int
    private_key: ec.EllipticCurvePrivateKey
    created_at: dt.datetime

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the DER public key, as verification results name keys."""
        return f"sha256:{spki_sha256(self.private_key.public_key()).hex()}"

    @property
    def keyid(self) -> str:
        return self.fingerprint

    def __repr__(self) -> str:
        return f"SigningKey(version={self.version}, {self.fingerprint})"


class SigningKeyring:
    """The dashboard's signing keys in a directory: ``vsa-signing-<n>.key`` (the PKCS #8 PEM private key as a
    Fernet token) and ``vsa-signing-<n>.pub``. The highest version signs; older ones stay, so what they signed
    still verifies with their published public key. The first use creates version 1; :meth:`rotate` adds one.
    """

    def __init__(self, directory: Path, box: CredentialBox) -> None:
        self.directory = directory
        self._box = box

    def versions(self) -> list[int]:
        """Every stored version, oldest first."""
        if not self.directory.is_dir():
            return []
        found = (_KEY_FILE.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def current(self) -> SigningKey:
        """The newest key, created when there is none. Raises :class:`SigningKeyError`."""
        versions = self.versions()
        return self.load(versions[-1]) if versions else self._create(1)

    def rotate(self) -> SigningKey:
        """Create and return the next version; the older keys are kept."""
        versions = self.versions()
        return self._create((versions[-1] if versions else 0) + 1)

    def public_pem(self, version: int) -> bytes:
        """The public key of ``version``. Raises :class:`SigningKeyError` when there is none."""
        path = self.directory / f"vsa-signing-{version}.pub"
        try:
            return path.read_bytes()
        except OSError as err:
            raise SigningKeyError(f"no signing key version {version}", code="signing_key_missing") from err

    def load(self, version: int) -> SigningKey:
        path = self.directory / f"vsa-signing-{version}.key"
        try:
            token = path.read_text("ascii")
            moment = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        except (OSError, UnicodeError) as err:
            raise SigningKeyError(f"cannot read signing key version {version}: {err}") from err
        pem = self._box.decrypt(token.strip()).encode()
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SigningKeyError(f"signing key version {version} is not an ECDSA key")
        return SigningKey(version, key, moment)

    def _create(self, version: int) -> SigningKey:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        token = self._box.encrypt(pem)
        signing = SigningKey(version, key, dt.datetime.now(dt.UTC))
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            secret = self.directory / f"vsa-signing-{version}.key"
            # O_EXCL: two processes creating version 1 at once: one wins, the other reads the winner's key.
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.load(version)
        except OSError as err:
            raise SigningKeyError(f"cannot create the signing key in {self.directory}: {err}") from err
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(token + "\n")
        (self.directory / f"vsa-signing-{version}.pub").write_bytes(signing.public_pem)
        return signing
