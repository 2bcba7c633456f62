"""Celery tasks for git sources: thin wrappers over services; the GitFetch row is the job."""

from __future__ import annotations

from celery import shared_task

from provenance.core.errors import ProvenanceError, TransientError
from provenance.gitsources import services

RETRY_DELAYS = (5, 30, 120)


@shared_task(bind=True, acks_late=True, max_retries=len(RETRY_DELAYS))
def fetch_git_source(self, fetch_id: int) -> None:  # type: ignore[no-untyped-def]
    if not services.claim_fetch(fetch_id):
        return  # another worker has it, it is finished, or it is gone
    try:
        services.run_fetch(fetch_id)
    except TransientError as err:
        if self.request.retries >= len(RETRY_DELAYS):
            services.fail_fetch(fetch_id, err)
            return
        services.release_fetch(fetch_id, err)
        raise self.retry(exc=err, countdown=RETRY_DELAYS[self.request.retries]) from err
    except ProvenanceError as err:
        services.fail_fetch(fetch_id, err)
    except Exception as err:
        services.fail_fetch(fetch_id, ProvenanceError(f"internal error: {type(err).__name__}", code="internal_error"))
        raise


@shared_task
def refetch_git_sources() -> int:
    """Beat (when scheduled in CELERY_BEAT_SCHEDULE): fetch every scheduled repository again."""
    return services.refetch_due_sources()


@shared_task
def sweep_stuck_fetches() -> int:
    return services.sweep_stuck_fetches()
