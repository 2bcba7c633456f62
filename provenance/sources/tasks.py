"""Celery tasks for sources: thin wrappers over services; the Scan row is the job."""

from __future__ import annotations

from celery import shared_task

from provenance.core.errors import ProvenanceError, TransientError
from provenance.sources import services

RETRY_DELAYS = (5, 30, 120)


@shared_task(bind=True, acks_late=True, max_retries=len(RETRY_DELAYS))
def scan_source(self, scan_id: int) -> None:  # type: ignore[no-untyped-def]
    if not services.claim_scan(scan_id):
        return  # another worker has it, it is finished, or it is gone
    try:
        services.run_scan(scan_id)
    except TransientError as err:
        if self.request.retries >= len(RETRY_DELAYS):
            services.fail_scan(scan_id, err)
            return
        services.release_scan(scan_id, err)
        raise self.retry(exc=err, countdown=RETRY_DELAYS[self.request.retries]) from err
    except ProvenanceError as err:
        services.fail_scan(scan_id, err)
    except Exception as err:
        # A bug, not bad input: record it on the scan so it never sits "running", then let Celery log it.
        services.fail_scan(scan_id, ProvenanceError(f"internal error: {type(err).__name__}", code="internal_error"))
        raise


@shared_task(bind=True, acks_late=True, max_retries=len(RETRY_DELAYS))
def scan_chunk(self, chunk_id: int) -> None:  # type: ignore[no-untyped-def]
    """One slice of a large scan (see services.run_scan); the last one to end finishes the scan."""
    if not services.claim_chunk(chunk_id):
        return
    try:
        services.run_chunk(chunk_id)
    except Exception:
        # A bug, not bad input: the chunk is failed with the reason so that the scan still finishes.
        services.fail_chunk(chunk_id, ProvenanceError("internal error in a scan chunk", code="internal_error"))
        raise


@shared_task
def sweep_stuck_scans() -> int:
    return services.sweep_stuck_scans()


@shared_task
def rescan_sources() -> int:
    """Beat: start a scan of every scheduled source that is due (unchanged images are recognised cheaply)."""
    return services.rescan_due_sources()
