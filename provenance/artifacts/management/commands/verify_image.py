"""Discover, verify and store everything about one image now; print a report.

    manage.py verify-image REF [--key PEM]... [--certificate-identity ID | --certificate-identity-regexp RE]
        [--certificate-oidc-issuer URL] [--trusted-root FILE] [--insecure-registry] [--insecure-ignore-tlog] [--json]

Exit status 0 iff at least one signature over the image's own digest verifies under the given trust.
``--json`` prints one object: ``{"reference", "digest", "verified", "signatures": [...], "attestations": [...],
"platforms": [...]}`` (see ``report``); a signature's or attestation's ``digest`` is the digest it covers. The same
report, for an image checked without storing anything, is :func:`provenance.core.report.as_report` (``provenance
verify``); both print as text through :func:`provenance.core.report.render_text`.
"""

from __future__ import annotations

import hashlib
import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from provenance.artifacts import services as artifact_services
from provenance.artifacts.models import Artifact, Evidence
from provenance.core import keys as core_keys
from provenance.core.errors import ProvenanceError
from provenance.core.oci import RegistryClient
from provenance.core.report import render_text
from provenance.core.types import IdentityPolicy, ImageRef
from provenance.sources import services as source_services
from provenance.sources.models import Source
from provenance.trust import services as trust_services
from provenance.trust.models import TrustRoot

MAX_SOURCE_NAME = 200


class Command(BaseCommand):
    help = "Verify every signature and attestation of one image now, store the results and print a report."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        # Django derives the command name from the module (verify_image); the stable form is verify-image.
        return super().create_parser(prog_name, "verify-image", **kwargs)

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("reference", metavar="REF", help="an image reference: registry/repository[:tag][@digest]")
        parser.add_argument(
            "--key",
            action="append",
            default=[],
            type=Path,
            metavar="PEM",
            help="a signer's PEM public key (repeatable; any may verify)",
        )
        who = parser.add_mutually_exclusive_group()
        who.add_argument("--certificate-identity", default="", metavar="ID", help="the expected signer identity")
        who.add_argument(
            "--certificate-identity-regexp",
            default="",
            metavar="RE",
            help="an anchored regular expression the signer identity must match",
        )
        parser.add_argument("--certificate-oidc-issuer", default="", metavar="URL", help="the expected OIDC issuer")
        parser.add_argument(
            "--trusted-root",
            type=Path,
            metavar="FILE",
            help="a trusted_root.json (default: the Sigstore public-good root)",
        )
        parser.add_argument("--insecure-registry", action="store_true", help="plain HTTP to the registry")
        parser.add_argument(
            "--insecure-ignore-tlog",
            action="store_true",
            help="INSECURE: accept key-based signatures and attestations that were never logged in a transparency "
                 "log (as cosign's flag); they are reported as not logged",
        )
        parser.add_argument("--json", action="store_true", help="print the report as one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        reference = options["reference"]
        identity = _identity(options)
        try:
            ref = ImageRef.parse(reference)
            public_keys = tuple(core_keys.read_public_key(_read(path)).pem for path in options["key"])
            root_row = _trust_root_row(options["trusted_root"])
            trust_root = trust_services.load(root_row)
            source = source_services.create_source(
                name=f"cli:{reference}"[:MAX_SOURCE_NAME],
                kind=Source.Kind.IMAGE,
                location=reference,
                trust_root=root_row,
                expected_identity=identity.identity if identity else "",
                expected_identity_regexp=identity.identity_regexp if identity else "",
                expected_issuer=identity.issuer if identity else "",
                is_insecure=options["insecure_registry"],
                ignore_tlog=options["insecure_ignore_tlog"],
                is_scheduled=False,
            )
            registry = RegistryClient(
                ref.registry, insecure=options["insecure_registry"], timeout=settings.PROVENANCE_HTTP_TIMEOUT,
                **source_services.registry_limits(),
            )
            try:
                artifact = artifact_services.ingest_image(
                    source=source,
                    registry=registry,
                    repository=ref.repository,
                    reference=str(ref.digest) if ref.digest else str(ref.tag),
                    trust_root=trust_root,
                    identity=identity,
                    public_keys=public_keys,
                    require_tlog=not options["insecure_ignore_tlog"],
                )
            finally:
                registry.close()
        except ProvenanceError as err:
            raise CommandError(f"{err.code}: {err.message}") from err

        data = report(reference, artifact)
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
        else:
            self.stdout.write(render_text(data))
        if not data["verified"]:
            raise CommandError(f"not verified: {artifact.status_code}: {artifact.status_reason}", returncode=1)


def report(reference: str, artifact: Artifact) -> dict[str, Any]:
    """The stable JSON report of one stored image: its verdict, evidence per level, and platforms."""
    nodes = [artifact, *artifact.children.order_by("platform", "digest")]
    evidence = list(Evidence.objects.filter(artifact__in=nodes).order_by("level", "kind", "location", "digest"))
    return {
        "reference": reference,
        "digest": artifact.digest,
        "verified": artifact.status == "verified",
        "signatures": [
            {
                "format": e.format,
                "digest": e.covers_digest,
                "level": e.level,
                "verified": e.is_verified,
                "identity": e.identity,
                "issuer": e.issuer,
                "key": e.key,
                "tlog": e.tlog,
                "reasons": _reasons(e),
            }
            for e in evidence
            if e.kind == Evidence.Kind.SIGNATURE
        ],
        "attestations": [
            {
                "predicate_type": e.predicate_type or _predicate_type(e),
                "format": e.format,
                "digest": e.covers_digest,
                "verified": e.is_verified,
                "reasons": _reasons(e),
            }
            for e in evidence
            if e.kind == Evidence.Kind.ATTESTATION
        ],
        "platforms": [
            {"digest": child.digest, "platform": child.platform, "verified": child.status == "verified"}
            for child in nodes[1:]
        ],
    }


def _reasons(evidence: Evidence) -> list[dict[str, str]]:
    return [
        {
            "stage": str(c.get("stage", "")),
            "code": str(c.get("code", "")),
            "message": str(c.get("message", "")),
            "hint": str(c.get("hint", "")),
        }
        for c in evidence.failures
    ]


def _predicate_type(evidence: Evidence) -> str:
    statement = evidence.statement if isinstance(evidence.statement, dict) else {}
    return str(statement.get("predicateType", ""))


def _identity(options: dict[str, Any]) -> IdentityPolicy | None:
    identity, regexp, issuer = (
        options["certificate_identity"],
        options["certificate_identity_regexp"],
        options["certificate_oidc_issuer"],
    )
    if not (identity or regexp or issuer):
        return None
    if not issuer or not (identity or regexp):
        raise CommandError(
            "give --certificate-oidc-issuer together with --certificate-identity or --certificate-identity-regexp"
        )
    return IdentityPolicy(issuer=issuer, identity=identity, identity_regexp=regexp)


def _trust_root_row(path: Path | None) -> TrustRoot:
    if path is None:
        trust_services.ensure_builtin_roots()
        return TrustRoot.objects.get(name=trust_services.PUBLIC_GOOD)
    document = _read(path)
    name = f"cli-{hashlib.sha256(document).hexdigest()[:16]}"
    existing = TrustRoot.objects.filter(name=name).first()
    if existing is not None:
        return existing
    return trust_services.register(name=name, document=document, description=f"from verify-image {path.name}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise CommandError(f"cannot read {str(path)!r}: {err.strerror}") from err
