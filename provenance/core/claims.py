"""What a Fulcio certificate says about the build that signed: the GitHub Actions workflow claims.

Fulcio writes them twice: the legacy extensions (1.3.6.1.4.1.57264.1.2 to .6, raw UTF-8) and the newer
build-provenance extensions (1.3.6.1.4.1.57264.1.12 onwards, DER UTF8String). A certificate may carry either
set or both; a claim is read from the newer extension first. A policy names the claims it requires.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

__all__ = ["WorkflowClaims", "read_claims"]

_LEGACY = {
    "trigger": "1.3.6.1.4.1.57264.1.2",
    "sha": "1.3.6.1.4.1.57264.1.3",
    "workflow": "1.3.6.1.4.1.57264.1.4",
    "repository": "1.3.6.1.4.1.57264.1.5",
    "ref": "1.3.6.1.4.1.57264.1.6",
}
_V2 = {
    "build_signer_uri": "1.3.6.1.4.1.57264.1.9",
    "runner_environment": "1.3.6.1.4.1.57264.1.11",
    "source_repository_uri": "1.3.6.1.4.1.57264.1.12",
    "sha": "1.3.6.1.4.1.57264.1.13",
    "ref": "1.3.6.1.4.1.57264.1.14",
    "trigger": "1.3.6.1.4.1.57264.1.20",
    "run_invocation_uri": "1.3.6.1.4.1.57264.1.21",
}
_MAX_CLAIM = 1000


@dataclass(frozen=True, slots=True)
class WorkflowClaims:
    """GitHub Actions claims a signing certificate must carry; empty fields are not checked.

    ``repository`` is ``owner/name`` (compared case-insensitively, as GitHub names are), ``ref`` a full ref
    (``refs/heads/main``, ``refs/tags/v1``), ``trigger`` the event name (``push``, ``release``), ``sha`` the
    40-hex commit.
    """

    repository: str = ""
    ref: str = ""
    trigger: str = ""
    sha: str = ""

    def is_empty(self) -> bool:
        return not (self.repository or self.ref or self.trigger or self.sha)

    def mismatches(self, found: dict[str, str]) -> list[tuple[str, str, str]]:
        """Return ``(claim, expected, found)`` for each required claim the certificate does not satisfy."""
        result = []
        for name in ("repository", "ref", "trigger", "sha"):
            expected = getattr(self, name)
            if not expected:
                continue
            actual = found.get(name, "")
            same = actual.lower() == expected.lower() if name in ("repository", "sha") else actual == expected
            if not same:
                result.append((name, expected, actual))
        return result


def read_claims(cert: x509.Certificate) -> dict[str, str]:
    """Return the workflow claims the certificate carries (``repository``, ``ref``, ``trigger``, ``sha``, ...).

    Never raises; a claim that is absent or unreadable is left out.
    """
    claims: dict[str, str] = {}
    for name, oid in _LEGACY.items():
        raw = _extension(cert, oid)
        if raw is not None:
            claims[name] = raw.decode("utf-8", "replace")[:_MAX_CLAIM]
    for name, oid in _V2.items():
        raw = _extension(cert, oid)
        text = der_utf8(raw) if raw is not None else None
        if text:
            claims[name] = text[:_MAX_CLAIM]
    uri = claims.get("source_repository_uri", "")
    if uri.startswith("https://") and uri.count("/") >= 4:
        # https://github.com/owner/name -> owner/name (the legacy claim's form), same for GHES hosts
        claims["repository"] = "/".join(uri.split("/")[3:5])
    return claims


def _extension(cert: x509.Certificate, dotted: str) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(dotted)).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    return ext.value if isinstance(ext, x509.UnrecognizedExtension) else None


def der_utf8(value: bytes) -> str | None:
    """Decode a DER UTF8String (tag 0x0c); ``None`` when it is not one."""
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        size = length & 0x7F
        if size == 0 or size > 4 or len(value) < 2 + size:
            return None
        length, offset = int.from_bytes(value[2 : 2 + size], "big"), 2 + size
    if offset + length != len(value):
        return None
    try:
        return value[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None
