"""Dry-run of a ClusterImagePolicy over 10,000 artifacts with stored evidence (target: under 10 s).

Builds a fleet in a temporary SQLite database (or the configured one with --configured-db): every signature and
attestation is made by the test Sigstore and verified by the real verification code, then stored as a scan stores
it. Then it times:

* ``dry_run``: the issue's policy (keyless identities OR a Rego-checked SLSA provenance) over the whole fleet from
  stored evidence, cold (empty per-process caches) and warm (median of several runs);
* ``evaluate_artifacts``: the same with writes (statuses and history), as a background re-evaluation does;
* the obvious alternative: re-verifying every stored signature and attestation cryptographically.

Usage: .venv/bin/python bench/policy_dry_run.py [--artifacts 10000] [--runs 5] [--configured-db]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ISSUE_POLICY = (ROOT / "tests" / "policies" / "issue_policy.yaml").read_text()
ISSUER = "https://token.actions.githubusercontent.com"
RUNNER = "https://github.com/actions/runner"


def workflow(repo: str) -> str:
    return f"https://github.com/{repo}/.github/workflows/release.yml@refs/heads/main"


def setup_django(configured_db: bool) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provenance.settings")
    os.environ["PROVENANCE_DEBUG"] = "1"
    if not configured_db:
        os.environ["PROVENANCE_DATA_DIR"] = tempfile.mkdtemp(prefix="provenance-bench-")
        os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def build_fleet(count: int) -> None:
    """count artifacts in 50 repositories: 60% signed by myorg with runner provenance, 10% signed by an intruder,
    10% provenance only (half with another build type), 10% unsigned, 10% outside the policy's glob."""
    from provenance.artifacts.models import Artifact, Evidence, Tag
    from provenance.artifacts.services import evidence_key
    from provenance.core import verify
    from provenance.core.discovery import FoundEvidence
    from provenance.core.testsigstore import TestSigstore, in_toto_statement
    from provenance.core.trustroot import TrustRoot as CoreTrustRoot
    from provenance.core.types import Digest, IdentityPolicy, MediaType
    from provenance.sources.models import Source
    from provenance.trust import services as trust_services

    sigstore = TestSigstore.create(name="bench")
    root = trust_services.register(name="bench", document=sigstore.trusted_root_json())
    core_root = CoreTrustRoot.from_json(root.document.encode(), name=root.name)
    expected = IdentityPolicy(issuer=ISSUER, identity=workflow("myorg/repo0"))
    source = Source.objects.create(name="bench", kind=Source.Kind.IMAGE, location="ghcr.io/myorg/repo0:v1",
                                   trust_root=root, expected_identity=expected.identity, expected_issuer=ISSUER)
    artifacts = []
    plans = []
    for i in range(count):
        bucket = i % 10
        org = "otherorg" if bucket == 9 else "myorg"
        repository = f"{org}/repo{i % 50}"
        digest = Digest.of(os.urandom(32))
        artifacts.append(Artifact(source=source, repository=repository, digest=str(digest),
                                  media_type=MediaType.OCI_MANIFEST, status="verified"))
        plans.append((bucket, repository, digest))
    Artifact.objects.bulk_create(artifacts, batch_size=1000)
    Tag.objects.bulk_create([Tag(artifact=a, name=f"v{i}") for i, a in enumerate(artifacts)], batch_size=1000)
    rows = []
    started = time.perf_counter()
    for n, (artifact, (bucket, repository, digest)) in enumerate(zip(artifacts, plans, strict=True)):
        reference = f"ghcr.io/{repository}"
        layers = []
        if bucket <= 5 or bucket == 9:
            layers.append(("signature", sigstore.cosign_signature_layer(
                str(digest), reference, identity=workflow(repository), issuer=ISSUER)))
        if bucket == 6:
            layers.append(("signature", sigstore.cosign_signature_layer(
                str(digest), reference, identity=workflow("someone-else/fork"), issuer=ISSUER)))
        if bucket <= 5 or bucket == 7:
            build_type = RUNNER if (bucket <= 5 or n % 2) else "https://example.com/other-builder"
            statement = in_toto_statement(reference, digest.hex, "https://slsa.dev/provenance/v1",
                                          {"buildDefinition": {"buildType": build_type, "externalParameters": {}},
                                           "runDetails": {"builder": {"id": f"{build_type}/github-hosted"}}})
            layers.append(("attestation", sigstore.cosign_attestation_layer(
                statement, identity=workflow(repository), issuer=ISSUER)))
        for kind, layer in layers:
            found = FoundEvidence(kind=kind, format="cosign-sig" if kind == "signature" else "cosign-att",
                                  location=f"{repository}:{digest.tag_prefix}.{kind[:3]}", covers=digest,
                                  level="image", digest=layer.digest, layer=layer)
            item = verify.verify_evidence(found, trust_root=core_root, identity=expected)
            result = item.result
            rows.append(Evidence(
                artifact=artifact, kind=kind, format=found.format, location=found.location,
                digest=str(layer.digest), evidence_key=evidence_key(str(layer.digest), layer.annotations),
                covers_digest=str(digest), level="image",
                predicate_type=found.predicate_type, outcome=str(result.outcome), identity=result.identity,
                issuer=result.issuer, key=result.key, tlog=result.tlog, checks=[c.as_dict() for c in result.checks],
                statement=item.statement, payload=layer.payload, annotations=layer.annotations,
                media_type=layer.media_type))
        if len(rows) >= 2000:
            Evidence.objects.bulk_create(rows, batch_size=500)
            rows = []
        if (n + 1) % 2000 == 0:
            print(f"  built {n + 1}/{count} artifacts ({time.perf_counter() - started:.0f} s)", flush=True)
    Evidence.objects.bulk_create(rows, batch_size=500)


def clear_caches() -> None:
    from provenance.core import policy, rego
    from provenance.policies import services

    policy._REGO_CACHE.data.clear()
    policy._REVERIFY_CACHE.data.clear()
    policy.compile_glob.cache_clear()
    policy._regexp.cache_clear()
    rego._compile.cache_clear()
    services._parse_cached.cache_clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--configured-db", action="store_true", help="use DATABASE_URL instead of a temporary SQLite")
    args = parser.parse_args()
    setup_django(args.configured_db)

    from django.db import connection

    from provenance.artifacts.models import Artifact, Evidence
    from provenance.core import verify
    from provenance.core.discovery import FoundEvidence
    from provenance.core.trustroot import TrustRoot as CoreTrustRoot
    from provenance.core.types import Digest, IdentityPolicy, SignedLayer
    from provenance.policies import services
    from provenance.policies.models import Cause
    from provenance.trust.models import TrustRoot

    print(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    print(f"building {args.artifacts} artifacts signed and attested by the test Sigstore ...", flush=True)
    started = time.perf_counter()
    build_fleet(args.artifacts)
    print(f"  {Artifact.objects.count()} artifacts, {Evidence.objects.count()} evidence rows in "
          f"{time.perf_counter() - started:.0f} s")

    # Current statuses under a narrower policy (only myorg/repo0..9 may sign), so the dry run has real flips.
    narrow = ISSUE_POLICY.replace('subjectRegExp: "https://github.com/myorg/.*"',
                                  'subjectRegExp: "^https://github\\\\.com/myorg/repo[0-9]/"')
    services.save_policy(narrow)
    started = time.perf_counter()
    summary = services.evaluate_artifacts(list(Artifact.objects.values_list("pk", flat=True)), cause=Cause.POLICY,
                                          detail="bench baseline")
    evaluate_seconds = time.perf_counter() - started
    print(f"evaluate_artifacts (with writes, {summary.evaluated} artifacts, {summary.changed} history rows): "
          f"{evaluate_seconds:.2f} s  {summary.counts}")

    clear_caches()
    started = time.perf_counter()
    report = services.dry_run(ISSUE_POLICY)
    cold = time.perf_counter() - started
    warm = []
    for _ in range(args.runs):
        started = time.perf_counter()
        report = services.dry_run(ISSUE_POLICY)
        warm.append(time.perf_counter() - started)
    print(f"dry_run over {report.total} artifacts: cold {cold:.2f} s; warm median {statistics.median(warm):.2f} s "
          f"(min {min(warm):.2f}, max {max(warm):.2f}, {args.runs} runs)")
    print(f"  would flip {report.flip_count}: {report.transitions}; after {report.after}")

    # The obvious alternative: re-verify every stored signature and attestation cryptographically.
    root_row = TrustRoot.objects.get(name="bench")
    core_root = CoreTrustRoot.from_json(root_row.document.encode(), name=root_row.name)
    identity = IdentityPolicy(issuer=ISSUER, identity_regexp=r"https://github\.com/myorg/.*")
    started = time.perf_counter()
    verified = 0
    rows = Evidence.objects.values_list("kind", "format", "location", "digest", "covers_digest", "media_type",
                                        "payload", "annotations").iterator(chunk_size=2000)
    for kind, fmt, location, digest, covers, media_type, payload, notes in rows:
        found = FoundEvidence(kind=kind, format=fmt, location=location, covers=Digest.parse(covers), level="image",
                              digest=Digest.parse(digest), layer=SignedLayer(media_type, bytes(payload), notes))
        verified += verify.verify_evidence(found, trust_root=core_root, identity=identity).result.is_verified
    crypto = time.perf_counter() - started
    print(f"alternative, re-verifying every signature/attestation cryptographically "
          f"({Evidence.objects.count()} layers, {verified} verified; no Rego, no status logic): {crypto:.2f} s")
    print(f"dry run is {crypto / statistics.median(warm):.0f}x faster warm, {crypto / cold:.0f}x cold; "
          f"target < 10 s: {'met' if cold < 10 else 'MISSED'}")


if __name__ == "__main__":
    main()
