"""A Rekor v1 API in front of the test Sigstore's log, so the real cosign can log entries offline. TESTS ONLY.

Serves ``POST /api/v1/log/entries`` (``hashedrekord`` 0.0.1 and ``intoto`` 0.0.2 proposed entries, canonicalized
as Rekor does), ``GET /api/v1/log/entries?logIndex=N`` and ``GET /api/v1/log/publicKey``. Every answer carries a
signed entry timestamp and an inclusion proof with a signed checkpoint from the test log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import rfc8785

from provenance.core.testsigstore import TestSigstore


def _canonical(proposed: dict[str, Any]) -> bytes:
    kind, version, spec = proposed.get("kind"), proposed.get("apiVersion"), proposed.get("spec") or {}
    if kind == "hashedrekord" and version == "0.0.1":
        return rfc8785.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": spec["data"]["hash"]},
            "signature": {"content": spec["signature"]["content"],
                          "publicKey": {"content": spec["signature"]["publicKey"]["content"]}},
        }})
    if kind == "intoto" and version == "0.0.2":
        # Rekor keeps the envelope without its payload, and hashes of the envelope and of the payload.
        content = spec["content"]
        envelope = content["envelope"]
        payload = base64.b64decode(envelope["payload"])
        signatures = [{k: v for k, v in s.items() if k in ("sig", "publicKey") and v} for s in envelope["signatures"]]
        canonical_envelope = {"payloadType": envelope["payloadType"], "signatures": signatures}
        return rfc8785.dumps({"apiVersion": "0.0.2", "kind": "intoto", "spec": {"content": {
            "envelope": canonical_envelope,
            "hash": content.get("hash") or {"algorithm": "sha256", "value": hashlib.sha256(
                json.dumps(envelope, separators=(",", ":")).encode()).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
        }}})
    if kind == "dsse" and version == "0.0.1":
        # Rekor keeps hashes of the envelope (as submitted) and of its payload, and each signature with its verifier.
        proposed_content = spec["proposedContent"]
        envelope_text = proposed_content["envelope"]
        envelope = json.loads(envelope_text)
        verifiers = proposed_content["verifiers"]
        signatures = [{"signature": s["sig"], "verifier": verifiers[0]} for s in envelope["signatures"]]
        return rfc8785.dumps({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(envelope_text.encode()).hexdigest()},
            "payloadHash": {"algorithm": "sha256",
                            "value": hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()},
            "signatures": signatures,
        }})
    raise ValueError(f"unsupported entry {kind}/{version}")


class FakeRekor:
    def __init__(self, sigstore: TestSigstore) -> None:
        self.sigstore = sigstore
        self.posted: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                proposed = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                owner.posted.append(proposed)
                try:
                    body = _canonical(proposed)
                except (ValueError, KeyError, TypeError) as err:
                    self._send(400, {"code": 400, "message": str(err)})
                    return
                entry = owner.sigstore.log.append(body, integrated_time=int(time.time()))
                answer = owner.sigstore.log.rekor_api_entry(entry.index)
                self.send_response(201)
                data = json.dumps(answer).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Location", f"/api/v1/log/entries/{next(iter(answer))}")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/api/v1/log/publicKey":
                    data = owner.sigstore.rekor_public_key_pem
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-pem-file")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif parts.path == "/api/v1/log/entries":
                    index = int(parse_qs(parts.query)["logIndex"][0])
                    self._send(200, owner.sigstore.log.rekor_api_entry(index))
                else:
                    self._send(404, {"code": 404, "message": "not here"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
