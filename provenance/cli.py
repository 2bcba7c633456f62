"""``provenance``: the command line.

    provenance verify IMAGE [--key PEM]... [--certificate-identity ID | --certificate-identity-regexp RE]
        [--certificate-oidc-issuer URL] [--trusted-root FILE] [--insecure-ignore-tlog] [--allow-insecure-registry]
        [--output text|json]
    provenance manage COMMAND [ARGS]...

``verify`` checks one image now, with cosign's flags, on the framework-free core alone: no database, no Django
settings, no SECRET_KEY. Exit status 0 iff at least one signature over the image's own digest verifies under the
given trust (as ``manage.py verify-image``), 1 when it does not, 2 on usage, input or registry errors (one line on
stderr). ``manage`` runs a Django management command on the dashboard's data (the same as ``manage.py``): a
database that is not migrated, or settings that are missing, are a one-line message with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provenance.core.oci import Registry
    from provenance.core.types import Digest

EXIT_VERIFIED, EXIT_NOT_VERIFIED, EXIT_ERROR = 0, 1, 2
PASSWORD_ENV = "PROVENANCE_REGISTRY_PASSWORD"  # noqa: S105 - the name of a variable, not a password
USERNAME_ENV = "PROVENANCE_REGISTRY_USERNAME"
SIGNATURE_REPOSITORY_ENV = "COSIGN_REPOSITORY"  # as cosign: where signatures live, [registry/]repository
MAX_FILE_BYTES = 4 * 1024 * 1024  # keys and trusted roots are far smaller
_HELP_FLAGS = frozenset({"-h", "--help"})
_EVIDENCE_TAG = re.compile(r"^sha(256|384|512)-[0-9a-f]{64,128}(\.[a-z]+)?$")  # cosign's .sig/.att/.sbom tags
# What SQLite and PostgreSQL say about tables and columns that migrations would have created.
_NOT_MIGRATED = re.compile(r"no such (table|column)|relation .* does not exist|column .* does not exist")


class UsageError(Exception):
    """Bad arguments or unreadable input files: exit status 2 with this message."""


def main(argv: Sequence[str] | None = None) -> int:
    """The ``provenance`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "manage":
        # Everything after ``manage`` belongs to Django, ``--help`` included.
        return run_manage(["provenance manage", *args[1:]])
    parser = _parser()
    options = parser.parse_args(args)
    if options.command is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        return verify(options)
    except UsageError as err:
        _error(str(err))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provenance",
        description="Verify Sigstore/cosign signatures and attestations of container images.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    verify_parser = commands.add_parser(
        "verify",
        help="verify one image now (no database needed)",
        description="Discover and verify every signature and attestation of one image, with cosign's flags. "
                    "Exit status: 0 verified (a signature over the image's own digest verifies under the given "
                    "trust), 1 not verified, 2 usage or registry error.",
    )
    _add_verify_arguments(verify_parser)
    commands.add_parser(
        "manage",
        help="run a Django management command on the dashboard's data (as manage.py; try `manage help`)",
        add_help=False,
    )
    return parser


def _add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE",
                        help="an image reference: registry/repository[:tag][@digest]; with --local-image an OCI "
                             "image layout directory: PATH[:TAG|@DIGEST]")
    parser.add_argument("--local-image", action="store_true",
                        help="IMAGE is an OCI image layout on disk (as cosign's flag), not a registry reference")
    parser.add_argument("--key", action="append", default=[], type=Path, metavar="PEM",
                        help="a signer's PEM public key, e.g. cosign.pub (repeatable; any may verify)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--certificate-identity", default="", metavar="ID",
                     help="the expected signer identity (certificate SAN) of keyless signatures")
    who.add_argument("--certificate-identity-regexp", default="", metavar="RE",
                     help="an anchored regular expression the signer identity must match")
    parser.add_argument("--certificate-oidc-issuer", default="", metavar="URL",
                        help="the expected OIDC issuer of keyless signatures")
    parser.add_argument("--trusted-root", type=Path, metavar="FILE",
                        help="a Sigstore trusted_root.json (default: the public-good root shipped with sigstore)")
    parser.add_argument("--insecure-ignore-tlog", action="store_true",
                        help="INSECURE: accept key-based signatures and attestations that were never logged in a "
                             "transparency log (reported as not logged)")
    parser.add_argument("--allow-insecure-registry", "--insecure-registry", dest="insecure_registry",
                        action="store_true", help="INSECURE: plain HTTP to the registry (local test registries)")
    parser.add_argument("--registry-cacert", type=Path, metavar="FILE",
                        help="PEM CA certificates for a registry behind a private CA")
    parser.add_argument("--registry-username", default=os.environ.get(USERNAME_ENV, ""), metavar="USER",
                        help=f"registry user name (or ${USERNAME_ENV}); the password comes from ${PASSWORD_ENV}")
    parser.add_argument("--registry-password", default=None, metavar="PASSWORD",
                        help=f"registry password (prefer ${PASSWORD_ENV}: arguments are visible to other users)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="per-request registry timeout (default 30)")
    parser.add_argument("--output", "-o", choices=("text", "json"), default="text",
                        help="report format (default text)")
    parser.epilog = (f"As cosign, ${SIGNATURE_REPOSITORY_ENV}=[registry/]repository looks for signatures and "
                     "attestations there instead of next to the image.")


def verify(options: argparse.Namespace) -> int:
    """Run ``provenance verify``: print the report, return 0 (verified), 1 (not verified) or 2 (error)."""
    # Only the framework-free core: importing it must not need settings, a database or Django at all.
    from provenance.core import keys as core_keys
    from provenance.core import report as core_report
    from provenance.core.errors import ProvenanceError
    from provenance.core.oci import RegistryClient, signature_place
    from provenance.core.trustroot import TrustRoot
    from provenance.core.types import IdentityPolicy, ImageRef

    identity = None
    if options.certificate_identity or options.certificate_identity_regexp or options.certificate_oidc_issuer:
        if not options.certificate_oidc_issuer or not (options.certificate_identity
                                                       or options.certificate_identity_regexp):
            raise UsageError("give --certificate-oidc-issuer together with --certificate-identity or "
                             "--certificate-identity-regexp")
        identity = IdentityPolicy(issuer=options.certificate_oidc_issuer, identity=options.certificate_identity,
                                  identity_regexp=options.certificate_identity_regexp)
    if identity is None and not options.key:
        raise UsageError("say whom to trust: --key PEM, or --certificate-identity (or "
                         "--certificate-identity-regexp) with --certificate-oidc-issuer")
    password = options.registry_password
    if password is None:
        password = os.environ.get(PASSWORD_ENV)
    if bool(options.registry_username) != bool(password):
        raise UsageError(f"give a registry user name and password together (--registry-username and "
                         f"${PASSWORD_ENV})")
    if options.timeout <= 0:
        raise UsageError("--timeout must be positive")
    clients: list[RegistryClient] = []
    signature_repository: str | None = None
    signature_registry: RegistryClient | None = None
    try:
        ref = None if options.local_image else ImageRef.parse(options.image)
        public_keys = tuple(core_keys.read_public_key(_read(path, "key")).pem for path in options.key)
        if options.trusted_root is None:
            trust_root = TrustRoot.production()
        else:
            trust_root = TrustRoot.from_json(_read(options.trusted_root, "trusted root"),
                                             name=options.trusted_root.name)
        registry: Registry
        if ref is None:
            registry, repository, reference = _open_layout(options.image)
        else:
            ca_file = None
            if options.registry_cacert is not None:
                _read(options.registry_cacert, "CA certificates")
                ca_file = str(options.registry_cacert)
            client = RegistryClient(ref.registry, username=options.registry_username or None,
                                    password=password or None, insecure=options.insecure_registry, ca_file=ca_file,
                                    timeout=options.timeout)
            clients.append(client)
            registry, repository, reference = client, ref.repository, ref.digest or str(ref.tag)
            if os.environ.get(SIGNATURE_REPOSITORY_ENV):
                sig_host, signature_repository = signature_place(os.environ[SIGNATURE_REPOSITORY_ENV],
                                                                 default_registry=ref.registry)
                if sig_host != ref.registry:
                    # Another registry: the credentials given are for the image's registry, never sent elsewhere.
                    signature_registry = RegistryClient(sig_host, insecure=options.insecure_registry,
                                                        ca_file=ca_file, timeout=options.timeout)
                    clients.append(signature_registry)
        check = core_report.check_image(
            registry, repository, reference, label=options.image, trust_root=trust_root, identity=identity,
            public_keys=public_keys, require_tlog=not options.insecure_ignore_tlog,
            signature_repository=signature_repository, signature_registry=signature_registry,
        )
    except ProvenanceError as err:
        raise UsageError(f"{err.code}: {_one_line(err.message)}") from err
    finally:
        for opened in clients:
            opened.close()
    data = core_report.as_report(check)
    print(json.dumps(data, indent=2) if options.output == "json" else core_report.render_text(data))
    if check.is_verified:
        return EXIT_VERIFIED
    verdict = check.verdict()
    _error(f"not verified: {verdict.code}: {_one_line(verdict.reason)}")
    return EXIT_NOT_VERIFIED


def _open_layout(value: str) -> tuple[Registry, str, str | Digest]:
    """``PATH[:TAG|@DIGEST]`` → the layout, a repository name for the report, and the tag or digest.

    Without a tag, the layout must hold exactly one tagged image (as ``cosign save`` writes)."""
    from provenance.core.ocilayout import OciLayout
    from provenance.core.types import Digest

    path, reference = value, ""
    if not (Path(value) / "oci-layout").is_file():
        if "@" in value:
            path, reference = value.rsplit("@", 1)
            reference = str(Digest.parse(reference))
        elif ":" in Path(value).name:
            path, reference = value.rsplit(":", 1)
    layout = OciLayout(path)
    if not reference:
        tags = [t for t in layout.list_tags() if not _EVIDENCE_TAG.match(t)]
        if len(tags) != 1:
            shown = ", ".join(tags[:10]) + (" ..." if len(tags) > 10 else "")
            raise UsageError(f"name the image in {path}: PATH:TAG or PATH@DIGEST (its tags: {shown or 'none'})")
        reference = tags[0]
    name = Path(path).resolve().name or "layout"
    return layout, name, Digest.parse(reference) if reference.startswith("sha") and ":" in reference else reference


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise UsageError(f"cannot read the {what} {str(path)!r}: {err.strerror}") from err
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"the {what} {str(path)!r} is larger than {MAX_FILE_BYTES} bytes")
    return data


def _one_line(text: str) -> str:
    flat = " ".join(str(text).split())
    return "".join(ch if ch.isprintable() else "?" for ch in flat)


def _error(message: str, prog: str = "provenance") -> None:
    print(f"{prog}: {message}", file=sys.stderr)


# --------------------------------------------------------------------------------------------------------------
# Django management commands


def run_manage(argv: list[str]) -> int:
    """Run a Django management command (``argv[0]`` is the program name); returns the exit status.

    ``--help`` (and ``help``) works without SECRET_KEY. Missing settings and a database that is not migrated are
    a one-line message and exit status 2, not a traceback.
    """
    prog = Path(argv[0]).name if argv[0].endswith(".py") else argv[0]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provenance.settings")
    if _wants_help(argv[1:]) and not os.environ.get("SECRET_KEY"):
        # Help only lists and describes commands: nothing is signed, so a placeholder key is harmless here, and
        # the apps' commands (verify-image, ingest, ...) can be found without the real settings.
        os.environ["SECRET_KEY"] = "help-only-placeholder-not-a-secret"  # noqa: S105
    from django.core.exceptions import ImproperlyConfigured
    from django.db.utils import OperationalError, ProgrammingError

    migrate = "provenance manage migrate" if prog.startswith("provenance") else f"python {prog} migrate"
    try:
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018 - loads the settings module, which validates the environment
        from django.core.management import execute_from_command_line

        execute_from_command_line(argv)
    except ImproperlyConfigured as err:
        _error(f"configuration error: {_one_line(str(err))} (set it in the environment)", prog)
        return EXIT_ERROR
    except (OperationalError, ProgrammingError) as err:
        first = _one_line(str(err).splitlines()[0] if str(err) else type(err).__name__)
        if _NOT_MIGRATED.search(str(err)):
            _error(f"the database is not set up ({first}): run `{migrate}` (or `python3 scripts/dev.py run`)", prog)
            return EXIT_ERROR
        if isinstance(err, ProgrammingError):
            raise  # a query the database rejects is a bug, not a setup problem: keep its traceback
        _error(f"the database cannot be used: {first} (check DATABASE_URL or PROVENANCE_DATA_DIR)", prog)
        return EXIT_ERROR
    except SystemExit as exit_:
        code = exit_.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def _wants_help(args: list[str]) -> bool:
    return not args or args[0] in {"help", "--version", "version"} or bool(_HELP_FLAGS & set(args))


if __name__ == "__main__":
    sys.exit(main())
