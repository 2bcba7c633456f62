"""The end-to-end slice: a real registry, a real Celery worker process, the real database and broker.

An image reference is ingested; the worker fetches its cosign `.sig`, verifies it against the trust root and the
expected identity, stores the result; the artifact page and the API show it.
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.db import connection

from provenance.core.demo import DEMO_IDENTITY, DEMO_ISSUER, build_demo_fleet
from provenance.core.ocilayout import push_layout
from provenance.sources import services
from provenance.sources.models import Scan, Source
from tests.factories import UserFactory, make_sigstore, trust_root_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for(scan: Scan, timeout: float = 90) -> Scan:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scan.refresh_from_db()
        if scan.is_finished:
            return scan
        time.sleep(0.25)
    raise AssertionError(f"scan {scan.pk} still {scan.state} after {timeout}s")


@pytest.fixture
def demo_in_registry(registry, tmp_path):
    sigstore = make_sigstore()
    images = build_demo_fleet(tmp_path / "layout", sigstore)
    from provenance.core.ocilayout import OciLayout

    with registry.client() as client:
        push_layout(OciLayout(tmp_path / "layout"), client, "demo/fleet")
    return {image.tag: image for image in images}, trust_root_for(sigstore)


def test_worker_verifies_images_from_the_real_registry(registry, celery_worker, demo_in_registry, client, capsys):
    images, root = demo_in_registry
    with capsys.disabled():  # shown in the CI log: which real components this run used
        print(f"\ne2e: database={connection.vendor} broker={settings.CELERY_BROKER_URL.split(':')[0]} "
              f"registry=docker-registry@{registry.host} worker pid={celery_worker.process.pid}")
    scans = {}
    for tag in ("signed", "wrong-identity", "tampered", "unsigned", "copied-signature", "multiarch"):
        source = services.create_source(
            name=f"e2e-{tag}", kind=Source.Kind.IMAGE, location=f"{registry.host}/demo/fleet:{tag}",
            trust_root=root, expected_identity=DEMO_IDENTITY, expected_issuer=DEMO_ISSUER, is_insecure=True,
        )
        scans[tag] = services.start_scan(source)
    for tag, scan in scans.items():
        scan = wait_for(scan)
        assert scan.state == Scan.State.DONE, (tag, scan.error, celery_worker.log()[-3000:])
    assert "scan_source" in celery_worker.log(), "the worker process did not run the task"

    client.force_login(UserFactory())
    expected = {
        "signed": ("verified", "verified"),
        "wrong-identity": ("failed", "identity_mismatch"),
        "tampered": ("failed", "signature_invalid"),
        "unsigned": ("unsigned", "no_signature"),
        "copied-signature": ("failed", "digest_mismatch"),
        "multiarch": ("verified", "verified"),
    }
    for tag, (status, code) in expected.items():
        digest = str(images[tag].digest)
        body = client.get(f"/api/v1/artifacts/{digest}/").json()
        assert (body["status"], body["status_code"]) == (status, code), (tag, body)
        assert body["verified"] is (status == "verified")
        if status != "verified":
            assert body["reason"], f"{tag}: a failure must say why"
        page = client.get(f"/artifacts/{digest}/", follow=True).content.decode()
        assert {"verified": "✔ verified", "failed": "✘ failed", "unsigned": "○ unsigned"}[status] in page
        if body["reason"]:
            from django.utils.html import escape

            assert escape(body["reason"]) in page

    signed = client.get(f"/api/v1/artifacts/{images['signed'].digest}/").json()
    [signature] = [e for e in signed["evidence"] if e["kind"] == "signature"]
    assert signature["identity"] == DEMO_IDENTITY and signature["issuer"] == DEMO_ISSUER
    assert signature["tlog"] == "inclusion_promise"
    attestations = sorted(e["predicate_type"] for e in signed["evidence"] if e["kind"] == "attestation")
    assert attestations == ["https://slsa.dev/provenance/v1", "https://spdx.dev/Document"]
    assert all(e["verified"] for e in signed["evidence"])

    multiarch = client.get(f"/api/v1/artifacts/{images['multiarch'].digest}/").json()
    assert sorted(p["platform"] for p in multiarch["platforms"]) == ["linux/amd64", "linux/arm64"]
    assert all(p["status"] == "verified" for p in multiarch["platforms"])
