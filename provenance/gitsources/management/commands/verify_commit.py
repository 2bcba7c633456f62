"""Verify one commit's signature offline, as ``gitsign verify`` does, but saying which identity is expected.

    manage.py verify-commit PATH REV (--certificate-identity ID | --certificate-identity-regexp RE)
        --certificate-oidc-issuer URL [--trusted-root FILE] [--allowed-signers FILE] [--json]

The default trust root is the shipped Sigstore public-good one. Exit status 0 iff the commit's signature is
verified (a gitsign signature without its log entry is not). ``--json`` prints one object naming the commit, the
signer identity, issuer, log entry status and the reasons.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from provenance.core.errors import ProvenanceError
from provenance.core.gitrepo import Mirror
from provenance.core.trustroot import MAX_TRUST_ROOT_BYTES, TrustRoot
from provenance.core.types import IdentityPolicy
from provenance.core.verify import verify_git_object


class Command(BaseCommand):
    help = "Verify the signature of one commit of a local repository (offline)."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        return super().create_parser(prog_name, "verify-commit", **kwargs)

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("path", metavar="PATH", help="a local repository (work tree or bare)")
        parser.add_argument("rev", metavar="REV", help="a commit, branch or tag")
        who = parser.add_mutually_exclusive_group()
        who.add_argument("--certificate-identity", default="", metavar="ID")
        who.add_argument("--certificate-identity-regexp", default="", metavar="RE",
                         help="an anchored regular expression the identity must match")
        parser.add_argument("--certificate-oidc-issuer", default="", metavar="URL")
        parser.add_argument("--trusted-root", type=Path, metavar="FILE",
                            help="a trusted_root.json (default: the shipped Sigstore public-good root)")
        parser.add_argument("--allowed-signers", type=Path, metavar="FILE", help="SSH allowed signers")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"]).resolve()
        git_dir = path / ".git" if (path / ".git").is_dir() else path
        if not (git_dir / "HEAD").is_file():
            raise CommandError(f"not a git repository: {path}")
        try:
            root = _trust_root(options["trusted_root"])
            mirror = Mirror(git_dir)
            sha = mirror.resolve(options["rev"])
            kind, raw = mirror.read_objects([sha]).get(sha, ("missing", b""))
        except ProvenanceError as err:
            raise CommandError(f"{err.code}: {err.message}") from err
        if kind != "commit":
            raise CommandError(f"{sha} cannot be read as a commit ({kind})")
        identity = None
        if (options["certificate_identity"] or options["certificate_identity_regexp"]) and \
                options["certificate_oidc_issuer"]:
            identity = IdentityPolicy(issuer=options["certificate_oidc_issuer"],
                                      identity=options["certificate_identity"],
                                      identity_regexp=options["certificate_identity_regexp"])
        signers = options["allowed_signers"].read_text() if options["allowed_signers"] else ""
        result = verify_git_object(raw, trust_root=root, identity=identity, allowed_signers=signers)
        if options["json"]:
            self.stdout.write(json.dumps({"commit": sha, **result.as_dict()}, indent=2))
        else:
            self.stdout.write(f"commit {sha}: {result.status}")
            if result.identity:
                self.stdout.write(f"  signer: {result.identity} (issuer {result.issuer or 'none'})")
            self.stdout.write(f"  log entry: {result.log_status}")
            for check in result.checks:
                if not check.ok:
                    self.stdout.write(f"  ✗ {check.code}: {check.message}")
        if not result.is_verified:
            raise SystemExit(1)


def _trust_root(path: Path | None) -> TrustRoot:
    if path is None:
        return TrustRoot.production()
    try:
        data = path.read_bytes()[:MAX_TRUST_ROOT_BYTES + 1]
    except OSError as err:
        raise CommandError(f"cannot read {path}: {err.strerror}") from err
    return TrustRoot.from_json(data, name=path.name)
