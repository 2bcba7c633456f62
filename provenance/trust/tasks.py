"""Periodic trust work: refresh the public-good (and staging) roots over TUF. Fails safe by construction."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from provenance.trust import services


@shared_task(acks_late=True, soft_time_limit=120, time_limit=150)
def refresh_trust_roots() -> dict[str, str]:
    """Refresh every TUF-backed root; failures are stored on the row (the old root stays), never retried here:
    the next beat run is the retry."""
    if not settings.PROVENANCE_SIGSTORE_TUF:
        return {}
    return services.refresh_all_from_tuf()
