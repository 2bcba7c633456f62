"""Streaming compliance export (CSV and JSON) at 100,000 rows: time and peak memory.

Creates a PostgreSQL database of its own on the server of ``DATABASE_URL`` (default
``postgres://postgres@127.0.0.1:5432/postgres``), fills it with ``bulk_create`` (artifacts, a tag each, a policy
verdict each, a verified signature and a verified SLSA provenance attestation each), streams the export as the
page and the API do (``services.export_csv`` / ``export_json``) and drops the database. Memory: the peak of
Python allocations while streaming (tracemalloc) and the process's resident set sampled every 1,000 rows; for
"flat", compare the figures at 10,000 and 100,000 rows.

Usage: .venv/bin/python bench/export.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import scratch_database  # noqa: E402

IDENTITY = "https://github.com/myorg/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fill(rows: int) -> None:
    import datetime as dt

    from provenance.artifacts.models import Artifact, Evidence, Tag
    from provenance.policies.models import ArtifactTrust, Policy
    from provenance.sources.models import Source
    from provenance.trust.models import TrustRoot

    root = TrustRoot.objects.create(name="bench", document="{}", sha256="0" * 64)
    source = Source.objects.create(name="bench", kind=Source.Kind.IMAGE, location="ghcr.io/myorg/app:v1",
                                   trust_root=root)
    Policy.objects.create(name="release", source="{}", sha256="1" * 64, version=3)
    now = dt.datetime.now(dt.UTC)
    statement = {"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1",
                 "subject": [], "predicate": {
                     "buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1",
                                         "externalParameters": {"workflow": {
                                             "repository": "https://github.com/myorg/app", "ref": "refs/heads/main",
                                             "path": ".github/workflows/release.yml"}},
                                         "resolvedDependencies": [{"uri": "git+https://github.com/myorg/app",
                                                                   "digest": {"gitCommit": "c" * 40}}]},
                     "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}}}
    details = {"status": "trusted", "policies": [{"policy": "release", "mode": "enforce", "allowed": True,
                                                  "matched": "authority-0", "findings": [], "warnings": []}]}
    step = 5000
    for start in range(0, rows, step):
        count = min(step, rows - start)
        artifacts = Artifact.objects.bulk_create([
            Artifact(source=source, repository=f"myorg/repo{(start + i) % 500}",
                     digest=f"sha256:{start + i:064x}", status="verified", checked_at=now)
            for i in range(count)])
        Tag.objects.bulk_create([Tag(artifact=a, name=f"v{a.pk}") for a in artifacts])
        ArtifactTrust.objects.bulk_create([ArtifactTrust(artifact=a, status="trusted", details=details,
                                                         evaluated_at=now) for a in artifacts])
        evidence = []
        for a in artifacts:
            evidence.append(Evidence(artifact=a, kind="signature", format="cosign-sig", location="x.sig",
                                     digest=f"sha256:{a.pk:064x}", evidence_key=f"s{a.pk}", covers_digest=a.digest,
                                     outcome="verified", identity=IDENTITY, issuer=ISSUER, payload=b"x" * 300))
            evidence.append(Evidence(artifact=a, kind="attestation", format="cosign-att", location="x.att",
                                     digest=f"sha256:{a.pk:064x}", evidence_key=f"a{a.pk}", covers_digest=a.digest,
                                     outcome="verified", identity=IDENTITY, issuer=ISSUER, statement=statement,
                                     predicate_type="https://slsa.dev/provenance/v1", payload=b"y" * 2000))
        Evidence.objects.bulk_create(evidence)


def stream(kind: str, limit: int, *, trace: bool) -> tuple[float, float, float, float, int, int]:
    """(seconds to first chunk, seconds in all, tracemalloc peak MiB, RSS growth MiB, rows, bytes)."""
    from provenance.artifacts.models import Artifact
    from provenance.compliance import services

    queryset, scope = services.select_artifacts({})
    first_id = Artifact.objects.order_by("id").values_list("id", flat=True)[0]
    selected = queryset.filter(id__lt=first_id + limit)  # bulk_create made them in order
    before = rss_mib()
    peak_rss = before
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    first = 0.0  # the header goes out before any query; kept for the tuple's shape
    size = lines = 0
    chunks = services.export_csv(selected) if kind == "csv" else services.export_json(selected, scope)
    for chunk in chunks:
        if not first:
            first = time.perf_counter() - started
        size += len(chunk)
        lines += 1
        if lines % 1000 == 0:
            peak_rss = max(peak_rss, rss_mib())
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory() if trace else (0, 0)
    tracemalloc.stop()
    assert Artifact.objects.exists()
    return first, elapsed, peak / 2**20, max(peak_rss, rss_mib()) - before, lines, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with scratch_database("export"):

        started = time.perf_counter()
        fill(args.rows)
        print(f"filled {args.rows:,} artifacts (+ tags, verdicts, 2 evidence rows each) in "
              f"{time.perf_counter() - started:.1f} s")
        for kind in ("csv", "json"):
            for limit in sorted({min(10_000, args.rows), args.rows}):
                _, elapsed, _, rss, _, size = stream(kind, limit, trace=False)
                _, _, peak, _, _, _ = stream(kind, limit, trace=True)  # tracemalloc slows it: timed apart
                print(f"{kind:4} {limit:>7,} rows: all {elapsed:5.1f} s ({limit / elapsed:,.0f} rows/s), "
                      f"{size / 2**20:6.1f} MiB out; peak Python allocations {peak:5.1f} MiB, "
                      f"RSS growth {rss:5.1f} MiB")


if __name__ == "__main__":
    main()
