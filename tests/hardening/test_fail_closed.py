"""Fail closed over time: when a re-scan finds the evidence behind a verdict gone, replaced or no longer readable,
the verdict changes (with its reason and a history row); scans a broker lost are sent again, then given up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from provenance.policies import services as policy_services
from provenance.policies.models import TrustEvent
from provenance.sources import services
from provenance.sources.models import Scan
from provenance.sources.tasks import scan_source
from tests.hardening.conftest import IDENTITY, ISSUER, Hostile, scan
from tests.plugins.registry import Scripted

pytestmark = pytest.mark.django_db

POLICY = f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: release-signature
spec:
  images:
    - glob: "**"
  authorities:
    - name: release
      keyless:
        identities:
          - issuer: "{ISSUER}"
            subject: "{IDENTITY}"
"""


@pytest.fixture
def verified(hostile: Hostile):
    """A signed image, scanned once: verified and trusted under a policy requiring its signer."""
    policy_services.save_policy(POLICY)
    _, digest = hostile.image("v1")
    good = hostile.signature(digest)
    hostile.list_tags()
    source = hostile.source()
    row = scan(source)
    artifact = source.artifacts.get(digest=str(digest))
    assert (artifact.status, artifact.trust.status) == ("verified", "trusted"), row.problems
    return source, artifact, good


def _sig_routes(hostile: Hostile, digest: str) -> list[tuple[str, str]]:
    tag = f"sha256-{digest.split(':', 1)[1]}.sig"
    return [("HEAD", f"/v2/app/manifests/{tag}"), ("GET", f"/v2/app/manifests/{tag}")]


def _rescan_and_check(source, artifact, status: str, code: str, trust: str) -> None:
    row = scan(source)
    assert row.state == Scan.State.DONE, (row.error_code, row.error)
    artifact.refresh_from_db()
    artifact.trust.refresh_from_db()
    assert (artifact.status, artifact.status_code) == (status, code), artifact.status_reason
    assert artifact.trust.status == trust
    event = TrustEvent.objects.filter(artifact=artifact).order_by("-at", "-pk").first()
    assert event is not None and (event.previous_status, event.status) == ("trusted", trust)
    assert event.cause == "evidence"


def test_a_signature_tag_that_starts_answering_403_is_no_longer_verified(hostile: Hostile, verified) -> None:
    source, artifact, _ = verified
    for route in _sig_routes(hostile, artifact.digest):
        hostile.server.routes[route] = [Scripted(403, b'{"errors":[{"code":"DENIED","message":"x"}]}')]
    _rescan_and_check(source, artifact, "error", "authentication_failed", "error")
    assert "403" in artifact.status_reason


def test_a_signature_blob_that_starts_answering_403_is_no_longer_verified(hostile: Hostile, verified) -> None:
    source, artifact, good = verified
    from provenance.core.types import Digest

    hostile.server.routes[("GET", f"/v2/app/blobs/{Digest.of(good.payload)}")] = [Scripted(403)]
    # The .sig manifest is unchanged, so the cheap check rightly calls the evidence unchanged (those very bytes
    # were verified). When the image is looked at in full again (new trust settings, a forgotten fingerprint as
    # here), a payload that can no longer be read is "could not check", not a kept "verified".
    artifact.evidence_fingerprint = ""
    artifact.save(update_fields=["evidence_fingerprint"])
    _rescan_and_check(source, artifact, "error", "authentication_failed", "error")


def test_a_signature_that_is_gone_makes_the_image_unsigned(hostile: Hostile, verified) -> None:
    source, artifact, _ = verified
    for route in _sig_routes(hostile, artifact.digest):
        hostile.server.routes[route] = [Scripted(404)]
    hostile.tags.remove(next(t for t in hostile.tags if t.endswith(".sig")))
    hostile.server.routes.pop(("GET", "/v2/app/tags/list"))
    hostile.list_tags()
    _rescan_and_check(source, artifact, "unsigned", "no_signature", "unsigned")
    assert not artifact.evidence.filter(kind="signature").exists()


def test_a_signature_replaced_by_a_hostile_layer_fails(hostile: Hostile, verified) -> None:
    source, artifact, good = verified
    from provenance.core.types import Digest, SignedLayer

    for route in _sig_routes(hostile, artifact.digest):
        hostile.server.routes.pop(route)
    forged = SignedLayer(good.media_type, good.payload.replace(b'"critical"', b'"critical" '), good.annotations)
    hostile.evidence(Digest.parse(artifact.digest), ".sig", [forged])
    _rescan_and_check(source, artifact, "failed", "signature_invalid", "untrusted")
    assert artifact.evidence.filter(kind="signature").count() == 1
    assert artifact.evidence.get(kind="signature").outcome != "verified"


def test_a_scan_the_broker_lost_is_sent_again_then_given_up(hostile: Hostile, settings, monkeypatch) -> None:
    settings.PROVENANCE_PENDING_SCAN_TIMEOUT = 60
    source = hostile.source()
    sent: list[int] = []
    monkeypatch.setattr(scan_source, "delay", lambda scan_id: sent.append(scan_id))
    lost = Scan.objects.create(source=source)
    fresh = Scan.objects.create(source=Scan.objects.get(pk=lost.pk).source)
    Scan.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(seconds=90))
    assert services.sweep_stuck_scans() == 1
    assert sent == [lost.pk]  # the fresh one is left alone
    Scan.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(seconds=60 * 4 + 1))
    services.sweep_stuck_scans()
    lost.refresh_from_db()
    assert (lost.state, lost.error_code) == (Scan.State.FAILED, "never_started")
    assert "Redis persistence" in lost.error
    fresh.refresh_from_db()
    assert fresh.state == Scan.State.PENDING


def test_a_resent_scan_runs_once(hostile: Hostile) -> None:
    _, digest = hostile.image("v1")
    hostile.list_tags()
    row = Scan.objects.create(source=hostile.source())
    scan_source.apply(args=[row.pk])
    scan_source.apply(args=[row.pk])  # the duplicate message the sweep may have sent
    row.refresh_from_db()
    assert row.state == Scan.State.DONE and row.source.artifacts.count() == 1
    assert sum(r.path in (f"/v2/app/manifests/{digest}", "/v2/app/manifests/v1") and r.method == "GET"
               for r in hostile.server.requests) == 1
