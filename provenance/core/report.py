"""One image checked now, nothing stored: discovery, verification, a verdict per manifest, and the report.

:func:`check_image` is what ``provenance verify`` runs (no database, no settings); :func:`as_report` gives the
stable JSON report, the same shape ``manage.py verify-image --json`` prints for what it stored::

    {"reference", "digest", "verified", "signatures": [...], "attestations": [...], "platforms": [...]}

and :func:`render_text` the readable form of either. Everything in a report came from a registry: the text form
escapes control characters so that evidence cannot rewrite the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provenance.core import discovery as core_discovery
from provenance.core import verify
from provenance.core.discovery import Discovery
from provenance.core.oci import Registry
from provenance.core.trustroot import TrustRoot
from provenance.core.types import Digest, IdentityPolicy, Kind

__all__ = ["ImageCheck", "as_report", "check_image", "render_text"]


@dataclass(frozen=True, slots=True)
class ImageCheck:
    """Everything found about one image and how each piece verified."""

    reference: str
    discovery: Discovery
    results: tuple[verify.Verified, ...]

    @property
    def digest(self) -> Digest:
        return self.discovery.root.digest

    def verdict(self, digest: Digest | None = None) -> verify.Verdict:
        """The verdict of the image (or of one of its platform manifests, by digest)."""
        return verify.judge_node(self.discovery, list(self.results), digest or self.digest)

    @property
    def is_verified(self) -> bool:
        """True iff at least one signature over the image's own digest verified under the given trust."""
        return self.verdict().status == "verified"


def check_image(
    registry: Registry,
    repository: str,
    reference: str | Digest,
    *,
    label: str,
    trust_root: TrustRoot,
    identity: IdentityPolicy | None,
    public_keys: tuple[bytes, ...] = (),
    require_tlog: bool = True,
    signature_repository: str | None = None,
    signature_registry: Registry | None = None,
) -> ImageCheck:
    """Discover and verify everything about ``repository`` at ``reference`` (a tag or a digest).

    ``label`` is the reference as the user wrote it, for the report. Bad evidence never raises (it is a failed
    result); raises :class:`ProvenanceError` subclasses when the image itself cannot be fetched.
    """
    found = core_discovery.discover(registry, repository, reference, signature_repository=signature_repository,
                                    signature_registry=signature_registry)
    results = verify.verify_discovery(found, trust_root=trust_root, identity=identity, public_keys=public_keys,
                                      require_tlog=require_tlog)
    return ImageCheck(label, found, tuple(results))


def as_report(check: ImageCheck) -> dict[str, Any]:
    """Return the stable JSON report of a check (see the module docstring); a signature's or attestation's
    ``digest`` is the digest it covers, ``reasons`` its failed checks with their fix hints."""
    ordered = sorted(
        check.results,
        key=lambda v: (str(v.evidence.level), str(v.evidence.kind), v.evidence.location, str(v.evidence.digest)),
    )
    platforms = sorted(check.discovery.root.children, key=lambda node: (node.platform, str(node.digest)))
    return {
        "reference": check.reference,
        "digest": str(check.digest),
        "verified": check.is_verified,
        "signatures": [
            {
                "format": str(v.evidence.format),
                "digest": str(v.evidence.covers),
                "level": str(v.evidence.level),
                "verified": v.result.is_verified,
                "identity": v.result.identity,
                "issuer": v.result.issuer,
                "key": v.result.key,
                "tlog": v.result.tlog,
                "reasons": _reasons(v),
            }
            for v in ordered
            if v.evidence.kind == Kind.SIGNATURE
        ],
        "attestations": [
            {
                "predicate_type": v.evidence.predicate_type or str((v.statement or {}).get("predicateType", "")),
                "format": str(v.evidence.format),
                "digest": str(v.evidence.covers),
                "verified": v.result.is_verified,
                "reasons": _reasons(v),
            }
            for v in ordered
            if v.evidence.kind == Kind.ATTESTATION
        ],
        "platforms": [
            {"digest": str(node.digest), "platform": node.platform,
             "verified": check.verdict(node.digest).status == "verified"}
            for node in platforms
        ],
    }


def _reasons(item: verify.Verified) -> list[dict[str, str]]:
    return [
        {"stage": str(c.stage), "code": c.code, "message": c.message, "hint": c.hint} for c in item.result.failures
    ]


def _safe(value: object) -> str:
    """``value`` as one line of printable text: control characters (escape sequences, newlines) are escaped."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def render_text(data: dict[str, Any]) -> str:
    """Return a report (from :func:`as_report` or ``verify-image``) as readable text: the verdict, each signature
    and attestation with ``ok``/``BAD``, and under each failure its stage, code, message and fix hint."""
    verdict = "VERIFIED" if data["verified"] else "NOT VERIFIED"
    lines = [_safe(data["reference"]), f"  digest: {_safe(data['digest'])}", f"  verdict: {verdict}"]
    for kind, items in (("signature", data["signatures"]), ("attestation", data["attestations"])):
        for item in items:
            mark = "ok " if item["verified"] else "BAD"
            what = item.get("predicate_type") or item.get("identity") or item.get("key") or ""
            where = item.get("level", "")
            lines.append(_safe(f"  [{mark}] {kind} {item['format']} {where} {item['digest']} {what}".rstrip()))
            if item.get("tlog"):
                lines.append(f"        transparency log: {_safe(item['tlog'])}")
            for reason in item["reasons"]:
                lines.append(f"        {_safe(reason['stage'])}/{_safe(reason['code'])}: {_safe(reason['message'])}")
                if reason["hint"]:
                    lines.append(f"          hint: {_safe(reason['hint'])}")
    if not data["signatures"]:
        lines.append("  no signatures found")
    for platform in data["platforms"]:
        mark = "ok " if platform["verified"] else "-- "
        lines.append(_safe(f"  [{mark}] platform {platform['platform'] or '?'} {platform['digest']}"))
    return "\n".join(lines)
