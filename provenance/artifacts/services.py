"""Store what discovery found and what verification concluded, per artifact."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from provenance.artifacts.models import Artifact, Evidence, Tag
from provenance.core import discovery as core_discovery
from provenance.core import verification
from provenance.core.discovery import Discovery, ManifestNode
from provenance.core.oci import Registry
from provenance.core.trustroot import TrustRoot
from provenance.core.types import Digest, IdentityPolicy

if TYPE_CHECKING:
    from provenance.sources.models import Source

MAX_STATEMENT_CHARS = 512 * 1024


def ingest_image(
    *,
    source: Source,
    registry: Registry,
    repository: str,
    reference: str,
    trust_root: TrustRoot,
    identity: IdentityPolicy | None,
    public_keys: tuple[bytes, ...] = (),
) -> Artifact:
    """Discover, verify and store everything about one image; returns the top-level artifact.

    Raises ProvenanceError subclasses when the image itself cannot be fetched (nothing is stored then).
    """
    found = core_discovery.discover(registry, repository, reference)
    results = [
        verification.verify_evidence(e, trust_root=trust_root, identity=identity, public_keys=public_keys)
        for e in found.evidence
    ]
    tag = None if reference.startswith("sha") and ":" in reference else reference
    return _store(source, repository, tag, found, results)


@transaction.atomic
def _store(source: Source, repository: str, tag: str | None, found: Discovery,
           results: list[verification.Verified]) -> Artifact:
    root = _store_node(source, repository, found.root, None, results, found)
    for child in found.root.children:
        _store_node(source, repository, child, root, results, found)
    if tag:
        Tag.objects.update_or_create(artifact=root, name=tag)
    return root


def _store_node(source: Source, repository: str, node: ManifestNode, parent: Artifact | None,
                results: list[verification.Verified], found: Discovery) -> Artifact:
    artifact, _ = Artifact.objects.update_or_create(
        source=source,
        repository=repository,
        digest=str(node.digest),
        defaults={"media_type": node.media_type, "parent": parent, "platform": node.platform},
    )
    mine = [v for v in results if v.evidence.covers == node.digest]
    kept: list[int] = []
    for item in mine:
        row = _store_evidence(artifact, item)
        kept.append(row.pk)
    # Evidence that is no longer in the registry is no longer evidence.
    artifact.evidence.exclude(pk__in=kept).delete()
    signatures = [v.result for v in mine if v.evidence.kind == "signature"]
    verdict = verification.judge(signatures, looked_at=f"{repository}:{node.digest.tag_prefix}.sig")
    artifact.status = verdict.status
    artifact.status_code = verdict.code
    artifact.status_reason = verdict.reason
    artifact.checked_at = timezone.now()
    artifact.save(update_fields=["status", "status_code", "status_reason", "checked_at"])
    return artifact


def _store_evidence(artifact: Artifact, item: verification.Verified) -> Evidence:
    found, result = item.evidence, item.result
    statement = item.statement
    if statement is not None and len(repr(statement)) > MAX_STATEMENT_CHARS:
        statement = {"_truncated": True}
    integrated = (
        dt.datetime.fromtimestamp(result.integrated_time, tz=dt.UTC) if result.integrated_time is not None else None
    )
    row, _ = Evidence.objects.update_or_create(
        artifact=artifact,
        kind=found.kind,
        digest=str(found.digest),
        defaults={
            "format": found.format,
            "location": found.location[:300],
            "covers_digest": str(found.covers),
            "level": found.level,
            "predicate_type": found.predicate_type[:300],
            "outcome": str(result.outcome),
            "identity": result.identity[:500],
            "issuer": result.issuer[:500],
            "key": result.key[:200],
            "tlog": result.tlog,
            "integrated_time": integrated,
            "checks": [c.as_dict() for c in result.checks],
            "statement": statement,
            "payload": found.layer.payload if found.layer else b"",
            "annotations": found.layer.annotations if found.layer else {},
            "media_type": found.layer.media_type[:200] if found.layer else "",
        },
    )
    return row


def find_artifact(digest: str) -> Artifact | None:
    """The most recently checked artifact with this digest (the same digest may sit in several sources)."""
    Digest.parse(digest)
    return Artifact.objects.filter(digest=digest).order_by("-checked_at", "-pk").first()
