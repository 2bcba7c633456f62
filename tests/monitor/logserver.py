"""A transparency log server for monitor tests, on 127.0.0.1, in front of the test Sigstore's log. TESTS ONLY.

Rekor v1's read API (``/api/v1/log``, ``/api/v1/log/proof``, ``/api/v1/log/entries?logIndex=N``) and the C2SP
tlog-tiles API of Rekor v2 (``/checkpoint``, ``/tile/<L>/<N>[.p/<W>]``, ``/tile/entries/<N>[.p/<W>]``), both
answered from one :class:`TransparencyLog`. Tests swap the log for a fork (``server.log = log.fork(n)``), take it
down (``server.down = True``: 503) or slow it (``server.delay``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from provenance.core.testsigstore import TransparencyLog

_TILE = re.compile(r"^/tile/(entries|\d+)/((?:x\d{3}/)*\d{3})(?:\.p/(\d+))?$")


def _tile_index(path: str) -> int:
    return int("".join(part.lstrip("x") for part in path.split("/")))


class LogServer:
    def __init__(self, log: TransparencyLog) -> None:
        self.log = log
        self.down = False
        self.delay = 0.0
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once: no delayed-ACK stall per answer
            wbufsize = 1 << 16

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, status: int, data: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _json(self, body: Any) -> None:
                self._send(200, json.dumps(body).encode())

            def do_GET(self) -> None:
                owner.requests += 1
                if owner.delay:
                    time.sleep(owner.delay)
                if owner.down:
                    self._send(503, b'{"code": 503, "message": "down for the test"}')
                    return
                log = owner.log
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                try:
                    self._answer(log, parts.path, query)
                except (IndexError, ValueError, KeyError) as err:
                    self._send(404, json.dumps({"code": 404, "message": str(err)}).encode())

            def _answer(self, log: TransparencyLog, path: str, query: dict[str, str]) -> None:
                size = len(log)
                if path == "/api/v1/log":
                    self._json({"rootHash": log.root_hash(size).hex(), "treeSize": size,
                                "signedTreeHead": log.checkpoint(size), "treeID": str(log.tree_id)})
                elif path == "/api/v1/log/proof":
                    first, last = int(query["firstSize"]), int(query["lastSize"])
                    self._json({"rootHash": log.root_hash(last).hex(),
                                "hashes": [h.hex() for h in log.consistency_proof(first, last)]})
                elif path == "/api/v1/log/entries":
                    self._json(log.rekor_api_entry(int(query["logIndex"])))
                elif path == "/checkpoint":
                    self._send(200, log.checkpoint(size).encode(), "text/plain; charset=utf-8")
                elif match := _TILE.match(path):
                    self._tile(log, size, match.group(1), _tile_index(match.group(2)), match.group(3))
                else:
                    self._send(404, b'{"code": 404, "message": "not here"}')

            def _tile(self, log: TransparencyLog, size: int, level: str, index: int, partial: str | None) -> None:
                height = 0 if level == "entries" else 8 * int(level)
                count = size >> height  # nodes at this level
                width = int(partial) if partial else 256
                if not 0 < width <= 256 or index * 256 + width > count or (partial and width == 256):
                    raise IndexError(f"no tile {level}/{index} of width {width} in a tree of {size}")
                first = index * 256
                if level == "entries":
                    data = b"".join(len(e.body).to_bytes(2, "big") + e.body
                                    for e in log.entries()[first:first + width])
                    self._send(200, data, "application/octet-stream")
                    return
                span = 1 << height
                data = b"".join(log.subtree_hash(k * span, (k + 1) * span) for k in range(first, first + width))
                self._send(200, data, "application/octet-stream")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
