"""A real Celery worker process for integration tests, on the test database and the configured broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, queue: str) -> None:
        self.process = process
        self.log_path = log_path
        self.queue = queue

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_worker(queue: str, log_path: Path) -> Worker:
    """Start ``celery worker`` as a separate process consuming only ``queue``; returns once it is ready."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PROVENANCE_DATA_DIR": str(settings.DATA_DIR),
        "PROVENANCE_DB_NAME": str(connection.settings_dict["NAME"]),
        "PROVENANCE_CELERY_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "provenance", "worker", "--pool", "solo", "--loglevel", "INFO",
             "--queues", queue, "--without-gossip", "--without-mingle",
             "--hostname", f"{queue}-{uuid.uuid4().hex[:6]}@localhost"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    worker = Worker(process, log_path, queue)
    deadline = time.monotonic() + 60
    while "ready." not in worker.log():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"celery worker did not start:\n{worker.log()[-4000:]}")
        time.sleep(0.2)
    return worker


@pytest.fixture
def celery_worker(transactional_db: None, tmp_path: Path) -> Iterator[Worker]:
    """A worker process consuming a queue private to this test; the test process enqueues to that queue."""
    from provenance.celery import app

    queue = f"test-{uuid.uuid4().hex[:12]}"
    original_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = start_worker(queue, tmp_path / "worker.log")
    yield worker
    app.conf.task_default_queue = original_queue
    worker.stop()
