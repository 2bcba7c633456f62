"""Scan rows are the jobs: claimed once, swept when a worker dies mid-task."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from provenance.sources import services
from provenance.sources.models import Scan, Source
from provenance.sources.tasks import scan_source
from tests.factories import make_sigstore, trust_root_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(tmp_path):
    from provenance.core.ocilayout import OciLayout

    layout = OciLayout.init(tmp_path / "empty")
    return services.create_source(name="s", kind=Source.Kind.LAYOUT, location=str(layout.path),
                                  trust_root=trust_root_for(make_sigstore()))


def test_a_scan_is_claimed_only_once(source):
    scan = Scan.objects.create(source=source)
    assert services.claim_scan(scan.pk) is True
    assert services.claim_scan(scan.pk) is False
    scan.refresh_from_db()
    assert scan.state == Scan.State.RUNNING and scan.started_at is not None


def test_a_task_for_a_finished_or_missing_scan_does_nothing(source):
    scan = Scan.objects.create(source=source, state=Scan.State.DONE)
    scan_source.apply(args=[scan.pk])
    scan_source.apply(args=[987654])
    scan.refresh_from_db()
    assert scan.state == Scan.State.DONE


def test_scans_left_running_by_a_killed_worker_are_swept_with_a_reason(source, settings):
    stuck = Scan.objects.create(source=source, state=Scan.State.RUNNING,
                                started_at=timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120))
    fresh = Scan.objects.create(source=source, state=Scan.State.RUNNING, started_at=timezone.now())
    assert services.sweep_stuck_scans() == 1
    stuck.refresh_from_db()
    fresh.refresh_from_db()
    assert (stuck.state, stuck.error_code) == (Scan.State.FAILED, "worker_lost")
    assert fresh.state == Scan.State.RUNNING
    # the source is being scanned (the fresh scan), so no second scan is started
    assert source.scans.filter(state=Scan.State.PENDING).count() == 0


def test_a_swept_scan_is_started_again_so_nothing_is_lost(source, settings):
    stuck = Scan.objects.create(source=source, state=Scan.State.RUNNING,
                                started_at=timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120))
    assert services.sweep_stuck_scans() == 1
    [again] = source.scans.filter(state=Scan.State.PENDING)
    assert again.pk != stuck.pk
    assert services.sweep_stuck_scans() == 0  # a second sweep finds nothing more


def test_the_sweep_is_scheduled_in_beat(settings):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "provenance.sources.tasks.sweep_stuck_scans" in tasks
