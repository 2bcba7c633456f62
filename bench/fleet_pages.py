"""The fleet's pages at scale: p50/p95 of each page (and the API list, first and last page) over N image places.

Creates a PostgreSQL database of its own on the server of ``DATABASE_URL`` (default
``postgres://postgres@127.0.0.1:5432/postgres``), fills it with ``bulk_create``: N top-level image places over
four sources and 500 repositories per source (one digest in 50 is also found in a second source, with another
verdict), a tag and a policy verdict each, and three evidence rows each shaped like a scan's (a verified
signature, a verified SLSA provenance v1 attestation, an SPDX SBOM attestation). Then times each page through
Django's test Client (logged in, in process: no network in the figures) and drops the database.

Usage: .venv/bin/python bench/fleet_pages.py [--places 2000] [--repeat 20]   (the issue's figure: --places 100000)
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import scratch_database  # noqa: E402

IDENTITY = "https://github.com/myorg/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
SLSA = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"
STATUSES = ("verified", "verified", "verified", "failed", "unsigned")
VERDICTS = {"verified": "trusted", "failed": "untrusted", "unsigned": "unsigned"}


def fill(places: int) -> None:
    import datetime as dt

    from provenance.artifacts.models import Artifact, Evidence, Tag
    from provenance.policies.models import ArtifactTrust
    from provenance.sources.models import Source
    from provenance.trust.models import TrustRoot

    root = TrustRoot.objects.create(name="bench", document="{}", sha256="0" * 64)
    sources = [Source.objects.create(name=f"bench-{i}", kind=Source.Kind.REPOSITORY,
                                     location=f"registry{i}.example/myorg/app", trust_root=root) for i in range(4)]
    now = dt.datetime.now(dt.UTC)
    provenance = {"_type": "https://in-toto.io/Statement/v1", "predicateType": SLSA, "subject": [], "predicate": {
        "buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1",
                            "externalParameters": {"workflow": {"repository": "https://github.com/myorg/app",
                                                                "ref": "refs/heads/main",
                                                                "path": ".github/workflows/release.yml"}},
                            "resolvedDependencies": [{"uri": "git+https://github.com/myorg/app",
                                                      "digest": {"gitCommit": "c" * 40}}]},
        "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}}}
    sbom = {"_type": "https://in-toto.io/Statement/v1", "predicateType": SPDX, "subject": [], "predicate": {
        "spdxVersion": "SPDX-2.3", "packages": [{"SPDXID": f"SPDXRef-p{i}", "name": f"pkg{i}", "versionInfo": "1"}
                                                for i in range(20)]}}
    check = {"stage": "signature", "code": "signature_valid", "ok": True, "message": "valid", "hint": ""}
    step = 5000
    made = 0
    for start in range(0, places, step):
        count = min(step, places - start)
        rows = []
        for i in range(start, start + count):
            status = STATUSES[i % len(STATUSES)]
            # one digest in 50 is also in the next source (a mirror), with a verdict of its own
            digest = f"sha256:{(i - 1 if i % 50 == 1 else i):064x}"
            rows.append(Artifact(source=sources[i % 4], repository=f"myorg/repo{i % 500}", digest=digest,
                                 status=status, checked_at=now - dt.timedelta(seconds=i),
                                 media_type="application/vnd.oci.image.manifest.v1+json",
                                 status_reason="" if status == "verified" else "no valid signature"))
        artifacts = Artifact.objects.bulk_create(rows)
        Tag.objects.bulk_create([Tag(artifact=a, name=f"v{a.pk}") for a in artifacts])
        ArtifactTrust.objects.bulk_create([ArtifactTrust(artifact=a, status=VERDICTS[a.status], evaluated_at=now)
                                           for a in artifacts])
        evidence = []
        for a in artifacts:
            outcome = "verified" if a.status == "verified" else "failed"
            common = {"artifact": a, "covers_digest": a.digest, "identity": IDENTITY, "issuer": ISSUER,
                      "valid": outcome == "verified",
                      "tlog": "inclusion_proof", "integrated_time": now, "checks": [check] * 8}
            evidence += [
                Evidence(kind="signature", format="cosign-sig", location=f"{a.repository}:sha256-x.sig",
                         digest=f"sha256:{a.pk:064x}", evidence_key=f"s{a.pk}", outcome=outcome,
                         payload=b"x" * 300, **common),
                Evidence(kind="attestation", format="cosign-att", location=f"{a.repository}:sha256-x.att",
                         digest=f"sha256:{a.pk + 10**9:064x}", evidence_key=f"a{a.pk}", outcome=outcome,
                         predicate_type=SLSA, statement=provenance, payload=b"y" * 2000, **common),
                Evidence(kind="attestation", format="cosign-att", location=f"{a.repository}:sha256-x.att",
                         digest=f"sha256:{a.pk + 2 * 10**9:064x}", evidence_key=f"b{a.pk}", outcome=outcome,
                         predicate_type=SPDX, statement=sbom, payload=b"z" * 3000, **common)]
        Evidence.objects.bulk_create(evidence)
        made += count
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def cursor_after(row: object, keys: list[str]) -> str:
    """A keyset cursor (as the pagination writes it) that starts right after ``row`` in ``keys``' order."""
    values = []
    for key in keys:
        field = type(row)._meta.get_field(key.lstrip("-"))  # type: ignore[attr-defined]
        values.append(None if getattr(row, field.attname) is None else field.value_to_string(row))
    text = json.dumps({"o": ",".join(keys), "v": values, "r": False}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def measure(client: object, url: str, repeat: int, budget: float, slowest: int = 0
            ) -> tuple[float, float, int, int, int]:
    """(p50 ms, p95 ms, bytes, SQL queries, status) over ``repeat`` requests (fewer when over ``budget`` s);
    prints the ``slowest`` queries of the first request."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)  # type: ignore[attr-defined]
    queries, size, status = len(captured), len(response.content), response.status_code
    for query in sorted(captured.captured_queries, key=lambda q: -float(q["time"]))[:slowest]:
        print(f"    {float(query['time']) * 1000:7.1f} ms  {query['sql'][:160]}")
    times: list[float] = []
    started = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.get(url)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - t0) * 1000)
        if time.perf_counter() - started > budget and len(times) >= 3:
            break
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times), p95, size, queries, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--places", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per page at most (then >= 3 runs)")
    parser.add_argument("--slowest", type=int, default=0, help="print each page's N slowest SQL queries")
    parser.add_argument("--only", default="", help="only the pages whose label starts with one of these (a,b)")
    args = parser.parse_args()
    with scratch_database("fleet"):
        from django.contrib.auth import get_user_model
        from django.test import Client
        from django.test.utils import setup_test_environment

        from provenance.artifacts.models import Artifact
        from provenance.sources.models import Source

        setup_test_environment()  # the test Client's host is allowed
        started = time.perf_counter()
        fill(args.places)
        print(f"filled {args.places:,} image places (+ tags, verdicts, 3 evidence rows each) in "
              f"{time.perf_counter() - started:.1f} s on PostgreSQL")
        user = get_user_model().objects.create_superuser("bench", "bench@example.invalid", "bench-password")
        client = Client()
        client.force_login(user)
        source = Source.objects.order_by("pk").first()
        shared = Artifact.objects.filter(digest=f"sha256:{0:064x}").order_by("pk").first()
        assert source is not None and shared is not None
        newest_last = Artifact.objects.order_by("checked_at", "id")[100:101].get()  # 101st oldest: last page
        by_name_last = Artifact.objects.filter(parent__isnull=True).order_by("-repository", "-id")[100:101].get()
        pages = [
            ("fleet page", "/"),
            ("fleet: status+policy+repository", "/?status=verified&policy=trusted&repository_prefix=myorg/repo1"),
            ("fleet: signer+issuer", f"/?signer={IDENTITY}&issuer={ISSUER}&ordering=-checked_at"),
            ("fleet: tag", f"/?tag=v{newest_last.pk}"),
            ("fleet: last page", f"/?cursor={cursor_after(by_name_last, ['repository', 'id'])}"),
            ("verdicts per source (picture)", "/charts/verdicts/"),
            ("coverage page", "/coverage/"),
            ("source page", f"/sources/{source.pk}/"),
            ("artifact page", f"/artifacts/{shared.pk}/"),
            ("digest page (2 places)", f"/artifacts/{shared.digest}/"),
            ("API list, first page", "/api/v1/artifacts/"),
            ("API list, last page", f"/api/v1/artifacts/?cursor={cursor_after(newest_last, ['-checked_at', '-id'])}"),
        ]
        print(f"{'page':34} {'p50 ms':>8} {'p95 ms':>8} {'KB':>7} {'SQL':>4} status")
        wanted = tuple(p.strip() for p in args.only.split(",") if p.strip())
        for label, url in pages:
            if wanted and not label.startswith(wanted):
                continue
            p50, p95, size, queries, status = measure(client, url, args.repeat, args.budget, args.slowest)
            print(f"{label:34} {p50:8.1f} {p95:8.1f} {size / 1024:7.1f} {queries:4} {status}")


if __name__ == "__main__":
    main()
