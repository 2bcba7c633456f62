"""Sources and scans: create them, run them. The ORM meets the core here."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from provenance.artifacts import services as artifact_services
from provenance.core.errors import MalformedEvidenceError, ProvenanceError, TransientError
from provenance.core.oci import Registry, RegistryClient
from provenance.core.ocilayout import OciLayout
from provenance.core.types import IdentityPolicy, ImageRef
from provenance.sources.models import Scan, Source
from provenance.trust import services as trust_services
from provenance.trust.models import TrustRoot

log = logging.getLogger(__name__)

# Tags that hold evidence rather than images: cosign's sha256-<hex>[.sig|.att|.sbom] and referrers fallbacks.
_EVIDENCE_TAG = re.compile(r"^sha(256|512)-[0-9a-f]{64,128}(\.[a-z]+)?$")


@transaction.atomic
def create_source(
    *,
    name: str,
    kind: str,
    location: str,
    trust_root: TrustRoot,
    expected_identity: str = "",
    expected_identity_regexp: str = "",
    expected_issuer: str = "",
    is_insecure: bool = False,
) -> Source:
    """Validate and store a source; raises MalformedEvidenceError on a bad reference or path."""
    if kind == Source.Kind.IMAGE:
        ImageRef.parse(location)
    elif kind == Source.Kind.LAYOUT:
        if not (Path(location) / "index.json").is_file():
            raise MalformedEvidenceError(f"{location!r} is not an OCI image layout (no index.json)", code="bad_layout")
    else:
        raise MalformedEvidenceError(f"unknown source kind {kind!r}", code="bad_kind")
    source, _ = Source.objects.update_or_create(
        name=name,
        defaults={
            "kind": kind,
            "location": location,
            "trust_root": trust_root,
            "expected_identity": expected_identity,
            "expected_identity_regexp": expected_identity_regexp,
            "expected_issuer": expected_issuer,
            "is_insecure": is_insecure,
        },
    )
    return source


def start_scan(source: Source) -> Scan:
    """Create a pending scan row and nudge a worker once the row is committed."""
    from provenance.sources.tasks import scan_source

    with transaction.atomic():
        scan = Scan.objects.create(source=source)
        scan_source.delay_on_commit(scan.pk)
    return scan


def claim_scan(scan_id: int) -> bool:
    """Move a pending scan to running; False when another worker has it or it is gone."""
    return Scan.objects.filter(pk=scan_id, state=Scan.State.PENDING).update(
        state=Scan.State.RUNNING, started_at=timezone.now()
    ) == 1


def release_scan(scan_id: int, err: TransientError) -> None:
    """Put a running scan back to pending (a retry follows), keeping the reason visible meanwhile."""
    Scan.objects.filter(pk=scan_id, state=Scan.State.RUNNING).update(
        state=Scan.State.PENDING, error_code=err.code, error=f"retrying: {err.message}"
    )


def fail_scan(scan_id: int, err: ProvenanceError) -> None:
    """Record a scan as failed with a stable code and a message, on the scan and its source."""
    scan = Scan.objects.select_related("source").filter(pk=scan_id).first()
    if scan is None:
        return
    with transaction.atomic():
        Scan.objects.filter(pk=scan_id).update(
            state=Scan.State.FAILED, error_code=err.code, error=err.message, finished_at=timezone.now()
        )
        Source.objects.filter(pk=scan.source_id).update(last_error=f"{err.code}: {err.message}")


def open_registry(source: Source) -> Registry:
    """Return the read-side client for a source: a registry client or an OCI layout."""
    if source.kind == Source.Kind.LAYOUT:
        return OciLayout(Path(source.location))
    ref = ImageRef.parse(source.location)
    return RegistryClient(ref.registry, insecure=source.is_insecure, timeout=settings.PROVENANCE_HTTP_TIMEOUT)


def identity_policy(source: Source) -> IdentityPolicy | None:
    if not source.expected_issuer or not (source.expected_identity or source.expected_identity_regexp):
        return None
    return IdentityPolicy(
        issuer=source.expected_issuer,
        identity=source.expected_identity,
        identity_regexp=source.expected_identity_regexp,
    )


def image_references(source: Source, registry: Registry) -> list[tuple[str, str]]:
    """Return the (repository, reference) pairs a source names."""
    if source.kind == Source.Kind.LAYOUT:
        repository = Path(source.location).name
        tags = [t for t in registry.list_tags(repository) if not _EVIDENCE_TAG.match(t)]
        return [(repository, tag) for tag in sorted(tags)]
    ref = ImageRef.parse(source.location)
    return [(ref.repository, str(ref.digest) if ref.digest else str(ref.tag))]


def run_scan(scan_id: int) -> None:
    """Ingest every image a source names, verify its evidence and store the results.

    A transient error (network, 5xx) propagates so the task can retry; anything else about one image is stored
    on that image or the scan, and the rest of the scan goes on.
    """
    scan = Scan.objects.select_related("source__trust_root").get(pk=scan_id)
    source = scan.source
    trust_root = trust_services.load(source.trust_root)
    registry = open_registry(source)
    try:
        references = image_references(source, registry)
        Scan.objects.filter(pk=scan_id).update(total=len(references))
        errors: list[str] = []
        for repository, reference in references:
            try:
                artifact_services.ingest_image(
                    source=source,
                    registry=registry,
                    repository=repository,
                    reference=reference,
                    trust_root=trust_root,
                    identity=identity_policy(source),
                )
            except TransientError:
                raise
            except ProvenanceError as err:
                errors.append(f"{repository}:{reference}: {err.code}: {err.message}")
            Scan.objects.filter(pk=scan_id).update(done=scan.done + 1)
            scan.done += 1
    finally:
        close = getattr(registry, "close", None)
        if close is not None:
            close()
    with transaction.atomic():
        Scan.objects.filter(pk=scan_id).update(
            state=Scan.State.DONE,
            error_code="partial" if errors else "",
            error="\n".join(errors)[:20000],
            finished_at=timezone.now(),
        )
        Source.objects.filter(pk=source.pk).update(last_error="\n".join(errors)[:20000])


def sweep_stuck_scans(*, older_than: timedelta = timedelta(hours=1)) -> int:
    """Fail scans left running by a killed worker; returns how many were swept."""
    cutoff = timezone.now() - older_than
    return Scan.objects.filter(state=Scan.State.RUNNING, started_at__lt=cutoff).update(
        state=Scan.State.FAILED,
        error_code="worker_lost",
        error="the worker running this scan stopped before finishing; start the scan again",
        finished_at=timezone.now(),
    )
