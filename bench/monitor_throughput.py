"""Log monitoring throughput: entries/s verified, read and matched against watched identities, from a local log.

Builds a test Sigstore log of N keyless ``hashedrekord`` entries (a tenth by the watched identity), serves it on
127.0.0.1 (the test log server: Rekor v1 API and v2 tiles), and follows it from index 0 in batches with
``provenance.core.monitor.advance``: checkpoint signature, consistency proof with the previous checkpoint,
inclusion proof of every entry, then ``describe_entry`` and ``Watch.matches`` on every body. No database: the
service adds one transaction per batch on top. Prints entries/s for each way of reading.

    .venv/bin/python bench/monitor_throughput.py [--entries 5000] [--batch 100] [--workers 8]

The public-good Rekor v1 log grows by roughly 10-30 entries/s at its busiest.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provenance.core.monitor import RekorV1Log, TileLog, Watch, advance, describe_entry
from provenance.core.testsigstore import TestSigstore
from provenance.core.trustroot import TrustRoot
from tests.monitor.logserver import LogServer

ISSUER = "https://token.actions.githubusercontent.com"
WATCHED = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"


def follow(source: object, watch: Watch, batch: int) -> tuple[int, int, float]:
    start, previous, matches, entries = 0, None, 0, 0
    began = time.perf_counter()
    while True:
        result = advance(source, previous=previous, start=start, limit=batch)  # type: ignore[arg-type]
        for entry in result.entries:
            matches += watch.matches(describe_entry(entry.body))
        entries += len(result.entries)
        previous, start = result.checkpoint, result.end
        if result.lag == 0:
            return entries, matches, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    sigstore = TestSigstore.create(name="bench-monitor")
    began = time.perf_counter()
    for i in range(args.entries):
        identity = WATCHED if i % 10 == 0 else f"https://github.com/other/repo{i}/.github/workflows/ci.yml@main"
        sigstore.sign_blob_bundle(f"artifact {i}".encode(), identity=identity, issuer=ISSUER)
    print(f"log of {len(sigstore.log)} entries built in {time.perf_counter() - began:.1f} s")
    root = TrustRoot.from_json(sigstore.trusted_root_json(), name=sigstore.name)
    server = LogServer(sigstore.log)
    watch = Watch(1, subject=WATCHED, issuer=ISSUER)
    try:
        ways = [("Rekor v1 API, 1 connection", RekorV1Log(server.url, root, sigstore.rekor_log_id, workers=1)),
                (f"Rekor v1 API, {args.workers} connections",
                 RekorV1Log(server.url, root, sigstore.rekor_log_id, workers=args.workers)),
                ("tiles (Rekor v2)", TileLog(server.url, root.tlog_key(sigstore.rekor_log_id)))]
        for name, source in ways:
            entries, matches, seconds = follow(source, watch, args.batch)
            rate = entries / seconds
            print(f"{name:32s} {entries} entries, {matches} watched, {seconds:.2f} s: {rate:,.0f} entries/s")
    finally:
        server.close()


if __name__ == "__main__":
    main()
