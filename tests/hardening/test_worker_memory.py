"""The attack that grew one worker to 3.2 GB (endless tag pagination), against a real worker process with the
default limits: the listing stops at PROVENANCE_MAX_PAGES, the worker's peak RSS stays small, the valid signature
is kept."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from provenance.sources import services
from provenance.sources.models import Scan
from tests.hardening.conftest import JSON, Hostile, measured, report
from tests.plugins.registry import Scripted

pytestmark = [pytest.mark.integration]
MiB = 1024 * 1024


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _wait(scan_id: int, seconds: float) -> Scan:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = Scan.objects.get(pk=scan_id)
        if row.is_finished:
            return row
        time.sleep(0.2)
    raise AssertionError(f"scan {scan_id} did not finish in {seconds}s")


def test_endless_pagination_leaves_a_real_worker_small(hostile: Hostile, celery_worker) -> None:
    _, digest = hostile.image("v1")
    hostile.signature(digest)
    hostile.server.add("GET", "/v2/app/tags/list", Scripted(  # every page names v1; the next one always "coming"
        200, json.dumps({"name": "app", "tags": ["v1"] * 50}).encode(),
        {**JSON, "Link": '</v2/app/tags/list?n=50&last=v1>; rel="next"'}))
    source = hostile.source()
    before = _peak_rss(celery_worker.process.pid)
    with measured() as cost:
        row = _wait(services.start_scan(source).pk, 120)
    peak = _peak_rss(celery_worker.process.pid)
    pages = sum(r.path.startswith("/v2/app/tags/list") for r in hostile.server.requests)
    assert pages == 1000  # the default PROVENANCE_MAX_PAGES
    assert row.state == Scan.State.DONE and [p["code"] for p in row.problems] == ["limit_exceeded"]
    assert "PROVENANCE_MAX_PAGES" in row.problems[0]["message"]
    assert source.artifacts.get(digest=str(digest)).status == "verified"
    assert peak - before < 64 * MiB and peak < 512 * MiB, (before, peak)
    cost.peak_bytes = peak
    report("endless tag pagination, real worker, default limits", "PROVENANCE_MAX_PAGES=1000", cost,
           f"problem limit_exceeded; signature verified; worker peak RSS {peak / MiB:.0f} MiB "
           f"(+{(peak - before) / MiB:.0f} MiB)")
