"""Fleet drift, noticed after every scan from what is stored (tag history, evidence, trust history): a tag that moved,
a signature or attestation gone, a new signer, a verdict that flipped, a trust root about to expire. Each is an
event whether or not a policy covers the image.

Connected to ``sources.signals.scan_finished``, which is sent once a scan's results are committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from provenance.artifacts.models import Artifact, Evidence, TagEvent
from provenance.artifacts.signals import evidence_stored
from provenance.core.trustroot import TrustRoot as CoreTrustRoot
from provenance.monitor.models import Event, EvidenceSeen
from provenance.monitor.services import emit, index_evidence
from provenance.policies.models import TrustEvent
from provenance.sources.models import Scan, Source
from provenance.sources.signals import scan_finished

log = logging.getLogger(__name__)

_BAD = {"untrusted", "unsigned", "error"}


@receiver(scan_finished, sender=Scan, dispatch_uid="monitor-drift")
def on_scan_finished(sender: type[Scan], scan: Scan, **kwargs: Any) -> None:
    if scan.state != Scan.State.DONE:
        return
    since = _since(scan)
    source = scan.source
    tag_drift(source, since)
    evidence_drift(source, scan, since)
    verdict_drift(source, since)
    trust_root_expiry(source.trust_root)


def _since(scan: Scan) -> dt.datetime:
    """Where this scan's drift starts: where the source's previous finished scan left off, so that what a scan
    that died stored (it raised no drift) is not lost to the next one, which finds it unchanged. A source's first
    finished scan looks at everything stored for it."""
    start = scan.started_at or scan.created_at
    previous = (Scan.objects.filter(source_id=scan.source_id, state=Scan.State.DONE, finished_at__lt=start)
                .exclude(pk=scan.pk).order_by("-finished_at").values_list("finished_at", flat=True).first())
    if previous is None:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return min(start, previous)


def _policies(artifact: Artifact) -> list[str]:
    trust = getattr(artifact, "trust", None)
    details = trust.details if trust is not None else {}
    results = (details or {}).get("policies", ())
    return [str(p["policy"]) for p in results if isinstance(p, dict) and p.get("policy")]


def tag_drift(source: Source, since: dt.datetime) -> int:
    """A tag now names another digest than before."""
    count = 0
    moved = TagEvent.objects.filter(source=source, seen_at__gte=since).exclude(previous_digest="").exclude(digest="")
    for event in moved:
        artifact = Artifact.objects.filter(source=source, repository=event.repository, digest=event.digest).first()
        count += emit(
            Event.Kind.TAG_MOVED, f"{event.repository}:{event.tag} moved to {event.digest[:19]}…",
            key=f"tag_moved:{event.pk}", source=source, artifact=artifact,
            policies=_policies(artifact) if artifact else [],
            detail={"repository": event.repository, "tag": event.tag, "digest": event.digest,
                    "previous_digest": event.previous_digest}) is not None
    return count


def _signer(identity: str, issuer: str, key: str) -> str:
    return f"{identity} ({issuer})" if identity else (f"key {key}" if key else "")


_DRIFT_BATCH = 500
_DRIFT_FIELDS = ("artifact_id", "kind", "evidence_key", "location", "identity", "issuer", "key", "outcome")


@receiver(evidence_stored, sender=Evidence, dispatch_uid="monitor-index-evidence")
def on_evidence_stored(sender: type[Evidence], rows: list[Evidence], **kwargs: Any) -> None:
    index_evidence(rows)


def evidence_drift(source: Source, scan: Scan, since: dt.datetime) -> int:
    """Evidence an artifact had after its previous scan and no longer has; verified signers new to the source.

    Artifacts are compared in batches (a few queries per batch, whatever the source's size)."""
    count = 0
    known_signers = {_signer(i, s, k) for i, s, k in EvidenceSeen.objects.filter(
        artifact__source=source, outcome="verified").values_list("identity", "issuer", "key")}
    # Signers are new against what earlier scans saw: evidence recorded by them, or none at all (a source scanned
    # unsigned). Evidence stored before monitoring and never recorded is no baseline: its signers are not news.
    has_baseline = EvidenceSeen.objects.filter(artifact__source=source).exists() or (
        Scan.objects.filter(source=source, state=Scan.State.DONE).exclude(pk=scan.pk).exists()
        and not Evidence.objects.filter(artifact__source=source).exclude(artifact__checked_at__gte=since).exists())
    ids = list(Artifact.objects.filter(source=source, checked_at__gte=since).order_by("pk")
               .values_list("pk", flat=True))
    for start in range(0, len(ids), _DRIFT_BATCH):
        with transaction.atomic():
            count += _evidence_drift_batch(source, scan, ids[start:start + _DRIFT_BATCH], known_signers,
                                           has_baseline)
    return count


def _evidence_drift_batch(source: Source, scan: Scan, ids: list[int], known_signers: set[str],
                          has_baseline: bool) -> int:
    count = 0
    artifacts = {a.pk: a for a in Artifact.objects.filter(pk__in=ids).select_related("trust")}
    current: dict[int, dict[tuple[str, str], Evidence]] = {pk: {} for pk in ids}
    for row in Evidence.objects.filter(artifact_id__in=ids).only(*_DRIFT_FIELDS):
        current[row.artifact_id][(row.kind, row.evidence_key)] = row
    # Evidence is indexed as it is stored (``evidence_stored``); this catches rows stored before monitoring.
    index_evidence(Evidence.objects.filter(artifact_id__in=ids, fleet_digests__isnull=True))
    seen: dict[int, dict[tuple[str, str], EvidenceSeen]] = {pk: {} for pk in ids}
    for row in EvidenceSeen.objects.filter(artifact_id__in=ids):
        seen[row.artifact_id][(row.kind, row.evidence_key)] = row
    stale: list[int] = []
    for pk in ids:
        artifact = artifacts[pk]
        for key, gone in seen[pk].items():
            if key not in current[pk]:
                stale.append(gone.pk)
                count += emit(
                    Event.Kind.EVIDENCE_GONE,
                    f"{artifact.repository}@{artifact.digest[:19]}…: a {gone.kind} is gone ({gone.location})"[:300],
                    key=f"evidence_gone:{artifact.pk}:{gone.kind}:{gone.evidence_key}:{scan.pk}",
                    source=source, artifact=artifact, policies=_policies(artifact),
                    detail={"repository": artifact.repository, "digest": artifact.digest, "kind": gone.kind,
                            "location": gone.location, "signer": _signer(gone.identity, gone.issuer, gone.key)},
                ) is not None
        for row in current[pk].values():
            signer = _signer(row.identity, row.issuer, row.key)
            if has_baseline and row.outcome == "verified" and signer and signer not in known_signers:
                known_signers.add(signer)
                count += emit(
                    Event.Kind.NEW_SIGNER, f"New signer for {source.name}: {signer}"[:300],
                    key=f"new_signer:{source.pk}:{hashlib.sha256(signer.encode()).hexdigest()}", source=source,
                    artifact=artifact, policies=_policies(artifact),
                    detail={"repository": artifact.repository, "digest": artifact.digest, "kind": row.kind,
                            "identity": row.identity, "issuer": row.issuer, "key": row.key},
                ) is not None
    if stale:
        EvidenceSeen.objects.filter(pk__in=stale).delete()
    rows = [EvidenceSeen(artifact_id=pk, kind=kind, evidence_key=key, location=row.location[:300],
                         identity=row.identity, issuer=row.issuer, key=row.key, outcome=row.outcome)
            for pk, found in current.items() for (kind, key), row in found.items()]
    if rows:
        EvidenceSeen.objects.bulk_create(rows, batch_size=1000, update_conflicts=True,
                                         unique_fields=["artifact", "kind", "evidence_key"],
                                         update_fields=["location", "identity", "issuer", "key", "outcome"])
    return count


def verdict_drift(source: Source, since: dt.datetime) -> int:
    """A verdict that changed from one decided status to another."""
    count = 0
    flips = TrustEvent.objects.filter(artifact__source=source, at__gte=since).exclude(
        previous_status="pending").select_related("artifact", "artifact__trust")
    for flip in flips:
        if flip.previous_status == flip.status:
            continue
        artifact = flip.artifact
        severity = Event.Severity.CRITICAL if flip.status in _BAD and flip.previous_status not in _BAD \
            else Event.Severity.WARNING
        count += emit(
            Event.Kind.VERDICT_FLIPPED,
            f"{artifact.repository}@{artifact.digest[:19]}…: {flip.previous_status} → {flip.status}",
            key=f"verdict_flipped:{flip.pk}", severity=severity, source=source, artifact=artifact,
            policies=_policies(artifact),
            detail={"repository": artifact.repository, "digest": artifact.digest, "from": flip.previous_status,
                    "to": flip.status, "code": flip.code, "reason": flip.reason[:1000], "cause": flip.cause})\
            is not None
    return count


def trust_root_expiry(root: Any, *, now: dt.datetime | None = None) -> int:
    """Certificate authorities, their certificates and log keys of ``root`` that stop being valid soon."""
    now = now or timezone.now()
    horizon = now + dt.timedelta(days=int(getattr(settings, "PROVENANCE_MONITOR_EXPIRY_DAYS", 30)))
    try:
        document = CoreTrustRoot.from_json(root.document.encode(), name=root.name)
    except Exception as err:  # a stored root that no longer loads is the trust app's to report
        log.warning("trust root %s does not load: %s", root.name, err)
        return 0
    ending: list[tuple[str, dt.datetime]] = []
    for ca in document.certificate_authorities:
        if ca.validity.end is not None:
            ending.append((f"certificate authority {ca.name or ca.uri}", ca.validity.end))
        for cert in ca.certificates:
            ending.append((f"certificate {cert.subject.rfc4514_string()[:120]}", cert.not_valid_after_utc))
    for key in (*document.tlog_keys.values(), *document.ctlog_keys.values()):
        if key.validity.end is not None:
            ending.append((f"log key {key.base_url or key.log_id_hex[:16]}", key.validity.end))
    count = 0
    for what, end in ending:
        if now <= end <= horizon:  # an end in the past is history (a rotated key), not news
            count += emit(
                Event.Kind.TRUST_ROOT_EXPIRING, f"Trust root {root.name}: {what} expires {end:%Y-%m-%d}"[:300],
                key=f"trust_root_expiring:{root.pk}:{what}:{end.date()}"[:200],
                detail={"trust_root": root.name, "what": what, "expires_at": end.isoformat()}) is not None
    return count


def check_trust_roots() -> int:
    """Periodic: every stored trust root's coming expiries."""
    from provenance.trust.models import TrustRoot

    return sum(trust_root_expiry(root) for root in TrustRoot.objects.all())
