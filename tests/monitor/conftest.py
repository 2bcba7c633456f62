"""Fixtures for monitor tests: the scanned demo fleet, a log server on its test Sigstore's log, a webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from provenance.core.testsigstore import TestSigstore
from provenance.monitor import services
from provenance.monitor.models import MonitoredLog
from provenance.sources import services as source_services
from provenance.sources.demo import load_demo
from tests.monitor.logserver import LogServer

SECRET = "a webhook secret of some length"


class Receiver:
    """A webhook receiver on 127.0.0.1 that checks each request's HMAC; ``fail`` answers 500 that many times."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.rejected = 0
        self.fail = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                timestamp = self.headers.get("X-Provenance-Timestamp", "")
                expected = "sha256=" + hmac.new(SECRET.encode(), timestamp.encode() + b"." + body,
                                                hashlib.sha256).hexdigest()
                if not hmac.compare_digest(expected, self.headers.get("X-Provenance-Signature", "")):
                    owner.rejected += 1
                    status = 401
                elif owner.fail > 0:
                    owner.fail -= 1
                    status = 500
                else:
                    owner.received.append(json.loads(body))
                    status = 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


class Fleet:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        created: list[TestSigstore] = []

        class Capturing(TestSigstore):  # the demo's log lives in memory: keep the instance that signed the fleet
            @classmethod
            def create(cls, **kwargs: Any) -> TestSigstore:
                created.append(TestSigstore.create(**kwargs))
                return created[-1]

        monkeypatch.setattr("provenance.sources.demo.TestSigstore", Capturing)
        self.demo = load_demo(tmp_path)
        assert source_services.claim_scan(self.demo.scan.pk)
        source_services.run_scan(self.demo.scan.pk)
        self.sigstore = created[0]
        self.server = LogServer(self.sigstore.log)
        self.root = self.demo.source.trust_root

    def follow(self, *, kind: str = MonitoredLog.Kind.REKOR_V1, start: int = 0, batch: int = 100) -> MonitoredLog:
        return services.add_log(name=f"test-{kind.replace('_', '-')}", kind=kind, url=self.server.url,
                                trust_root=self.root, log_id=self.sigstore.rekor_log_id.hex(), start_index=start,
                                batch_size=batch)


@pytest.fixture
def fleet(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    settings.PROVENANCE_MONITOR_GRACE = 0
    fleet = Fleet(tmp_path, monkeypatch)
    yield fleet
    fleet.server.close()
