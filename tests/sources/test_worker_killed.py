"""A worker killed mid-scan loses nothing: the scan is swept as worker_lost and done again by another worker."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from provenance.artifacts.models import Artifact
from provenance.core.types import Digest, MediaType
from provenance.sources import services
from provenance.sources.models import Scan, Source
from tests.factories import make_sigstore, trust_root_for
from tests.plugins.registry import Scripted
from tests.plugins.worker import start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_scan_whose_worker_is_killed_is_swept_and_done_again(fake_registry, celery_worker, tmp_path):
    config = b"{}"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(Digest.of(config)),
                   "size": len(config)},
        "layers": [],
    }).encode()
    headers = {"Content-Type": MediaType.OCI_MANIFEST, "Docker-Content-Digest": str(Digest.of(manifest))}
    # The first look at the image hangs (the worker is killed meanwhile); later ones answer at once.
    for method in ("HEAD", "GET"):
        fake_registry.add(method, "/v2/app/manifests/v1", Scripted(200, manifest, headers, delay=60),
                          Scripted(200, manifest, headers))
        fake_registry.add(method, f"/v2/app/manifests/{Digest.of(manifest)}", Scripted(200, manifest, headers))
    source = services.create_source(name="killed", kind=Source.Kind.IMAGE, location=f"{fake_registry.host}/app:v1",
                                    trust_root=trust_root_for(make_sigstore()), is_insecure=True)
    first = services.start_scan(source)
    wait(lambda: Scan.objects.get(pk=first.pk).state == Scan.State.RUNNING and fake_registry.requests,
         what="the worker to start the scan")
    celery_worker.process.kill()  # SIGKILL mid-task: no cleanup of any kind runs
    celery_worker.process.wait(timeout=10)
    assert Scan.objects.get(pk=first.pk).state == Scan.State.RUNNING

    assert services.sweep_stuck_scans(older_than=timedelta(0)) == 1
    first.refresh_from_db()
    assert (first.state, first.error_code) == (Scan.State.FAILED, "worker_lost")
    [again] = source.scans.exclude(pk=first.pk)

    second = start_worker(celery_worker.queue, tmp_path / "worker-2.log")
    try:
        wait(lambda: Scan.objects.get(pk=again.pk).is_finished, timeout=90, what="the new scan")
    finally:
        second.stop()
    again.refresh_from_db()
    assert again.state == Scan.State.DONE, (again.error, second.log()[-3000:])
    assert again.error_code == "", (again.error, again.problems)
    artifact = Artifact.objects.get(source=source, digest=str(Digest.of(manifest)))
    assert (artifact.status, artifact.tags.get().name) == ("unsigned", "v1")
