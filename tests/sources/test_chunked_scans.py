"""Large scans are split into chunks that several worker processes do in parallel; the scan stays one row whose
progress is exact; two chunks racing on one digest store it once; a chunk lost with its worker is done again."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from provenance.artifacts.models import Artifact, Tag
from provenance.core.demo import DEMO_ISSUER
from provenance.policies import services as policy_services
from provenance.policies.models import ArtifactTrust
from provenance.sources import services, tasks
from provenance.sources.models import Scan, ScanChunk, Source
from tests.factories import make_sigstore, trust_root_for
from tests.interop.test_cosign_interop import push_cosign_layer
from tests.plugins.registry import RegistryServer, make_image, push_image, unique_repository
from tests.plugins.worker import start_worker

pytestmark = [pytest.mark.integration]

SIGNER = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"


def _fleet(registry: RegistryServer, count: int, *, shared_digest_tags: tuple[str, ...] = ()) -> tuple[str, dict]:
    """``count`` images tagged t00.., every other one signed; ``shared_digest_tags`` all point at image 0."""
    sigstore = make_sigstore()
    repo = unique_repository("chunked")
    tags: dict[str, str] = {}
    with registry.client() as client:
        images = [make_image() for _ in range(count)]
        for i, image in enumerate(images):
            push_image(client, repo, image, f"t{i:02d}")
            tags[f"t{i:02d}"] = str(image.digest)
            if i % 2 == 0:
                push_cosign_layer(client, repo, image.digest, ".sig", sigstore.cosign_signature_layer(
                    str(image.digest), f"{registry.host}/{repo}", identity=SIGNER, issuer=DEMO_ISSUER))
        for tag in shared_digest_tags:
            client.push_manifest(repo, tag, images[0].manifest, images[0].media_type)
            tags[tag] = str(images[0].digest)
    return repo, tags


def _source(registry: RegistryServer, repo: str) -> Source:
    return services.create_source(name=repo.replace("/", "-"), kind=Source.Kind.REPOSITORY,
                                  location=f"{registry.host}/{repo}", trust_root=trust_root_for(make_sigstore()),
                                  is_insecure=True, expected_identity=SIGNER, expected_issuer=DEMO_ISSUER)


def _policy(registry: RegistryServer) -> None:
    policy_services.save_policy(f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {{name: chunked}}
spec:
  images: [{{glob: "{registry.host}/chunked/**"}}]
  authorities:
    - keyless: {{url: "https://fulcio.test", identities: [{{issuer: "{DEMO_ISSUER}", subject: "{SIGNER}"}}]}}
""")


def _wait(predicate, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
def test_two_workers_share_a_chunked_scan_and_its_progress_is_exact(registry, celery_worker, tmp_path, settings,
                                                                     monkeypatch):
    # Tags sort as t00..t10, then "z-*": the shared-digest tags land in another chunk than image 0's own tag.
    repo, tags = _fleet(registry, 11, shared_digest_tags=("z-latest", "z-stable"))
    _policy(registry)
    settings.PROVENANCE_SCAN_CHUNK = 4
    monkeypatch.setenv("PROVENANCE_SCAN_CHUNK", "4")
    celery_worker.stop()  # started before the setting: replace it by two workers that have it
    workers = [start_worker(celery_worker.queue, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        source = _source(registry, repo)
        scan = services.start_scan(source)
        _wait(lambda: Scan.objects.get(pk=scan.pk).is_finished, what="the chunked scan")
    finally:
        for worker in workers:
            worker.stop()
    scan.refresh_from_db()

    assert (scan.state, scan.errors, scan.total, scan.done) == (Scan.State.DONE, 0, 13, 13), scan.problems
    assert list(ScanChunk.objects.filter(scan=scan).values_list("state", flat=True)) == ["done"] * 4
    assert sum(ScanChunk.objects.filter(scan=scan).values_list("succeeded", flat=True)) >= 11
    assert Artifact.objects.filter(source=source).count() == 11  # image 0 once, though two chunks saw it
    stored = {t.name: t.artifact.digest for t in Tag.objects.filter(artifact__source=source).select_related("artifact")}
    assert stored == tags
    statuses = dict(ArtifactTrust.objects.filter(artifact__source=source).values_list("artifact__digest", "status"))
    assert {statuses[tags[f"t{i:02d}"]] for i in range(0, 11, 2)} == {"trusted"}
    assert {statuses[tags[f"t{i:02d}"]] for i in range(1, 11, 2)} == {"unsigned"}
    done_by = [w.log().count("scan_chunk") for w in workers]
    assert all(n > 0 for n in done_by), done_by  # both processes worked on this scan


@pytest.mark.django_db
def test_an_inline_scan_does_its_chunks_one_after_the_other(registry, settings):
    repo, _ = _fleet(registry, 5)
    settings.PROVENANCE_SCAN_CHUNK = 2

    scan = services.scan_here(_source(registry, repo))

    assert (scan.state, scan.total, scan.done, scan.errors, scan.fetched) == (Scan.State.DONE, 5, 5, 0, 5)
    assert ScanChunk.objects.filter(scan=scan, state="done").count() == 3


@pytest.mark.django_db
def test_a_chunk_lost_with_its_worker_is_done_again_and_fails_after_three_tries(registry, settings, monkeypatch):
    repo, _ = _fleet(registry, 6)
    settings.PROVENANCE_SCAN_CHUNK = 2
    sent: list[int] = []
    monkeypatch.setattr(tasks.scan_chunk, "delay", lambda pk: sent.append(pk))
    source = _source(registry, repo)
    scan = Scan.objects.create(source=source)
    assert services.claim_scan(scan.pk)
    services.run_scan(scan.pk)  # the coordinator: lists and splits (its messages are captured, not sent)
    chunks = list(ScanChunk.objects.filter(scan=scan))
    assert len(chunks) == 3
    first, second, third = chunks
    for chunk in (first, second):
        assert services.claim_chunk(chunk.pk)
    services.run_chunk(second.pk)
    # first: its worker died (left running); third: its message was lost (never picked up)
    ScanChunk.objects.filter(pk=first.pk).update(started_at=timezone.now() - timedelta(hours=1))

    assert services.sweep_stuck_scans(older_than=timedelta(0)) == 1
    assert ScanChunk.objects.get(pk=first.pk).state == "pending" and first.pk in sent and third.pk in sent
    for chunk in (first, third):
        assert services.claim_chunk(chunk.pk)
        services.run_chunk(chunk.pk)
    scan.refresh_from_db()
    assert (scan.state, scan.done, scan.total, scan.errors) == (Scan.State.DONE, 6, 6, 0)

    # A chunk whose workers keep dying is failed after three attempts; its targets count as not ingested.
    again = Scan.objects.create(source=source)
    assert services.claim_scan(again.pk)
    services.run_scan(again.pk)
    stuck, *rest = ScanChunk.objects.filter(scan=again)
    for chunk in rest:
        assert services.claim_chunk(chunk.pk)
        services.run_chunk(chunk.pk)
    ScanChunk.objects.filter(pk=stuck.pk).update(state="running", attempts=3,
                                                  started_at=timezone.now() - timedelta(hours=1))
    services.sweep_stuck_scans(older_than=timedelta(0))
    again.refresh_from_db()
    assert (again.state, again.error_code, again.done, again.errors) == (Scan.State.DONE, "partial", 6, 2)
    assert any(p["code"] == "worker_lost" for p in again.problems)
