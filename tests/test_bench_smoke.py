"""The real-pipeline benchmark runs, small, on CI (no timing asserted): registry, PostgreSQL, Redis, workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import missing_component, require_binary

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_the_pipeline_benchmark_scans_and_rescans() -> None:
    require_binary("docker-registry", "apt-get install docker-registry")
    database, broker = os.environ.get("DATABASE_URL", ""), os.environ.get("CELERY_BROKER_URL", "")
    if not database.startswith("postgres") or not broker.startswith("redis"):
        missing_component("the pipeline benchmark needs DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis)")
    env = {**os.environ, "CELERY_BROKER_URL": re.sub(r"/\d+$", "/12", broker)}
    done = subprocess.run([sys.executable, "bench/scan_pipeline.py", "--images", "40", "--signed", "6",
                           "--chunk", "15"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.startswith(("scan ", "re-scan"))}
    assert rows["scan"][1] == rows["re-scan"][1] == "40" and rows["scan"][5] == "3" and rows["scan"][6] == "done"
    assert "errors=0 fetched=40" in done.stdout and "fetched=0 unchanged=40" in done.stdout
    assert "worker peak RSS" in done.stdout and "CPU ms per image, re-scan: worker" in done.stdout
    assert "web (gunicorn, 1 worker, DEBUG off)" in done.stdout and "CSV export of 40 rows" in done.stdout
