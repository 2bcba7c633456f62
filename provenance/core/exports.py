"""Compliance exports, framework-free: one row per artifact, written as CSV, JSON or PDF; evidence-pack manifests
and the README that tells an auditor how to re-verify each item offline.

Every value in a row may come from a registry (tags, identities, builder and source fields of attestations): it is
attacker-controlled text. CSV cells are neutralised against spreadsheet formula injection (:func:`safe_cell`), JSON
is written by :mod:`json`, the PDF is drawn as plain text (no markup is interpreted) and the README quotes every
value it puts on a command line (:func:`shlex.quote`).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COLUMNS",
    "EXPORT_SCHEMA",
    "EXPORT_SCHEMA_ID",
    "ExportRow",
    "PackItem",
    "PolicyVerdict",
    "csv_lines",
    "json_chunks",
    "manifest_lines",
    "pack_readme",
    "pdf_document",
    "safe_cell",
]

EXPORT_SCHEMA_ID = "https://provenance.invalid/schemas/compliance-export/v1"
MAX_CELL = 2000  # characters of one CSV/PDF cell; a registry can make a tag list or an identity arbitrarily long
MAX_PDF_CELL = 120

# Spreadsheets (Excel, LibreOffice, Google Sheets) run a cell starting with one of these as a formula; a tab or
# carriage return in front hides it from a quick look but is stripped by some importers, so it is quoted as well.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def safe_cell(value: object) -> str:
    """Return ``value`` as CSV cell text a spreadsheet will not run as a formula.

    A cell starting with ``=`` ``+`` ``-`` ``@``, a tab, CR or LF gets a leading ``'`` (OWASP's advice), which
    spreadsheets show as text. Never raises.
    """
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


@dataclass(frozen=True, slots=True)
class PolicyVerdict:
    """One policy's result for an artifact: its name, version and digest, mode, and whether it allowed it."""

    name: str
    version: int | None
    sha256: str
    mode: str
    allowed: bool
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "mode": self.mode,
                "allowed": self.allowed, "reason": self.reason}

    def as_text(self) -> str:
        version = f" v{self.version}" if self.version is not None else ""
        return f"{self.name}{version} ({self.mode}): {'allowed' if self.allowed else 'denied'}"


@dataclass(frozen=True, slots=True)
class ExportRow:
    """What an auditor asks about one artifact. Strings are as stored (attacker-controlled where they came from a
    registry); times are aware datetimes or None."""

    image: str  # registry/repository
    digest: str
    platform: str = ""
    tags: tuple[str, ...] = ()
    signature_status: str = ""
    signature_code: str = ""
    policy_status: str = ""
    policies: tuple[PolicyVerdict, ...] = ()
    signer_identity: str = ""
    signer_issuer: str = ""
    builder: str = ""
    source_repository: str = ""
    source_commit: str = ""
    sbom_present: bool = False
    sbom_signed: bool = False
    trust_root: str = ""
    trust_root_version: int | None = None
    verified_at: dt.datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "image": self.image, "digest": self.digest, "platform": self.platform, "tags": list(self.tags),
            "signature": {"status": self.signature_status, "code": self.signature_code},
            "policy": {"status": self.policy_status, "policies": [p.as_json() for p in self.policies]},
            "signer": {"identity": self.signer_identity, "issuer": self.signer_issuer},
            "build": {"builder": self.builder, "source_repository": self.source_repository,
                      "source_commit": self.source_commit},
            "sbom": {"present": self.sbom_present, "signed": self.sbom_signed},
            "trust_root": {"name": self.trust_root, "version": self.trust_root_version},
            "verified_at": _iso(self.verified_at),
        }

    def as_cells(self) -> list[str]:
        values: list[object] = [
            self.image, self.digest, self.platform, " ".join(self.tags), self.signature_status, self.signature_code,
            self.policy_status, "; ".join(p.as_text() for p in self.policies), self.signer_identity,
            self.signer_issuer, self.builder, self.source_repository, self.source_commit,
            _yes(self.sbom_present), _yes(self.sbom_signed), self.trust_root,
            "" if self.trust_root_version is None else self.trust_root_version, _iso(self.verified_at) or "",
        ]
        return [safe_cell(_bounded(str(v), MAX_CELL)) for v in values]


COLUMNS = (
    "image", "digest", "platform", "tags", "signature_status", "signature_code", "policy_status", "policies",
    "signer_identity", "signer_issuer", "builder", "source_repository", "source_commit", "sbom_present",
    "sbom_signed", "trust_root", "trust_root_version", "verified_at",
)


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[ExportRow]) -> Iterator[str]:
    """Yield the CSV export line by line (a header, then one line per row), never holding more than one row."""
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for row in rows:
        yield writer.writerow(row.as_cells())


def json_chunks(rows: Iterable[ExportRow], *, generated_at: dt.datetime, scope: dict[str, str],
                batch: int = 500) -> Iterator[str]:
    """Yield the JSON export (valid against :data:`EXPORT_SCHEMA`) in pieces of about ``batch`` rows.

    ``scope`` says what was exported (the filter's parameters), ``generated_at`` when.
    """
    head = {"$schema": EXPORT_SCHEMA_ID, "generated_at": _iso(generated_at), "scope": scope}
    yield json.dumps(head)[:-1] + ', "artifacts": ['
    pending: list[str] = []
    first = True
    for row in rows:
        pending.append(json.dumps(row.as_json(), separators=(",", ":")))
        if len(pending) >= batch:
            yield ("" if first else ",") + ",".join(pending)
            first, pending = False, []
    if pending:
        yield ("" if first else ",") + ",".join(pending)
    yield "]}\n"


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


_STRING = {"type": "string"}
EXPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": EXPORT_SCHEMA_ID,
    "title": "Provenance compliance export",
    "type": "object",
    "required": ["$schema", "generated_at", "scope", "artifacts"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"const": EXPORT_SCHEMA_ID},
        "generated_at": {"type": "string", "format": "date-time"},
        "scope": {"type": "object", "additionalProperties": {"type": "string"}},
        "artifacts": {"type": "array", "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["image", "digest", "platform", "tags", "signature", "policy", "signer", "build", "sbom",
                         "trust_root", "verified_at"],
            "properties": {
                "image": _STRING,
                "digest": {"type": "string", "pattern": "^sha(256|384|512):[0-9a-f]+$"},
                "platform": _STRING,
                "tags": {"type": "array", "items": _STRING},
                "signature": {"type": "object", "additionalProperties": False, "required": ["status", "code"],
                              "properties": {"status": {"enum": ["pending", "verified", "failed", "unsigned",
                                                                 "error"]},
                                             "code": _STRING}},
                "policy": {"type": "object", "additionalProperties": False, "required": ["status", "policies"],
                           "properties": {
                               "status": {"enum": ["trusted", "untrusted", "warn", "unsigned", "error", "pending"]},
                               "policies": {"type": "array", "items": {
                                   "type": "object", "additionalProperties": False,
                                   "required": ["name", "version", "sha256", "mode", "allowed", "reason"],
                                   "properties": {"name": _STRING, "version": _nullable("integer"),
                                                  "sha256": _STRING, "mode": _STRING,
                                                  "allowed": {"type": "boolean"}, "reason": _STRING}}}}},
                "signer": {"type": "object", "additionalProperties": False, "required": ["identity", "issuer"],
                           "properties": {"identity": _STRING, "issuer": _STRING}},
                "build": {"type": "object", "additionalProperties": False,
                          "required": ["builder", "source_repository", "source_commit"],
                          "properties": {"builder": _STRING, "source_repository": _STRING,
                                         "source_commit": _STRING}},
                "sbom": {"type": "object", "additionalProperties": False, "required": ["present", "signed"],
                         "properties": {"present": {"type": "boolean"}, "signed": {"type": "boolean"}}},
                "trust_root": {"type": "object", "additionalProperties": False, "required": ["name", "version"],
                               "properties": {"name": _STRING, "version": _nullable("integer")}},
                "verified_at": {"type": ["string", "null"], "format": "date-time"},
            },
        }},
    },
}


# -- PDF ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PdfSection:
    """A heading, paragraphs and an optional table (header row plus rows of plain-text cells) in a PDF."""

    heading: str
    paragraphs: tuple[str, ...] = ()
    header: tuple[str, ...] = ()
    rows: Sequence[Sequence[str]] = ()
    widths: tuple[float, ...] = ()  # relative column widths
    bars: tuple[tuple[str, int, int], ...] = ()  # (label, value, total): a horizontal bar chart


@dataclass(frozen=True, slots=True)
class PdfDocument:
    title: str
    subtitle: str = ""
    sections: tuple[PdfSection, ...] = field(default_factory=tuple)


def pdf_document(document: PdfDocument) -> bytes:
    """Draw ``document`` as a landscape A4 PDF and return its bytes.

    Text is drawn as plain text with a core font (Latin-1): characters outside it become ``?``, so evidence
    text can neither inject markup nor break the encoding. Long cells are cut to :data:`MAX_PDF_CELL` characters.
    """
    from fpdf import FPDF  # imported here: only PDF exports pay for it
    from fpdf.enums import XPos, YPos

    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.set_title(_latin1(document.title))
    pdf.set_creator("Provenance")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _latin1(document.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if document.subtitle:
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(0, 5, _latin1(document.subtitle), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for section in document.sections:
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, _latin1(section.heading), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("Helvetica", "", 9)
        for paragraph in section.paragraphs:
            pdf.multi_cell(0, 5, _latin1(paragraph), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if section.bars:
            _bars(pdf, section.bars)
        if section.header:
            widths = section.widths or tuple(1.0 for _ in section.header)
            with pdf.table(col_widths=widths, text_align="LEFT", line_height=4,
                           headings_style=_headings_style()) as table:
                heading = table.row()
                for name in section.header:
                    heading.cell(_latin1(name))
                for values in section.rows:
                    cells = table.row()
                    for value in values:
                        cells.cell(_latin1(_bounded(value, MAX_PDF_CELL)))
    return bytes(pdf.output())


def _headings_style() -> Any:
    from fpdf.fonts import FontFace

    return FontFace(emphasis="BOLD", fill_color=(225, 230, 240))


def _bars(pdf: Any, bars: tuple[tuple[str, int, int], ...]) -> None:
    """A horizontal bar per (label, value, total), drawn with rectangles: the coverage chart."""
    from fpdf.enums import XPos, YPos

    width = 150.0
    for label, value, total in bars:
        share = value / total if total else 0.0
        y = pdf.get_y()
        pdf.set_xy(pdf.l_margin, y)
        pdf.cell(55, 6, _latin1(label))
        pdf.set_fill_color(235, 235, 235)
        pdf.rect(pdf.l_margin + 55, y + 1, width, 4, style="F")
        pdf.set_fill_color(40, 120, 70)
        if share > 0:
            pdf.rect(pdf.l_margin + 55, y + 1, width * share, 4, style="F")
        pdf.set_xy(pdf.l_margin + 60 + width, y)
        pdf.cell(40, 6, f"{value} / {total} ({share:.0%})", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


# -- evidence packs ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackItem:
    """One piece of evidence in a pack, and how to re-verify it offline.

    ``files`` maps a role (``payload``, ``signature``, ``certificate``, ``bundle``, ``envelope``, ...) to the
    file's path inside the pack. ``key`` is a public key file in the pack (key-based signatures), ``trust_root``
    the trusted_root.json and ``trust_config`` the sigstore client trust configuration; ``identity`` and
    ``issuer`` what the signer's certificate must name.
    """

    title: str
    format: str  # cosign-sig, cosign-att, sigstore-bundle, vsa, notation, ...
    subject_digest: str
    files: dict[str, str]
    outcome: str = ""
    predicate_type: str = ""
    key: str = ""
    trust_root: str = ""
    trust_config: str = ""
    rekor_key: str = ""
    identity: str = ""
    issuer: str = ""
    is_logged: bool = True


def manifest_lines(digests: Iterable[tuple[str, str]]) -> str:
    """``sha256sum`` format (``<hex>  <path>``) for (path, hex) pairs: ``sha256sum -c MANIFEST.sha256`` checks it."""
    return "".join(f"{hex_digest}  {path}\n" for path, hex_digest in sorted(digests))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def item_commands(item: PackItem) -> list[str]:
    """The shell commands that re-verify ``item`` offline, run from the pack's top directory (values quoted)."""
    q = shlex.quote
    f = item.files
    identity = (f"--certificate-identity {q(item.identity)} --certificate-oidc-issuer {q(item.issuer)}"
                if item.identity else "")
    commands: list[str] = []
    if item.format == "cosign-sig" and "payload" in f and "signature" in f:
        if item.key:
            if item.is_logged and "cosign_bundle" in f and item.rekor_key:
                commands.append(f"SIGSTORE_REKOR_PUBLIC_KEY={q(item.rekor_key)} cosign verify-blob --key {q(item.key)}"
                                f" --bundle {q(f['cosign_bundle'])} --offline {q(f['payload'])}")
            commands.append(f"cosign verify-blob --key {q(item.key)} --signature {q(f['signature'])} "
                            f"--insecure-ignore-tlog {q(f['payload'])}   # the signature alone, no log entry")
        elif "certificate" in f and item.trust_root:
            bundle = f" --bundle {q(f['cosign_bundle'])}" if "cosign_bundle" in f else ""
            commands.append(f"cosign verify-blob --trusted-root {q(item.trust_root)} --certificate "
                            f"{q(f['certificate'])} --signature {q(f['signature'])}{bundle} {identity} "
                            f"--offline {q(f['payload'])}")
        commands.append(f"jq -r '.critical.image.\"docker-manifest-digest\"' {q(f['payload'])}   "
                        f"# must print {item.subject_digest}")
    elif item.format in {"cosign-att", "vsa"} and "envelope" in f:
        if item.key:
            commands.append(f"cosign verify-blob-attestation --key {q(item.key)} --signature {q(f['envelope'])} "
                            f"--type {q(item.predicate_type)} --insecure-ignore-tlog --check-claims=false")
        elif "certificate" in f and item.trust_root:
            commands.append(f"cosign verify-blob-attestation --trusted-root {q(item.trust_root)} --certificate "
                            f"{q(f['certificate'])} --signature {q(f['envelope'])} --type {q(item.predicate_type)} "
                            f"{identity} --check-claims=false --offline")
        commands.append(f"jq -r '.payload' {q(f['envelope'])} | base64 -d | jq '.subject'   "
                        f"# must name {item.subject_digest}")
    elif item.format == "sigstore-bundle" and "bundle" in f:
        if item.trust_config and item.identity:
            commands.append(f"sigstore --trust-config {q(item.trust_config)} verify identity --offline --bundle "
                            f"{q(f['bundle'])} --cert-identity {q(item.identity)} --cert-oidc-issuer "
                            f"{q(item.issuer)} {q(item.subject_digest)}")
        if item.trust_root and item.identity:
            commands.append(f"cosign verify-blob-attestation --new-bundle-format --trusted-root {q(item.trust_root)} "
                            f"--bundle {q(f['bundle'])} {identity} --check-claims=false --offline"
                            if item.predicate_type else
                            f"cosign verify-blob --new-bundle-format --trusted-root {q(item.trust_root)} --bundle "
                            f"{q(f['bundle'])} {identity} --offline {q(item.subject_digest)}")
        if item.key:
            commands.append(f"cosign verify-blob-attestation --new-bundle-format --key {q(item.key)} --bundle "
                            f"{q(f['bundle'])} --check-claims=false --offline")
    return [" ".join(c.split(" " * 2)) if "#" not in c else c for c in commands]  # an empty identity leaves two


def pack_readme(*, title: str, generated_at: dt.datetime, items: Sequence[PackItem], signing_key: str) -> str:
    """The pack's README.md: what is in it, how to check the manifest, and per item the offline commands."""
    lines = [
        f"# {_md(title)}", "",
        f"Generated {_iso(generated_at)} by Provenance. Everything was fetched from the registry by Provenance and "
        "is kept here byte for byte (`payload` files); the other files of an item are derived from it "
        "(annotations, the signature, certificate and log bundle they hold) so tools can read them.", "",
        "## 1. Check the manifest", "",
        "```sh", "sha256sum -c MANIFEST.sha256", "```", "",
        "`manifest.json` lists the same digests with each file's role.", "",
        "## 2. Trust material", "",
        "- `trust/roots/`: every Sigstore `trusted_root.json` (with its version) the verdicts used, and a sigstore "
        "client trust configuration (`*.trust-config.json`) for `sigstore --trust-config`.",
        "- `trust/keys/`: every public key (name and version) key-based signatures were checked with.",
        f"- `{signing_key}`: the public key of this dashboard's signing key; the verification summaries (VSAs) "
        "are signed with it.", "",
        "## 3. Re-verify each item offline", "",
        "Run from this directory with cosign 2.4 or later and sigstore-python 3 or later (`pip install sigstore`). "
        "No network access is needed.", "",
    ]
    for number, item in enumerate(items, start=1):
        lines.append(f"### 3.{number} {_md(item.title)}")
        lines.append("")
        lines.append(f"- format: `{_md(item.format)}`; covers `{_md(item.subject_digest)}`; Provenance's verdict: "
                     f"**{_md(item.outcome or 'n/a')}**")
        if item.predicate_type:
            lines.append(f"- predicate type: `{_md(item.predicate_type)}`")
        for role, path in sorted(item.files.items()):
            lines.append(f"- {role}: `{_md(path)}`")
        commands = item_commands(item)
        lines.append("")
        if commands:
            lines.extend(["```sh", *commands, "```"])
        else:
            lines.append("No offline command: this kind of evidence is recorded, not verifiable with cosign or "
                         "sigstore (see its checks in `checks.json`).")
        lines.append("")
    return "\n".join(lines)


def _md(text: str) -> str:
    """Text for the README: one line, no backticks (it is shown inside code spans)."""
    return _bounded(" ".join(text.split()).replace("`", "'"), 500)


# -- helpers -----------------------------------------------------------------------------------------------------


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment is not None else None


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
