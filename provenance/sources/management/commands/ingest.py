"""``manage.py ingest SOURCE``: add (or update) a source and scan it, optionally here and now with progress."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from provenance.core.errors import ProvenanceError
from provenance.sources import services
from provenance.sources.models import Scan, Source
from provenance.trust import services as trust_services
from provenance.trust.models import TrustRoot


class Progress:
    """A progress bar on a terminal; plain lines (one per change) otherwise."""

    WIDTH = 30

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.is_tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last: tuple[int, int, int] | None = None

    def __call__(self, scan: Scan) -> None:
        state = (scan.done, scan.total, scan.errors)
        if state == self.last:
            return
        self.last = state
        text = f"{scan.done}/{scan.total} images"
        if scan.errors:
            text += f", {scan.errors} error{'s' if scan.errors != 1 else ''}"
        if self.is_tty:
            filled = int(self.WIDTH * scan.done / scan.total) if scan.total else 0
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {text}   ", ending="")
            self.stream.flush()
        else:
            self.stream.write(text)

    def close(self) -> None:
        if self.is_tty and self.last is not None:
            self.stream.write("")


class Command(BaseCommand):
    help = (
        "Add (or update) a source and scan it. SOURCE is an image reference (registry/name:tag or @digest), a "
        "repository (registry/name, with --all-tags, --tags-matching GLOB or --newest N), or the path of an OCI "
        "image layout directory or tar. Without --wait the scan is queued for a worker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="image reference, repository, or layout directory/tar path")
        tags = parser.add_mutually_exclusive_group()
        tags.add_argument("--all-tags", action="store_true", help="every tag of the repository")
        tags.add_argument("--tags-matching", metavar="GLOB", default="", help="tags matching a glob, e.g. 'v1.*'")
        parser.add_argument("--newest", type=int, metavar="N", help="only the newest N tags (by creation time)")
        parser.add_argument("--name", help="source name (default: SOURCE)")
        parser.add_argument("--trust-root", default="sigstore-public-good", help="trust root name")
        parser.add_argument("--identity", default="", help="expected certificate identity")
        parser.add_argument("--identity-regexp", default="", help="expected certificate identity, as a regexp")
        parser.add_argument("--issuer", default="", help="expected OIDC issuer")
        parser.add_argument("--signature-repository", default="", help="where cosign signatures live "
                                                                          "(as COSIGN_REPOSITORY)")
        parser.add_argument("--insecure", action="store_true", help="plain HTTP (local registries only)")
        parser.add_argument("--insecure-ignore-tlog", action="store_true",
                            help="INSECURE: accept key-based signatures never logged in a transparency log")
        parser.add_argument("--ca-file", help="PEM CA certificates for the registry")
        parser.add_argument("--username", default="", help="registry username")
        parser.add_argument("--password-stdin", action="store_true", help="read the registry password from stdin")
        parser.add_argument("--no-schedule", action="store_true", help="do not re-scan periodically")
        parser.add_argument("--wait", action="store_true",
                            help="scan here and now, showing progress, instead of queueing for a worker")

    def handle(self, *args: Any, **options: Any) -> None:
        location: str = options["source"]
        path = Path(location)
        is_repository = options["all_tags"] or options["tags_matching"] or options["newest"]
        if path.is_dir():
            kind = Source.Kind.LAYOUT
            location = str(path.resolve())
        elif path.is_file():
            kind = Source.Kind.LAYOUT_TAR
            location = str(path.resolve())
        else:
            kind = Source.Kind.REPOSITORY if is_repository else Source.Kind.IMAGE
        if is_repository and kind != Source.Kind.REPOSITORY:
            raise CommandError("--all-tags, --tags-matching and --newest apply to a registry repository")
        password = None
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\r\n")
        if options["trust_root"] in {"sigstore-public-good", "sigstore-staging"}:
            trust_services.ensure_builtin_roots()
        try:
            trust_root = TrustRoot.objects.get(name=options["trust_root"])
        except TrustRoot.DoesNotExist as err:
            raise CommandError(f"no trust root named {options['trust_root']!r}") from err
        ca = Path(options["ca_file"]).read_text() if options["ca_file"] else ""
        try:
            source = services.create_source(
                name=(options["name"] or options["source"])[:200],
                kind=kind,
                location=location,
                trust_root=trust_root,
                expected_identity=options["identity"],
                expected_identity_regexp=options["identity_regexp"],
                expected_issuer=options["issuer"],
                is_insecure=options["insecure"],
                ignore_tlog=options["insecure_ignore_tlog"],
                tag_pattern=options["tags_matching"],
                newest=options["newest"],
                signature_repository=options["signature_repository"],
                ca_certificates=ca,
                username=options["username"],
                password=password,
                is_scheduled=not options["no_schedule"],
            )
        except ProvenanceError as err:
            raise CommandError(f"{err.code}: {err.message}") from err
        if not options["wait"]:
            scan = services.start_scan(source)
            self.stdout.write(f"Source '{source.name}' ({source.get_kind_display()}): scan #{scan.pk} queued.")
            return
        self.stdout.write(f"Scanning '{source.name}' ({source.get_kind_display()}) ...")
        progress = Progress(self.stdout)
        scan = services.scan_here(source, progress=progress)
        progress.close()
        for problem in scan.problems[:50]:
            self.stdout.write(f"  {problem['reference']}: {problem['code']}: {problem['message']}")
        if scan.state == Scan.State.FAILED:
            raise CommandError(f"scan #{scan.pk} failed: {scan.error_code}: {scan.error}")
        self.stdout.write(self.style.SUCCESS(
            f"Scan #{scan.pk} done: {scan.done}/{scan.total} images, {scan.fetched} fetched, "
            f"{scan.unchanged} unchanged, {scan.errors} errors."
        ))
