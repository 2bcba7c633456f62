"""The CI gate's latency over a large fleet: GET /api/v1/check/ for tag and digest references (goal: p95 <= 20 ms).

Fills a database of its own with ``--artifacts`` artifacts in 1,000 repositories on ghcr.io (one image source per
repository), each with a tag, its evidence and its policy verdict, then times gate requests through Django's test
``Client`` (the whole stack: URL routing, session authentication, throttling, the view, JSON rendering; no HTTP
socket). Figures: p50/p95/p99 and SQL queries per request, for digest references, tag references (resolved from
stored tags), stale verdicts (a policy edited after they were stored: recomputed from stored evidence), and an
admission review of a two-container Deployment.

The rows are "like the real ones" without signing 100,000 images: one sample image per kind (signed by the expected
workflow with SLSA provenance, signed by another workflow, signed without provenance, unsigned, outside every
policy) is signed by the test Sigstore, verified by the real verification code and evaluated by the real policy
engine; every artifact of that kind gets a copy of its evidence rows and verdict (bulk_create).

Database: with DATABASE_URL pointing at PostgreSQL, a database ``<name>_gatebench_<pid>`` is created there and
dropped at the end; otherwise a temporary SQLite file (removed). Usage:

    .venv/bin/python bench/gate.py [--artifacts 5000] [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ISSUER = "https://token.actions.githubusercontent.com"
RUNNER = "https://github.com/actions/runner"
REPOSITORIES = 1000
KINDS = ("trusted", "wrong-identity", "warn", "unsigned", "no-policy")


def workflow(repo: str) -> str:
    return f"https://github.com/{repo}/.github/workflows/release.yml@refs/heads/main"


POLICIES = (
    f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: release-signature
spec:
  images:
    - glob: "ghcr.io/myorg/**"
  authorities:
    - name: release-workflow
      keyless:
        identities:
          - issuer: "{ISSUER}"
            subjectRegExp: "^https://github\\\\.com/myorg/"
""",
    f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: slsa-provenance
spec:
  mode: warn
  images:
    - glob: "ghcr.io/myorg/**"
  authorities:
    - name: provenance
      keyless:
        identities:
          - issuer: "{ISSUER}"
            subjectRegExp: "^https://github\\\\.com/myorg/"
      attestations:
        - name: slsa
          predicateType: https://slsa.dev/provenance/v1
          policy:
            type: rego
            data: |
              package sigstore
              default allow = false
              allow {{
                input.predicate.buildDefinition.buildType == "{RUNNER}"
              }}
""",
)


# -- a database of its own ---------------------------------------------------------------------------------------


class BenchDatabase:
    """A PostgreSQL database created next to DATABASE_URL's (dropped at the end), or a temporary SQLite."""

    def __init__(self) -> None:
        self.url = os.environ.get("DATABASE_URL", "")
        self.is_postgres = self.url.startswith(("postgres://", "postgresql://"))
        self.data_dir = Path(tempfile.mkdtemp(prefix="provenance-gate-bench-"))
        self.name = ""

    def __enter__(self) -> BenchDatabase:
        os.environ["PROVENANCE_DATA_DIR"] = str(self.data_dir)
        (self.data_dir / "staticfiles").mkdir()
        if self.is_postgres:
            import psycopg

            parts = urlsplit(self.url)
            self.name = f"{(parts.path.lstrip('/') or 'provenance')}_gatebench_{os.getpid()}"
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{self.name}"))
        else:
            os.environ.pop("DATABASE_URL", None)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.is_postgres and self.name:
            from django.db import connections

            connections.close_all()
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        shutil.rmtree(self.data_dir, ignore_errors=True)


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provenance.settings")
    os.environ["PROVENANCE_TESTING"] = "1"  # a built-in secret key; DEBUG stays off (no query log)
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"
    # Jobs the bench starts (a policy edit queues a re-evaluation) go to a broker of its own, never to a shared one.
    os.environ.pop("CELERY_BROKER_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# -- the fleet ---------------------------------------------------------------------------------------------------


def repository(j: int) -> str:
    return f"{'otherorg' if j % 10 == 9 else 'myorg'}/app{j}"


def kind_of(i: int) -> str:
    j = i % REPOSITORIES
    if j % 10 == 9:
        return "no-policy"
    bucket = i % 9  # independent of the repository (9 and 10 are coprime)
    return "trusted" if bucket < 6 else ("wrong-identity", "warn", "unsigned")[bucket - 6]


def build_samples() -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """One real image per kind: evidence signed, verified and stored, verdict evaluated. Returns, per kind, the
    evidence rows' fields and the verdict's fields, to copy."""
    from provenance.artifacts import services as artifact_services
    from provenance.artifacts.models import Artifact, Evidence
    from provenance.core import verify
    from provenance.core.discovery import FoundEvidence
    from provenance.core.testsigstore import TestSigstore, in_toto_statement
    from provenance.core.trustroot import TrustRoot as CoreTrustRoot
    from provenance.core.types import Digest, IdentityPolicy, MediaType
    from provenance.policies import services as policy_services
    from provenance.policies.models import ArtifactTrust, Cause
    from provenance.sources.models import Source
    from provenance.trust import services as trust_services

    sigstore = TestSigstore.create(name="gate-bench")
    root = trust_services.register(name="gate-bench", document=sigstore.trusted_root_json())
    core_root = CoreTrustRoot.from_json(root.document.encode(), name=root.name)
    expected = IdentityPolicy(issuer=ISSUER, identity_regexp=r"^https://github\.com/myorg/")
    for text in POLICIES:
        policy_services.save_policy(text)
    plans = {"trusted": ("myorg/sample", workflow("myorg/sample"), True),
             "wrong-identity": ("myorg/sample", workflow("someone-else/fork"), False),
             "warn": ("myorg/sample", workflow("myorg/sample"), False),
             "unsigned": ("myorg/sample", None, False),
             "no-policy": ("otherorg/sample", workflow("otherorg/sample"), False)}
    samples = {}
    for kind, (repo, signer, attest) in plans.items():
        source = Source.objects.create(name=f"sample-{kind}", kind=Source.Kind.IMAGE, location=f"ghcr.io/{repo}:v1",
                                       trust_root=root, expected_identity_regexp=expected.identity_regexp,
                                       expected_issuer=ISSUER, is_scheduled=False)
        digest = Digest.of(os.urandom(32))
        artifact = Artifact.objects.create(source=source, repository=repo, digest=str(digest),
                                           media_type=MediaType.OCI_MANIFEST, status="verified")
        layers = []
        if signer:
            layers.append(("signature", sigstore.cosign_signature_layer(str(digest), f"ghcr.io/{repo}",
                                                                        identity=signer, issuer=ISSUER)))
        if attest:
            statement = in_toto_statement(f"ghcr.io/{repo}", digest.hex, "https://slsa.dev/provenance/v1",
                                          {"buildDefinition": {"buildType": RUNNER, "externalParameters": {}},
                                           "runDetails": {"builder": {"id": f"{RUNNER}/github-hosted"}}})
            layers.append(("attestation", sigstore.cosign_attestation_layer(statement, identity=signer,
                                                                            issuer=ISSUER)))
        for evidence_kind, layer in layers:
            found = FoundEvidence(kind=evidence_kind, format="cosign-sig" if evidence_kind == "signature"
                                  else "cosign-att", location=f"{repo}:{digest.tag_prefix}.{evidence_kind[:3]}",
                                  covers=digest, level="image", digest=layer.digest, layer=layer)
            artifact_services.store_evidence(artifact, verify.verify_evidence(found, trust_root=core_root,
                                                                              identity=expected))
        policy_services.evaluate_artifacts([artifact.pk], cause=Cause.EVIDENCE, detail="bench sample")
        evidence = list(Evidence.objects.filter(artifact=artifact).values(
            "kind", "format", "location", "digest", "evidence_key", "level", "predicate_type", "outcome",
            "identity", "issuer", "key", "tlog", "integrated_time", "checks", "statement", "payload", "annotations",
            "media_type"))
        trust = ArtifactTrust.objects.filter(artifact=artifact).values("status", "code", "reason", "details").get()
        samples[kind] = (evidence, trust)
        source.delete()
    return samples


def build_fleet(count: int) -> tuple[list[tuple[str, str, str, str]], dict[str, int]]:
    """``count`` artifacts; returns (repository, digest, tag, kind) samples to ask for and the kinds' counts."""
    from django.utils import timezone

    from provenance.artifacts.models import Artifact, Evidence, Tag
    from provenance.core.types import Digest, MediaType
    from provenance.policies.models import ArtifactTrust
    from provenance.sources.models import Source
    from provenance.trust.models import TrustRoot

    samples = build_samples()
    root = TrustRoot.objects.get(name="gate-bench")
    sources = Source.objects.bulk_create([
        Source(name=f"ghcr.io/{repository(j)}", kind=Source.Kind.IMAGE, location=f"ghcr.io/{repository(j)}:latest",
               trust_root=root, expected_issuer=ISSUER, expected_identity_regexp=r"^https://github\.com/myorg/",
               is_scheduled=False) for j in range(REPOSITORIES)])
    now = timezone.now()
    counts = {kind: 0 for kind in KINDS}
    asked = []
    batch = 5000
    for start in range(0, count, batch):
        artifacts, kinds = [], []
        for i in range(start, min(start + batch, count)):
            kind = kind_of(i)
            counts[kind] += 1
            kinds.append(kind)
            artifacts.append(Artifact(source=sources[i % REPOSITORIES], repository=repository(i % REPOSITORIES),
                                      digest=str(Digest.of(os.urandom(32))), media_type=MediaType.OCI_MANIFEST,
                                      status="unsigned" if kind == "unsigned" else "verified", checked_at=now))
        Artifact.objects.bulk_create(artifacts, batch_size=1000)
        tags, evidence, trust = [], [], []
        for n, (artifact, kind) in enumerate(zip(artifacts, kinds, strict=True)):
            tags.append(Tag(artifact=artifact, name=f"v{start + n}"))
            for fields in samples[kind][0]:
                evidence.append(Evidence(artifact=artifact, covers_digest=artifact.digest, **fields))
            trust.append(ArtifactTrust(artifact=artifact, evaluated_at=now, **samples[kind][1]))
            asked.append((artifact.repository, artifact.digest, f"v{start + n}", kind))
        Tag.objects.bulk_create(tags, batch_size=1000)
        Evidence.objects.bulk_create(evidence, batch_size=1000)
        ArtifactTrust.objects.bulk_create(trust, batch_size=1000)
        print(f"  {min(start + batch, count)}/{count} artifacts", flush=True)
    return asked, counts


# -- timing ------------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(label: str, calls: list[Callable[[], Any]], *, check: Callable[[int, Any], None]) -> dict[str, float]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for call in calls[:20]:  # warm-up: connections, caches, imports
        call()
    times = []
    for n, call in enumerate(calls):
        started = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - started) * 1000)
        check(n, response)
    queries = []
    for call in calls[:100]:
        with CaptureQueriesContext(connection) as captured:
            call()
        queries.append(len(captured))
    result = {"p50": statistics.median(times), "p95": percentile(times, 95), "p99": percentile(times, 99),
              "queries": statistics.mean(queries), "max_queries": max(queries)}
    print(f"{label:<44} n={len(calls):>5}  p50 {result['p50']:6.2f} ms  p95 {result['p95']:6.2f} ms  "
          f"p99 {result['p99']:6.2f} ms  SQL/request {result['queries']:.1f} (max {result['max_queries']})")
    return result


def expected_allowed(kind: str) -> bool:
    return kind in {"trusted", "warn"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with BenchDatabase() as database:
        setup_django()
        run(args, database)


def run(args: argparse.Namespace, database: BenchDatabase) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from provenance.api import gate_views
    from provenance.policies import services as policy_services
    from provenance.policies.models import Policy

    print(f"database: {connection.vendor} {connection.settings_dict['NAME']} (created for this run, dropped after)")
    started = time.perf_counter()
    asked, counts = build_fleet(args.artifacts)
    print(f"filled {args.artifacts} artifacts {counts} in {time.perf_counter() - started:.1f} s")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    logging.getLogger("django.request").setLevel(logging.ERROR)  # the text form's 403s are answers, not errors
    gate_views.GateThrottle.rate = "1000000/min"  # the bench is one user far above any real rate
    user = get_user_model().objects.create_user("bench", password="x")
    client = Client()
    client.force_login(user)
    rng = random.Random(args.seed)
    picks = [rng.choice(asked) for _ in range(args.requests)]

    def check_answer(n: int, response: Any, picks: list[tuple[str, str, str, str]] = picks) -> None:
        body = response.json()
        if response.status_code != 200 or body["allowed"] is not expected_allowed(picks[n][3]):
            raise AssertionError(f"wrong answer for {picks[n]}: {response.status_code} {body}")

    def get(image: str) -> Callable[[], Any]:
        return lambda: client.get("/api/v1/check/", {"image": image})

    results = {
        "digest": measure("GET /api/v1/check/?image=…@sha256:…",
                          [get(f"ghcr.io/{r}@{d}") for r, d, _, _ in picks], check=check_answer),
        "tag": measure("GET /api/v1/check/?image=…:tag (stored tag)",
                       [get(f"ghcr.io/{r}:{t}") for r, _, t, _ in picks], check=check_answer),
    }
    text = [lambda r=r, d=d: client.get("/api/v1/check/", {"image": f"ghcr.io/{r}@{d}", "format": "text"})
            for r, d, _, _ in picks[:500]]
    measure("GET …&format=text", text, check=lambda n, resp: None)

    deployment = json.loads((ROOT / "tests" / "api" / "admission" / "deployment-two-containers.json").read_text())
    reviews = []
    for n in range(min(500, len(picks))):
        first, second = picks[n], picks[-1 - n]
        text_review = json.dumps(deployment).replace("{{signed}}", f"ghcr.io/{first[0]}@{first[1]}").replace(
            "{{wrong-identity}}", f"ghcr.io/{second[0]}@{second[1]}")
        reviews.append((text_review, expected_allowed(first[3]) and expected_allowed(second[3])))

    def check_review(n: int, response: Any) -> None:
        if response.json()["response"]["allowed"] is not reviews[n][1]:
            raise AssertionError(f"wrong admission answer: {response.json()}")

    measure("POST /api/v1/admission/ (2 containers)",
            [lambda body=body: client.post("/api/v1/admission/", body, content_type="application/json")
             for body, _ in reviews], check=check_review)

    # A policy edited after the verdicts were stored, before the background re-evaluation ran: answers are
    # recomputed from stored evidence (so the edit takes effect at once).
    policy = Policy.objects.get(name="release-signature")
    policy_services.save_policy(policy.source.replace("name: release-workflow", "name: release-workflow-2"),
                                policy=policy)
    stale = [get(f"ghcr.io/{r}@{d}") for r, d, _, _ in picks[:300]]
    measure("… stale verdicts (policy edited, recomputed)", stale, check=check_answer)

    goal = max(results["digest"]["p95"], results["tag"]["p95"])
    print(f"goal p95 <= 20 ms (digest and tag references): {'met' if goal <= 20 else 'MISSED'} ({goal:.2f} ms); "
          "measured through django.test.Client in one process")


if __name__ == "__main__":
    main()
