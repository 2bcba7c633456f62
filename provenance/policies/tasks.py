"""Celery tasks for policies: thin wrappers over services; the Reevaluation row is the job."""

from __future__ import annotations

from celery import shared_task

from provenance.policies import services


@shared_task(bind=True, acks_late=True)
def reevaluate(self, job_id: int) -> None:  # type: ignore[no-untyped-def]
    """Re-evaluate a job's artifacts from stored evidence (no network: nothing to retry on)."""
    if not services.claim_reevaluation(job_id):
        return  # another worker has it, it is finished, or it is gone
    try:
        services.run_reevaluation(job_id)
    except Exception as err:
        # A bug or a lost database, not bad evidence: record it on the job so it never sits "running".
        services.fail_reevaluation(job_id, f"internal error: {type(err).__name__}: {err}")
        raise


@shared_task
def scheduled_reevaluation() -> int:
    """Periodic: re-evaluate the fleet (catches expired trust, policy edits made outside the pages)."""
    return services.schedule_reevaluation().pk


@shared_task
def sweep_stuck_reevaluations() -> int:
    return services.sweep_stuck_reevaluations()
