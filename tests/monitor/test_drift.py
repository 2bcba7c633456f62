"""Fleet drift from real scans: images pushed to a real registry and signed by the test Sigstore, scanned, changed,
scanned again. Each change is one event of its kind (none for an unchanged re-scan), whether or not a policy
covers the image, and an alert rule delivers it to a webhook receiver on 127.0.0.1 and to Django's test outbox.

The tests are transactional: ``scan_finished`` is sent on commit, as it is in production.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from provenance.core.demo import DEMO_ISSUER
from provenance.core.oci import Digest, MediaType, RegistryClient
from provenance.core.testsigstore import SignedLayer, TestSigstore, in_toto_statement
from provenance.monitor import services as monitor
from provenance.monitor.drift import on_scan_finished
from provenance.monitor.models import Event
from provenance.policies import services as policy_services
from provenance.sources import services as source_services
from provenance.sources import signals
from provenance.sources.models import Scan, ScanChunk, Source
from provenance.trust import services as trust_services
from tests.factories import make_sigstore, trust_root_for
from tests.monitor.conftest import SECRET, Receiver
from tests.plugins.registry import RegistryServer, make_image, make_index, push_image, unique_repository
from tests.plugins.worker import start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SIGNER = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
OTHER_SIGNER = "https://github.com/acme/tools/.github/workflows/release.yml@refs/heads/main"
ACME = r"https://github\.com/acme/.*"
SLSA = "https://slsa.dev/provenance/v1"


@pytest.fixture(autouse=True)
def nudges(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[None]]:
    """Deliveries are sent by the test (``send_due_deliveries``), not by a worker: count the nudges instead."""
    sent: list[None] = []
    monkeypatch.setattr(monitor, "_nudge_deliveries", lambda: sent.append(None))
    yield sent


@pytest.fixture
def announced() -> Iterator[list[int]]:
    """The scans ``scan_finished`` was sent for, in order."""
    scans: list[int] = []

    def count(sender: type[Scan], scan: Scan, **kwargs: Any) -> None:
        scans.append(scan.pk)

    signals.scan_finished.connect(count, sender=Scan, dispatch_uid="test-drift-count")
    yield scans
    signals.scan_finished.disconnect(sender=Scan, dispatch_uid="test-drift-count")


def push_layer(client: RegistryClient, repo: str, digest: Digest, suffix: str, *layers: SignedLayer) -> Digest:
    """Attach a cosign ``.sig``/``.att`` manifest holding ``layers``; returns the manifest's digest."""
    config = b"{}"
    client.push_blob(repo, config)
    for layer in layers:
        client.push_blob(repo, layer.payload)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                   "digest": str(Digest.of(config))},
        "layers": [{"mediaType": layer.media_type, "size": len(layer.payload), "digest": str(layer.digest),
                    "annotations": layer.annotations} for layer in layers],
    }
    return client.push_manifest(repo, f"{digest.tag_prefix}{suffix}", json.dumps(manifest).encode(),
                                MediaType.OCI_MANIFEST)


class Fleet:
    """One repository in the session registry, a source scanning it and a policy covering it."""

    def __init__(self, registry: RegistryServer, *, sigstore: TestSigstore | None = None,
                 trust_root: Any = None, policy: bool = True) -> None:
        self.registry = registry
        self.sigstore = sigstore or make_sigstore()
        self.repo = unique_repository("drift")
        self.image = f"{registry.host}/{self.repo}"
        if policy:
            policy_services.save_policy(f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {{name: drift-{self.repo.split('/')[1]}}}
spec:
  images: [{{glob: "{self.image}**"}}]
  authorities:
    - keyless: {{url: "https://fulcio.test", identities: [{{issuer: "{DEMO_ISSUER}", subjectRegExp: '{ACME}'}}]}}
""")
        self.source = source_services.create_source(
            name=self.repo.replace("/", "-"), kind=Source.Kind.REPOSITORY, location=self.image,
            trust_root=trust_root or trust_root_for(self.sigstore), is_insecure=True,
            expected_identity_regexp=ACME, expected_issuer=DEMO_ISSUER)

    def push(self, tag: str, *, signer: str | None = SIGNER, attest: bool = False) -> Digest:
        """A new image under ``tag``, signed by ``signer`` (None: unsigned) and optionally attested."""
        with self.registry.client() as client:
            digest = push_image(client, self.repo, make_image(), tag)
            if signer:
                self.sign(digest, signer)
            if attest:
                statement = in_toto_statement(self.image, digest.hex, SLSA, {"buildDefinition": {}})
                push_layer(client, self.repo, digest, ".att", self.sigstore.cosign_attestation_layer(
                    statement, identity=SIGNER, issuer=DEMO_ISSUER))
        return digest

    def sign(self, digest: Digest, *signers: str) -> Digest:
        """(Re)place the image's ``.sig`` by one holding a signature from each of ``signers``."""
        with self.registry.client() as client:
            return push_layer(client, self.repo, digest, ".sig", *(self.sigstore.cosign_signature_layer(
                str(digest), self.image, identity=signer, issuer=DEMO_ISSUER) for signer in signers))

    def unsign(self, digest: Digest, suffix: str = ".sig") -> None:
        with self.registry.client() as client:
            found = client.head_manifest(self.repo, f"{digest.tag_prefix}{suffix}")
            assert found is not None
            client.delete_manifest(self.repo, found)

    def scan(self) -> Scan:
        scan = source_services.scan_here(self.source)
        assert scan.state == Scan.State.DONE and scan.errors == 0, scan.problems
        return scan


def events(kind: str | None = None) -> list[Event]:
    rows = Event.objects.order_by("pk")
    return list(rows.filter(kind=kind) if kind else rows)


def kinds() -> list[str]:
    return [e.kind for e in events()]


def test_an_unchanged_rescan_raises_nothing_and_a_moved_tag_is_one_event_delivered(
        registry: RegistryServer, receiver: Receiver, announced: list[int], nudges: list[None]) -> None:
    fleet = Fleet(registry)
    first = fleet.push("v1", attest=True)
    fleet.push("stable")
    fleet.scan()
    assert kinds() == []  # a first look is a baseline: tags first seen, first verdicts, first signers
    fleet.scan()
    assert kinds() == []  # nothing changed

    monitor.save_rule({"name": "hook", "channel": "webhook", "url": receiver.url, "secret": SECRET,
                       "kinds": ["tag_moved"]}, sources=[fleet.source])
    monitor.save_rule({"name": "mail", "channel": "email", "emails": "ops@example.test", "kinds": ["tag_moved"]})
    moved = fleet.push("v1", attest=True)
    scan = fleet.scan()

    assert kinds() == ["tag_moved"]
    event = events()[0]
    assert event.source == fleet.source and event.artifact is not None and event.artifact.digest == str(moved)
    assert event.detail == {"repository": fleet.repo, "tag": "v1", "digest": str(moved),
                            "previous_digest": str(first)}
    assert event.policies == [f"drift-{fleet.repo.split('/')[1]}"]
    assert len(announced) == 3 and announced[-1] == scan.pk and nudges

    assert monitor.send_due_deliveries() == 2
    assert [(r["kind"], r["detail"]["digest"]) for r in receiver.received] == [("tag_moved", str(moved))]
    assert receiver.rejected == 0
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ops@example.test"]
    assert f"{fleet.repo}:v1" in mail.outbox[0].subject + mail.outbox[0].body

    fleet.scan()
    assert kinds() == ["tag_moved"] and monitor.send_due_deliveries() == 0


def test_a_signature_gone_is_one_event_and_its_verdict_flip_another(registry: RegistryServer,
                                                                     receiver: Receiver) -> None:
    fleet = Fleet(registry)
    digest = fleet.push("v1", attest=True)
    fleet.scan()
    monitor.save_rule({"name": "hook", "channel": "webhook", "url": receiver.url, "secret": SECRET})

    fleet.unsign(digest, ".sig")
    fleet.scan()

    assert sorted(kinds()) == ["evidence_gone", "verdict_flipped"], [e.title for e in events()]
    gone = events("evidence_gone")[0]
    assert gone.source == fleet.source and gone.artifact.digest == str(digest)
    assert gone.detail["digest"] == str(digest) and gone.detail["kind"] == "signature"
    assert gone.detail["signer"] == f"{SIGNER} ({DEMO_ISSUER})"
    flip = events("verdict_flipped")[0]
    assert (flip.detail["from"], flip.detail["to"], flip.severity) == ("trusted", "untrusted", "critical")
    assert flip.detail["digest"] == str(digest) and flip.source == fleet.source

    assert monitor.send_due_deliveries() == 2
    assert sorted(r["kind"] for r in receiver.received) == ["evidence_gone", "verdict_flipped"]

    fleet.scan()
    assert len(events()) == 2  # still gone: no news

    fleet.unsign(digest, ".att")
    fleet.scan()
    assert [e.detail["kind"] for e in events("evidence_gone")] == ["signature", "attestation"]
    flips = [(e.detail["from"], e.detail["to"], e.severity) for e in events("verdict_flipped")]
    assert flips == [("trusted", "untrusted", "critical"), ("untrusted", "unsigned", "warning")]


def test_a_new_signer_is_one_event_for_the_source(registry: RegistryServer) -> None:
    fleet = Fleet(registry)
    fleet.push("v1")
    fleet.scan()

    second = fleet.push("v2", signer=OTHER_SIGNER)
    third = fleet.push("v3", signer=OTHER_SIGNER)
    fleet.scan()

    assert kinds() == ["new_signer"]
    event = events()[0]
    assert event.source == fleet.source and event.detail["identity"] == OTHER_SIGNER
    assert event.detail["issuer"] == DEMO_ISSUER and event.detail["digest"] in {str(second), str(third)}

    fourth = fleet.push("v4", signer=None)
    fleet.sign(fourth, SIGNER, OTHER_SIGNER)  # known signers only: nothing new
    fleet.scan()
    assert kinds() == ["new_signer"]


def test_drift_is_noticed_without_a_policy(registry: RegistryServer) -> None:
    fleet = Fleet(registry, policy=False)
    fleet.push("v1")
    stays = fleet.push("v2")
    fleet.scan()
    fleet.unsign(stays)
    moved = fleet.push("v1")
    fleet.scan()
    assert sorted(kinds()) == ["evidence_gone", "tag_moved"]
    assert events("tag_moved")[0].detail["digest"] == str(moved) and events("tag_moved")[0].policies == []


def test_a_trust_root_expiring_soon_is_one_event(registry: RegistryServer, settings: Any) -> None:
    settings.PROVENANCE_MONITOR_EXPIRY_DAYS = 30
    sigstore = make_sigstore()
    document = json.loads(sigstore.trusted_root_json())  # a copy: its windows are one shared dict
    soon = timezone.now().replace(microsecond=0) + timedelta(days=10)
    later = timezone.now().replace(microsecond=0) + timedelta(days=90)
    document["certificateAuthorities"][0]["validFor"]["end"] = soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    document["tlogs"][0]["publicKey"]["validFor"]["end"] = later.strftime("%Y-%m-%dT%H:%M:%SZ")
    root = trust_services.register(name="drift-expiring", document=json.dumps(document).encode())
    fleet = Fleet(registry, trust_root=root)
    fleet.push("v1")
    fleet.scan()

    assert kinds() == ["trust_root_expiring"]
    event = events()[0]
    assert event.detail["trust_root"] == "drift-expiring" and "certificate authority" in event.detail["what"]
    assert event.detail["expires_at"] == soon.isoformat() and event.source is None
    fleet.scan()
    assert kinds() == ["trust_root_expiring"]

    settings.PROVENANCE_MONITOR_EXPIRY_DAYS = 120  # now the log key's end is near too
    fleet.scan()
    assert kinds() == ["trust_root_expiring"] * 2
    assert "log key" in events()[1].detail["what"] and events()[1].detail["expires_at"] == later.isoformat()


def test_a_chunked_scan_computes_drift_once(registry: RegistryServer, settings: Any, announced: list[int],
                                           receiver: Receiver) -> None:
    settings.PROVENANCE_SCAN_CHUNK = 2
    fleet = Fleet(registry)
    tags = [f"t{i}" for i in range(5)]
    before = {tag: fleet.push(tag) for tag in tags}
    fleet.scan()
    assert kinds() == [] and ScanChunk.objects.count() == 3
    monitor.save_rule({"name": "hook", "channel": "webhook", "url": receiver.url, "secret": SECRET})

    moved = {tag: fleet.push(tag) for tag in ("t0", "t2", "t4")}  # one in each chunk
    fleet.unsign(before["t3"])
    scan = fleet.scan()

    assert ScanChunk.objects.filter(scan=scan, state="done").count() == 3
    assert announced.count(scan.pk) == 1
    assert sorted(kinds()) == ["evidence_gone", "tag_moved", "tag_moved", "tag_moved", "verdict_flipped"]
    assert {e.detail["tag"]: e.detail["digest"] for e in events("tag_moved")} == {
        t: str(d) for t, d in moved.items()}
    assert events("evidence_gone")[0].detail["digest"] == str(before["t3"])
    assert monitor.send_due_deliveries() == 5 and len(receiver.received) == 5
    fleet.scan()
    assert len(events()) == 5


def test_changes_stored_by_a_scan_that_died_are_reported_by_the_next_one(registry: RegistryServer,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(registry)
    first = fleet.push("v1")
    fleet.push("v2")
    fleet.scan()
    fleet.unsign(first)
    moved = fleet.push("v2")

    def killed(scan_id: int, messages: list[str]) -> None:
        raise KeyboardInterrupt  # the worker dies after storing its results, before the scan is finished

    monkeypatch.setattr(source_services, "_finish_scan", killed)
    with pytest.raises(KeyboardInterrupt):
        source_services.scan_here(fleet.source)
    monkeypatch.undo()
    monkeypatch.setattr(monitor, "_nudge_deliveries", lambda: None)
    monkeypatch.setattr("provenance.sources.tasks.scan_source.delay_on_commit", lambda pk: None)
    assert source_services.sweep_stuck_scans(older_than=timedelta(0)) == 1  # failed as worker_lost
    assert kinds() == []

    scan = fleet.scan()  # nothing changed since the dead scan stored it all
    assert scan.unchanged == scan.total == 2
    assert sorted(kinds()) == ["evidence_gone", "tag_moved", "verdict_flipped"]
    assert events("evidence_gone")[0].detail["digest"] == str(first)
    assert events("verdict_flipped")[0].detail["digest"] == str(first)
    assert events("tag_moved")[0].detail["digest"] == str(moved)
    fleet.scan()
    assert len(events()) == 3


def test_new_signers_alike_in_their_first_two_hundred_characters_are_two_events(registry: RegistryServer) -> None:
    fleet = Fleet(registry)
    fleet.push("v1")
    fleet.scan()
    stem = "https://github.com/acme/" + "x" * 200 + "/.github/workflows/release.yml@refs/heads/"
    fleet.push("v2", signer=stem + "main")
    fleet.push("v3", signer=stem + "evil")
    fleet.scan()

    assert sorted(e.detail["identity"] for e in events("new_signer")) == [stem + "evil", stem + "main"]


def test_a_scan_announced_twice_raises_each_event_once(registry: RegistryServer) -> None:
    fleet = Fleet(registry)
    first = fleet.push("v1")
    fleet.push("v2", signer=None)
    fleet.scan()
    fleet.unsign(first)
    fleet.push("v2")
    scan = fleet.scan()
    assert sorted(kinds()) == ["evidence_gone", "tag_moved", "verdict_flipped"]

    signals.scan_finished.send_robust(sender=Scan, scan=scan)  # two chunks finishing at once both announce

    assert sorted(kinds()) == ["evidence_gone", "tag_moved", "verdict_flipped"]


def test_drift_from_a_chunked_scan_by_workers_is_delivered_by_a_worker(
        registry: RegistryServer, celery_worker: Any, receiver: Receiver, tmp_path: Path, settings: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings.PROVENANCE_SCAN_CHUNK = 2
    monkeypatch.setenv("PROVENANCE_SCAN_CHUNK", "2")
    celery_worker.stop()  # started before the setting: replace it by two workers that have it
    workers = [start_worker(celery_worker.queue, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        fleet = Fleet(registry)
        before = {f"t{i}": fleet.push(f"t{i}") for i in range(5)}
        _scan_by_worker(fleet.source)
        monitor.save_rule({"name": "hook", "channel": "webhook", "url": receiver.url, "secret": SECRET,
                           "kinds": ["tag_moved", "evidence_gone"]})
        moved = fleet.push("t1")
        fleet.unsign(before["t4"])
        scan = _scan_by_worker(fleet.source)
        assert ScanChunk.objects.filter(scan=scan, state="done").count() == 3
        _wait(lambda: len(receiver.received) >= 2, what="the deliveries")
        time.sleep(1)  # a second delivery of the same event would come now
    finally:
        for worker in workers:
            worker.stop()

    assert sorted(kinds()) == ["evidence_gone", "tag_moved", "verdict_flipped"]
    assert sorted((r["kind"], r["detail"]["digest"]) for r in receiver.received) == [
        ("evidence_gone", str(before["t4"])), ("tag_moved", str(moved))]
    assert receiver.rejected == 0


def _scan_by_worker(source: Source) -> Scan:
    scan = source_services.start_scan(source)
    _wait(lambda: Scan.objects.get(pk=scan.pk).is_finished, what="the scan")
    scan.refresh_from_db()
    assert scan.state == Scan.State.DONE and scan.errors == 0, scan.problems
    return scan


def _wait(predicate: Any, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_the_first_signer_of_a_source_scanned_unsigned_is_a_new_signer(registry: RegistryServer) -> None:
    fleet = Fleet(registry)
    fleet.push("v1", signer=None)
    fleet.scan()
    assert kinds() == []

    signed = fleet.push("v2")
    fleet.scan()

    assert kinds() == ["new_signer"]
    assert events()[0].detail["identity"] == SIGNER and events()[0].detail["digest"] == str(signed)


def test_signers_stored_before_monitoring_are_no_news(registry: RegistryServer) -> None:
    fleet = Fleet(registry)
    fleet.push("v1")
    assert signals.scan_finished.disconnect(sender=Scan, dispatch_uid="monitor-drift")
    try:
        fleet.scan()  # a scan from before the monitor was installed
    finally:
        signals.scan_finished.connect(on_scan_finished, sender=Scan, dispatch_uid="monitor-drift")

    fleet.push("v2")
    fleet.scan()

    assert kinds() == []


def test_a_multi_platform_image_losing_its_signature_is_one_event_of_each_kind(registry: RegistryServer) -> None:
    fleet = Fleet(registry)
    with registry.client() as client:
        amd64, arm64 = make_image(), make_image()
        push_image(client, fleet.repo, amd64)
        push_image(client, fleet.repo, arm64)
        index = client.push_manifest(fleet.repo, "v1", make_index((amd64, "linux/amd64"), (arm64, "linux/arm64")),
                                     MediaType.OCI_INDEX)
    fleet.sign(index, SIGNER)
    fleet.scan()
    fleet.unsign(index)
    fleet.scan()

    assert sorted(kinds()) == ["evidence_gone", "verdict_flipped"], [e.title for e in events()]
    assert {e.detail["digest"] for e in events()} == {str(index)}
