"""``manage.py trust-initialize``: a private Sigstore deployment's trust root from its TUF repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from provenance.core.errors import ProvenanceError
from provenance.trust import services


class Command(BaseCommand):
    help = ("Set up a private Sigstore deployment's trust root from its TUF repository, as `cosign initialize "
            "--mirror URL --root FILE` does; the root is refreshed from the mirror like the public-good one.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name", required=True, help="the trust root's name, e.g. acme-sigstore")
        parser.add_argument("--mirror", required=True, help="the TUF repository's URL")
        parser.add_argument("--root", required=True, type=Path,
                            help="the repository's initial TUF root.json, obtained out of band (the anchor)")
        parser.add_argument("--description", default="")

    def handle(self, *args: object, **options: object) -> None:
        root_path = options["root"]
        assert isinstance(root_path, Path)
        try:
            anchor = root_path.read_bytes()
        except OSError as err:
            raise CommandError(f"cannot read {root_path}: {err.strerror}") from err
        try:
            row = services.initialize_from_tuf(name=str(options["name"]), mirror=str(options["mirror"]),
                                               root=anchor, description=str(options["description"]))
        except ProvenanceError as err:
            raise CommandError(f"{err.code}: {err.message}") from err
        config = " and its signing config" if row.signing_config else ""
        self.stdout.write(f"trust root {row.name}: sha256:{row.sha256} from {row.tuf_url}{config}")
