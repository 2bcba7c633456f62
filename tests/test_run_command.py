"""The README's run command, for real: embedded defaults, web + worker + beat, the demo verified, Ctrl-C."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, user: str, password: str) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_run_command_serves_the_verified_demo_within_a_minute_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "PROVENANCE_DB_NAME",
                        "PROVENANCE_TESTING", "PROVENANCE_CELERY_QUEUE"}}
    env.update({"PROVENANCE_DATA_DIR": str(tmp_path), "PROVENANCE_PORT": str(port)})
    log_path = tmp_path / "run.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "scripts/dev.py", "run"], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        credentials = None
        artifacts: list[dict] = []
        while time.monotonic() - started < 60:
            text = log_path.read_text(errors="replace")
            if process.poll() is not None:
                pytest.fail(f"run exited early:\n{text[-4000:]}")
            credentials = credentials or re.search(r"username (\S+)\s+password (\S+)", text)
            if credentials and f"127.0.0.1:{port}" in text:
                try:
                    body = get_json(f"http://127.0.0.1:{port}/api/v1/artifacts/?limit=100", *credentials.groups())
                except OSError:
                    body = {"results": []}
                artifacts = [a for a in body["results"] if a["tags"]]
                if len(artifacts) == 6 and all(a["status"] != "pending" for a in artifacts):
                    break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        statuses = {a["tags"][0]: a["status"] for a in artifacts}
        assert statuses == {"signed": "verified", "multiarch": "verified", "unsigned": "unsigned",
                            "wrong-identity": "failed", "tampered": "failed", "copied-signature": "failed"}, (
            log_path.read_text(errors="replace")[-4000:])
        assert elapsed < 60
    finally:
        os.killpg(process.pid, signal.SIGINT) if process.poll() is None else None
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail("Ctrl-C did not stop the run command within 30 s")
    time.sleep(1)
    with pytest.raises(ProcessLookupError):  # nothing left in the process group: web, worker and beat are gone
        os.killpg(process.pid, 0)
