"""The one error hierarchy of Provenance's core.

Third-party exceptions are translated once, at the edge of ``core``, with ``raise ... from err``.
Each error carries a stable ``code`` that transports (tasks, API, views) show to users.
"""

from __future__ import annotations


class ProvenanceError(Exception):
    """Root of every error raised by ``provenance.core``."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class TransientError(ProvenanceError):
    """Network failure, timeout, 429 or 5xx: retrying later may help."""

    code = "transient"


class RegistryError(ProvenanceError):
    """The registry answered, but not with what was asked for (permanent)."""

    code = "registry_error"


class AccessError(RegistryError):
    """The registry cannot be used at all as configured (credentials, TLS): about the source, not one image."""

    code = "access_failed"


class AuthenticationError(AccessError):
    """The registry refused the credentials (or demanded some that were not given)."""

    code = "authentication_failed"


class TLSVerificationError(AccessError):
    """The registry's TLS certificate does not verify against the configured CAs."""

    code = "tls_verify_failed"


class NotFoundError(RegistryError):
    """The manifest, blob or tag does not exist."""

    code = "not_found"


class MalformedEvidenceError(ProvenanceError):
    """Evidence could not be parsed: bad JSON, wrong media type, digest mismatch, too large."""

    code = "malformed"


class TrustRootError(ProvenanceError):
    """A trusted root is malformed or unknown."""

    code = "trust_root_invalid"


class VerificationError(ProvenanceError):
    """Evidence parsed but did not verify."""

    code = "invalid"


class EgressRefusedError(AccessError):
    """A connection was refused by the egress rules: a private, loopback or link-local address, or a redirect to
    a host the source does not allow."""

    code = "egress_refused"


class LimitExceededError(ProvenanceError):
    """A configured budget (tags, pages, referrers, layers, bytes, seconds) was used up; ``limit`` names it."""

    code = "limit_exceeded"

    def __init__(self, message: str, *, limit: str, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.limit = limit
