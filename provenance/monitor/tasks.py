"""Celery tasks for monitoring: thin wrappers over services; the log's cursor and the delivery rows are the jobs."""

from __future__ import annotations

from celery import shared_task

from provenance.monitor import drift, services


@shared_task(acks_late=True, soft_time_limit=90, time_limit=110)
def follow_logs() -> int:
    """Periodic: follow every enabled log for up to ~50 s each (the next run carries on from the cursor)."""
    return services.follow_all_logs(budget_seconds=50.0)


@shared_task(acks_late=True, soft_time_limit=90, time_limit=110)
def follow_log(log_id: int) -> int:
    return services.follow_log(log_id, budget_seconds=50.0).entries


@shared_task(acks_late=True, soft_time_limit=240, time_limit=280)
def send_deliveries() -> int:
    """New deliveries (nudged after commit) and the retries that are due (periodic)."""
    return services.send_due_deliveries()


@shared_task
def check_trust_roots() -> int:
    return drift.check_trust_roots()
