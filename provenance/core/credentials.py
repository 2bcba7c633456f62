"""Registry credentials encrypted at rest (Fernet), and nothing else: no storage, no settings.

The key comes from the caller (settings). Several keys may be given, newest first, so that a key can be rotated:
tokens are written with the first and read with any. Plain values never appear in messages.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from provenance.core.errors import ProvenanceError

__all__ = ["CredentialBox", "CredentialsError", "insecure_key_from_secret"]


class CredentialsError(ProvenanceError):
    """Credentials cannot be stored or read: no usable key, or a token from another key."""

    code = "credentials_unavailable"


class CredentialBox:
    """Encrypts and decrypts short secrets (registry passwords and tokens) with Fernet."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        """Build a box from one or more Fernet keys (URL-safe base64 of 32 bytes), newest first.

        Raises :class:`CredentialsError` (``credentials_key_invalid``) when there is none or one is malformed
        (the message never shows the key).
        """
        if not keys:
            raise CredentialsError("no key to encrypt credentials with", code="credentials_key_missing")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.strip() if isinstance(key, str | bytes) else key))
            except (ValueError, TypeError) as err:
                raise CredentialsError(
                    f"credential key #{position} is not a Fernet key (32 bytes, URL-safe base64)",
                    code="credentials_key_invalid",
                ) from err
        self._fernet = MultiFernet(fernets)

    def encrypt(self, secret: str) -> str:
        """Return the Fernet token (ASCII text) for ``secret``."""
        return self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Return the secret in ``token``; raises :class:`CredentialsError` (``credentials_undecryptable``)."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError) as err:
            raise CredentialsError(
                "stored credentials cannot be decrypted with the configured key (was the key changed?); "
                "enter the credentials again",
                code="credentials_undecryptable",
            ) from err

    def __repr__(self) -> str:
        return "CredentialBox(<keys hidden>)"


def insecure_key_from_secret(secret: str) -> str:
    """Derive a Fernet key from a Django ``SECRET_KEY``: for debug, demo and tests only.

    Insecure as a production scheme because rotating the secret key then loses every stored credential and one
    secret protects two things; callers must refuse it outside debug/demo/test.
    """
    digest = hashlib.sha256(b"provenance credentials v1\0" + secret.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")
