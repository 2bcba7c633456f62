"""The sigstore-conformance client protocol, offline.

    manage.py conformance verify-bundle [--staging] --bundle FILE --certificate-identity IDENTITY
        --certificate-oidc-issuer URL [--trusted-root FILE] FILE_OR_DIGEST
    manage.py conformance verify-bundle [--staging] --bundle FILE --key PATH_TO_KEY [--trusted-root FILE]
        FILE_OR_DIGEST

``FILE_OR_DIGEST`` is a ``sha256:<64 hex>`` digest unless that is not well-formed or names a file on disk.
Exit status 0 means verified; otherwise the reason is on stderr. No database and no network are used.
"""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from provenance.core.errors import MalformedEvidenceError, TrustRootError
from provenance.core.trustroot import TrustRoot
from provenance.core.types import Digest, IdentityPolicy
from provenance.core.verify import verify_bundle


class Command(BaseCommand):
    help = "sigstore-conformance client entry point (verify-bundle), offline."
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: ArgumentParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", required=True)
        verify = commands.add_parser("verify-bundle", help="verify a Sigstore bundle offline")
        verify.add_argument("--staging", action="store_true", help="use the shipped Sigstore staging root")
        verify.add_argument("--bundle", required=True, type=Path, help="the Sigstore bundle (JSON)")
        verify.add_argument("--certificate-identity", default="", help="the expected certificate identity (SAN)")
        verify.add_argument("--certificate-oidc-issuer", default="", help="the expected OIDC issuer")
        verify.add_argument("--key", type=Path, help="a PEM public key, for key-based bundles")
        verify.add_argument("--trusted-root", type=Path, help="a trusted_root.json to use instead of the shipped one")
        verify.add_argument("file_or_digest", metavar="FILE_OR_DIGEST")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["subcommand"] != "verify-bundle":  # pragma: no cover - argparse enforces the choice
            raise CommandError(f"unknown subcommand {options['subcommand']}")
        key = options["key"]
        identity = options["certificate_identity"]
        issuer = options["certificate_oidc_issuer"]
        if key is None and not (identity and issuer):
            raise CommandError("give --certificate-identity and --certificate-oidc-issuer, or --key")
        try:
            trust_root = _trust_root(options["trusted_root"], staging=options["staging"])
            bundle = _read(options["bundle"], "bundle")
            public_keys = (_read(key, "key"),) if key is not None else ()
            artifact = _file_or_digest(options["file_or_digest"])
        except (TrustRootError, MalformedEvidenceError) as err:
            raise CommandError(f"{err.code}: {err.message}") from err

        outcome = verify_bundle(
            bundle,
            artifact=artifact,
            trust_root=trust_root,
            identity=IdentityPolicy(issuer=issuer, identity=identity) if key is None else None,
            public_keys=public_keys,
        )
        result = outcome.result
        if not result.is_verified:
            failure = result.failures[0]
            raise CommandError(
                f"{result.outcome}: [{failure.stage}/{failure.code}] {failure.message}"
                + (f" (hint: {failure.hint})" if failure.hint else "")
            )
        self.stdout.write(f"OK: verified ({result.tlog or 'no transparency log'})")


def _trust_root(path: Path | None, *, staging: bool) -> TrustRoot:
    if path is not None:
        return TrustRoot.from_json(_read(path, "trusted root"), name=path.name)
    return TrustRoot.staging() if staging else TrustRoot.production()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise MalformedEvidenceError(
            f"cannot read the {what} {str(path)!r}: {err.strerror}", code="unreadable_file"
        ) from err


def _file_or_digest(value: str) -> bytes | Digest:
    """The protocol's rule: a digest, unless it is not a well-formed sha256 digest or a file by that name exists."""
    path = Path(value)
    if value.startswith("sha256:") and not path.exists():
        try:
            digest = Digest.parse(value)
        except MalformedEvidenceError:
            pass
        else:
            if digest.algorithm == "sha256":
                return digest
    return _read(path, "artifact")
