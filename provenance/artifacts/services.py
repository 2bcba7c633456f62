"""Store what discovery found and what verification concluded, per artifact; and where tags pointed."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F, Q
from django.http import Http404
from django.utils import timezone

from provenance.artifacts import signals
from provenance.artifacts.models import Artifact, Evidence, Tag, TagEvent
from provenance.core import discovery as core_discovery
from provenance.core import verify
from provenance.core.discovery import Discovery, Level, ManifestNode
from provenance.core.errors import MalformedEvidenceError, ProvenanceError
from provenance.core.oci import Registry
from provenance.core.policy import cryptographically_valid
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
    require_tlog: bool = True,
    signature_repository: str | None = None,
    signature_registry: Registry | None = None,
) -> Artifact:
    """Discover, verify and store everything about one image; returns the top-level artifact.

    Raises ProvenanceError subclasses when the image itself cannot be fetched (nothing is stored then).
    """
    found = core_discovery.discover(registry, repository, reference, signature_repository=signature_repository,
                                    signature_registry=signature_registry)
    results = verify_discovery(found, trust_root=trust_root, identity=identity, public_keys=public_keys,
                               require_tlog=require_tlog)
    tag = None if reference.startswith("sha") and ":" in reference else reference
    artifact = store_discovery(source, repository, found, results)
    if tag:
        record_tag(source, repository, tag, found.root.digest)
    return artifact


def verify_discovery(
    found: Discovery, *, trust_root: TrustRoot, identity: IdentityPolicy | None, public_keys: tuple[bytes, ...] = (),
    require_tlog: bool = True,
) -> list[verify.Verified]:
    """Verify every piece of found evidence (no database access: safe on worker threads).

    ``require_tlog=False`` is the insecure opt-in for key-based evidence that was never logged."""
    return verify.verify_discovery(found, trust_root=trust_root, identity=identity, public_keys=public_keys,
                                   require_tlog=require_tlog)


@dataclass(frozen=True, slots=True)
class Found:
    """One image's discovery and verification results, to store."""

    repository: str
    discovery: Discovery
    results: list[verify.Verified]
    fingerprint: str = ""


@transaction.atomic
def store_discovery(source: Source, repository: str, found: Discovery, results: list[verify.Verified], *,
                    fingerprint: str = "") -> Artifact:
    """Store the artifacts (index and platforms), their evidence and verdicts; idempotent per digest."""
    [root_id] = store_discoveries(source, [Found(repository, found, results, fingerprint)])
    return Artifact.objects.get(pk=root_id)


_ARTIFACT_FIELDS = ["media_type", "parent", "platform", "evidence_fingerprint", "status", "status_code",
                    "status_reason", "checked_at"]
_EVIDENCE_FIELDS = ["digest", "format", "location", "covers_digest", "level", "predicate_type", "outcome", "valid",
                    "identity",
                    "issuer", "key", "tlog", "integrated_time", "checks", "statement", "payload", "annotations",
                    "media_type", "verified_at"]


@transaction.atomic
def store_discoveries(source: Source, items: list[Found]) -> list[int]:
    """Store many images at once (a scan's batch): the artifacts (index and platforms) with their verdicts as
    upserts, their evidence as upserts, and evidence no longer in the registry deleted. A constant number of
    statements per batch; safe against another worker storing the same digest at the same time (the upserts
    meet on the unique keys). Returns the root artifacts' ids, in the order of ``items``."""
    if not items:
        return []
    now = timezone.now()

    def node_row(item: Found, node: ManifestNode, parent_id: int | None) -> Artifact:
        verdict = verify.judge_node(item.discovery, item.results, node.digest)
        # Only the root's fingerprint covers the whole tree; children are re-checked through it.
        return Artifact(source=source, repository=item.repository, digest=str(node.digest), media_type=node.media_type,
                        parent_id=parent_id, platform=node.platform,
                        evidence_fingerprint=item.fingerprint if parent_id is None else "",
                        status=verdict.status, status_code=verdict.code, status_reason=verdict.reason,
                        checked_at=now)

    roots = _upsert_artifacts([node_row(item, item.discovery.root, None) for item in items])
    ids = {(a.repository, a.digest): a.pk for a in roots}
    children = _upsert_artifacts([node_row(item, child, ids[(item.repository, str(item.discovery.root.digest))])
                                  for item in items for child in item.discovery.root.children])
    nodes = {**ids, **{(a.repository, a.digest): a.pk for a in children}}
    evidence = []
    for item in items:
        for result in item.results:
            artifact_id = nodes.get((item.repository, str(result.evidence.covers)))
            if artifact_id is not None:
                evidence.append(_evidence_row(artifact_id, result))
    # One row per key: an upsert may not meet the same row twice (a platform manifest shared by two indexes).
    evidence = list({(e.artifact_id, e.kind, e.evidence_key): e for e in evidence}.values())
    kept = Evidence.objects.bulk_create(evidence, batch_size=500, update_conflicts=True,
                                        unique_fields=["artifact", "kind", "evidence_key"],
                                        update_fields=_EVIDENCE_FIELDS) if evidence else []
    if kept:
        signals.evidence_stored.send(sender=Evidence, rows=kept)
    # Evidence that is no longer in the registry is no longer evidence.
    Evidence.objects.filter(artifact_id__in=list(nodes.values())).exclude(pk__in=[e.pk for e in kept]).delete()
    return [ids[(item.repository, str(item.discovery.root.digest))] for item in items]


def _upsert_artifacts(rows: list[Artifact]) -> list[Artifact]:
    """Insert or update by (source, repository, digest); one row per key (the last one given wins, as a later
    store would), with its id set."""
    unique = list({(a.repository, a.digest): a for a in rows}.values())
    if not unique:
        return []
    return Artifact.objects.bulk_create(unique, batch_size=500, update_conflicts=True,
                                        unique_fields=["source", "repository", "digest"],
                                        update_fields=_ARTIFACT_FIELDS)


def evidence_key(digest: str, annotations: dict[str, str]) -> str:
    """What tells two pieces of evidence apart: the layer digest and its annotations (signature, certificate)."""
    canonical = json.dumps({"digest": digest, "annotations": annotations}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def store_evidence(artifact: Artifact, item: verify.Verified) -> Evidence:
    """Store (or update) one piece of evidence of ``artifact``."""
    row = _evidence_row(artifact.pk, item)
    [stored] = Evidence.objects.bulk_create([row], update_conflicts=True,
                                            unique_fields=["artifact", "kind", "evidence_key"],
                                            update_fields=_EVIDENCE_FIELDS)
    if stored.pk is None:  # a database that does not return ids from an upsert
        stored = Evidence.objects.get(artifact_id=row.artifact_id, kind=row.kind, evidence_key=row.evidence_key)
    signals.evidence_stored.send(sender=Evidence, rows=[stored])
    return stored


def _evidence_row(artifact_id: int, item: verify.Verified) -> Evidence:
    found, result = item.evidence, item.result
    statement = item.statement
    if statement is not None and len(repr(statement)) > MAX_STATEMENT_CHARS:
        statement = {"_truncated": True}
    integrated = (
        dt.datetime.fromtimestamp(result.integrated_time, tz=dt.UTC) if result.integrated_time is not None else None
    )
    return Evidence(
        artifact_id=artifact_id,
        kind=found.kind,
        evidence_key=evidence_key(str(found.digest), found.layer.annotations if found.layer else {}),
        digest=str(found.digest),
        format=found.format,
        location=found.location[:300],
        covers_digest=str(found.covers),
        level=found.level,
        predicate_type=found.predicate_type[:300],
        outcome=str(result.outcome),
        valid=cryptographically_valid(str(result.outcome), (str(c.stage) for c in result.checks if not c.ok)),
        identity=result.identity[:500],
        issuer=result.issuer[:500],
        key=result.key[:200],
        tlog=result.tlog,
        integrated_time=integrated,
        checks=[c.as_dict() for c in result.checks],
        statement=statement,
        payload=found.layer.payload if found.layer else b"",
        annotations=found.layer.annotations if found.layer else {},
        media_type=found.layer.media_type[:200] if found.layer else "",
        verified_at=timezone.now(),
    )


def _by_repository(places: list[tuple[str, Digest]]) -> dict[str, list[str]]:
    """``(repository, digest)`` places as ``{repository: [digest, ...]}``, for one query per repository."""
    grouped: dict[str, list[str]] = {}
    for repository, digest in places:
        grouped.setdefault(repository, []).append(str(digest))
    return grouped


def stored_trees(source: Source, places: list[tuple[str, Digest]]
                 ) -> dict[tuple[str, str], tuple[Artifact, list[tuple[Digest, str]]]]:
    """The stored root artifacts for ``places`` ((repository, digest) pairs) and their ``(digest, level)`` nodes,
    for a cheap re-check; two queries per repository however many places."""
    found: dict[tuple[str, str], tuple[Artifact, list[tuple[Digest, str]]]] = {}
    for repository, digests in _by_repository(places).items():
        roots = {a.pk: a for a in Artifact.objects.filter(source=source, repository=repository, digest__in=digests,
                                                           parent__isnull=True)}
        children: dict[int, list[tuple[Digest, str]]] = {}
        for parent_id, digest in (Artifact.objects.filter(parent_id__in=list(roots)).order_by("pk")
                                  .values_list("parent_id", "digest")):
            children.setdefault(parent_id, []).append((Digest.parse(digest), Level.PLATFORM))
        for pk, artifact in roots.items():
            level = Level.INDEX if artifact.is_index else Level.IMAGE
            found[(repository, artifact.digest)] = (
                artifact, [(Digest.parse(artifact.digest), level), *children.get(pk, [])])
    return found


def tree_ids(source: Source, places: list[tuple[str, Digest]]) -> list[int]:
    """The ids of the stored artifacts at ``places`` and of their platform children."""
    ids: list[int] = []
    for repository, digests in _by_repository(places).items():
        roots = list(Artifact.objects.filter(source=source, repository=repository, digest__in=digests,
                                             parent__isnull=True).values_list("pk", flat=True))
        ids += roots + list(Artifact.objects.filter(parent_id__in=roots).values_list("pk", flat=True))
    return ids


def unevaluated(source: Source, places: list[tuple[str, Digest]]) -> list[int]:
    """The stored images at ``places`` whose verdict is older than their evidence (or missing): stored by a
    worker that was stopped before it evaluated them. A constant number of queries per repository."""
    ids: list[int] = []
    for repository, digests in _by_repository(places).items():
        ids += Artifact.objects.filter(
            Q(trust__isnull=True) | Q(trust__evaluated_at__isnull=True) | Q(trust__evaluated_at__lt=F("checked_at")),
            source=source, repository=repository, digest__in=digests, parent__isnull=True,
        ).values_list("pk", flat=True)
    return ids


def forget_fingerprint(source: Source, repository: str, digest: Digest) -> None:
    """Make the next scan look at ``digest`` again (after a failure)."""
    Artifact.objects.filter(source=source, repository=repository, digest=str(digest)).update(evidence_fingerprint="")


# --------------------------------------------------------------------------------------------------------------
# Tags and their history


def current_tags(source: Source, repository: str, tags: Sequence[str] | None = None) -> dict[str, str]:
    """``{tag: digest}`` as last seen (tags last seen gone are left out); only ``tags`` when given."""
    latest: dict[str, str] = {}
    events = TagEvent.objects.filter(source=source, repository=repository).order_by("tag", "-seen_at", "-pk")
    if tags is not None:
        events = events.filter(tag__in=list(tags))
    for tag, digest in events.values_list("tag", "digest"):
        latest.setdefault(tag, digest)
    return {tag: digest for tag, digest in latest.items() if digest}


@dataclass(frozen=True, slots=True)
class TagChanges:
    """What :func:`record_tags` changed: the new history events, and the artifacts whose tags (so whose names,
    which policies match) are not what they were."""

    events: list[TagEvent] = field(default_factory=list)
    artifacts: frozenset[int] = frozenset()


@transaction.atomic
def record_tags(source: Source, repository: str, pointing: dict[str, Digest]) -> TagChanges:
    """Record where each tag points now, for a batch of tags: a history event for each one that moved or is new,
    and each tag attached to its digest's stored artifact (and detached from any other). A constant number of
    queries per batch, whatever the repository's size."""
    if not pointing:
        return TagChanges()
    names = list(pointing)
    latest: dict[str, str] = {}
    history = (TagEvent.objects.filter(source=source, repository=repository, tag__in=names)
               .order_by("tag", "-seen_at", "-pk").values_list("tag", "digest"))
    for tag, digest in history:
        latest.setdefault(tag, digest)
    events = TagEvent.objects.bulk_create(
        TagEvent(source=source, repository=repository, tag=tag, digest=str(digest),
                 previous_digest=latest.get(tag, ""))
        for tag, digest in pointing.items() if latest.get(tag) != str(digest))
    artifacts = dict(Artifact.objects.filter(source=source, repository=repository, parent__isnull=True,
                                             digest__in={str(d) for d in pointing.values()})
                     .values_list("digest", "pk"))
    wanted = {(artifacts[str(digest)], tag) for tag, digest in pointing.items() if str(digest) in artifacts}
    current = set(Tag.objects.filter(artifact__source=source, artifact__repository=repository, name__in=names)
                  .values_list("artifact_id", "name"))
    stale = current - wanted  # tags that moved away from the artifact they were on
    if stale:
        Tag.objects.filter(functools.reduce(operator.or_, (Q(artifact_id=a, name=n) for a, n in stale))).delete()
    Tag.objects.filter(artifact_id__in={a for a, _ in wanted & current}, name__in=names).update(
        last_seen=timezone.now())
    Tag.objects.bulk_create([Tag(artifact_id=a, name=n) for a, n in wanted - current], ignore_conflicts=True)
    return TagChanges(events, frozenset(a for a, _ in stale | (wanted - current)))


def record_tag(source: Source, repository: str, tag: str, digest: Digest) -> TagEvent | None:
    """Record that ``tag`` points at ``digest`` now (see :func:`record_tags`); the new event, or None."""
    events = record_tags(source, repository, {tag: digest}).events
    return events[0] if events else None


@transaction.atomic
def record_tags_gone(source: Source, repository: str, tags: Sequence[str]) -> list[int]:
    """Record that ``tags`` no longer exist; returns the ids of the artifacts they were taken from."""
    known = current_tags(source, repository, tags)
    gone = [t for t in tags if t in known]
    TagEvent.objects.bulk_create(TagEvent(source=source, repository=repository, tag=tag, digest="",
                                          previous_digest=known[tag]) for tag in gone)
    removed = Tag.objects.filter(artifact__source=source, artifact__repository=repository, name__in=gone)
    ids = sorted(set(removed.values_list("artifact_id", flat=True)))
    removed.delete()
    return ids


# --------------------------------------------------------------------------------------------------------------
# Lookups: an artifact is a place (source, repository, digest); a digest alone may name several places.


class DigestInSeveralPlacesError(ProvenanceError):
    """A digest alone was asked for, but it sits in several places: the caller must say which one."""

    code = "digest_in_several_places"

    def __init__(self, digest: str, places: list[Artifact]) -> None:
        names = ", ".join(place_name(a) for a in places[:10])
        super().__init__(f"{digest} is found in {len(places)} places ({names}): ask for one by its id")
        self.places = places


def parse_digest(digest: str) -> str:
    """``digest`` when well formed; Http404 otherwise (pages and the API both answer 404)."""
    try:
        return str(Digest.parse(digest))
    except MalformedEvidenceError as err:
        raise Http404(err.message) from err


def place_name(artifact: Artifact) -> str:
    """``registry/repository@digest`` (the source is selected with the artifact by every lookup here)."""
    return f"{artifact.full_name}@{artifact.digest}"


def find_place(pk: int) -> Artifact:
    """The artifact (one place) with this id; Http404 when there is none."""
    artifact = (Artifact.objects.select_related("source", "trust", "parent").filter(pk=pk).first())
    if artifact is None:
        raise Http404("no artifact with this id")
    return artifact


def find_places(digest: str) -> list[Artifact]:
    """Every place this digest is found (the same image pushed to several repositories or sources), by name.

    Raises Http404 for a malformed digest or when no place has it."""
    places = list(Artifact.objects.filter(digest=parse_digest(digest)).select_related("source", "trust", "parent")
                  .prefetch_related("tags").order_by("repository", "source__name", "pk")[:MAX_PLACES])
    if not places:
        raise Http404("no artifact with this digest")
    return places


MAX_PLACES = 200


def other_places(artifact: Artifact, limit: int = 50) -> list[Artifact]:
    """The other places ``artifact``'s digest is found ("also in …"), each with its own verdict."""
    return list(Artifact.objects.filter(digest=artifact.digest).exclude(pk=artifact.pk)
                .select_related("source", "trust").order_by("repository", "source__name", "pk")[:limit])


def find_artifact(digest: str, *, place: int | str | None = None) -> Artifact:
    """The one artifact with this digest: the only place it sits in, or the place with id ``place`` (which must
    have this digest). Never "whichever was checked last".

    Raises Http404 (malformed digest, no such place) or DigestInSeveralPlacesError when ``place`` is not given
    and the digest sits in several places.
    """
    if place not in (None, ""):
        try:
            artifact = find_place(int(place))  # type: ignore[arg-type]
        except (TypeError, ValueError) as err:
            raise Http404("the place is an artifact id") from err
        if artifact.digest != parse_digest(digest):
            raise Http404("that artifact does not have this digest")
        return artifact
    places = find_places(digest)
    if len(places) > 1:
        raise DigestInSeveralPlacesError(digest, places)
    return places[0]

