"""A real worker killed mid-batch: the batch it was in leaves nothing behind, the next read resumes at its first
entry, and every entry is matched and alerted exactly once."""

from __future__ import annotations

import time

import pytest

from provenance.core.demo import DEMO_IDENTITY, DEMO_ISSUER
from provenance.monitor import services, tasks
from provenance.monitor.models import Event, LogMatch, MonitoredLog
from tests.monitor.conftest import Fleet

ENTRIES, BATCH = 120, 20


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_misses_nothing_and_doubles_nothing(celery_worker, fleet: Fleet, settings) -> None:
    services.sync_watches()
    row = fleet.follow(start=len(fleet.sigstore.log), batch=BATCH)
    start = row.next_index
    for i in range(ENTRIES):
        fleet.sigstore.sign_blob_bundle(f"rogue {i}".encode(), identity=DEMO_IDENTITY, issuer=DEMO_ISSUER)
    fleet.server.delay = 0.03  # each answer takes a while: the worker is inside a batch when it dies

    tasks.follow_log.delay(row.pk)
    deadline = time.monotonic() + 60
    while MonitoredLog.objects.get(pk=row.pk).next_index == start:
        assert time.monotonic() < deadline, celery_worker.log()[-3000:]
        time.sleep(0.02)
    celery_worker.process.kill()
    celery_worker.process.wait(timeout=10)

    killed_at = MonitoredLog.objects.get(pk=row.pk).next_index
    assert start < killed_at < start + ENTRIES and (killed_at - start) % BATCH == 0
    assert LogMatch.objects.count() == killed_at - start  # the batch in flight left no match behind

    fleet.server.delay = 0
    settings.PROVENANCE_MONITOR_CLAIM_SECONDS = 0  # the dead worker's claim is stale now
    services.follow_log(row.pk)
    row.refresh_from_db()
    assert row.next_index == start + ENTRIES and row.state == "ok"
    indexes = sorted(LogMatch.objects.values_list("index", flat=True))
    assert indexes == list(range(start, start + ENTRIES))
    services.resolve_pending()  # the worker ran with the default grace period; this process with none
    alerted = sorted(Event.objects.filter(kind="unknown_signature").values_list("detail__index", flat=True))
    assert alerted == list(range(start, start + ENTRIES))
