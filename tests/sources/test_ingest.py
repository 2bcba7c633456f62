"""Ingestion of registry repositories, layouts and layout tars: tags → digests with history, evidence fetched
once per digest, idempotent scans, cheap re-scans, progress and problems on the scan, the ingest command."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from provenance.artifacts.models import Artifact, Evidence, Tag, TagEvent
from provenance.core.demo import build_demo_fleet
from provenance.core.types import MediaType
from provenance.sources import services
from provenance.sources.models import Scan, Source
from provenance.sources.tasks import rescan_sources
from tests.factories import UserFactory, make_sigstore, run_scan_now, trust_root_for
from tests.plugins.registry import (
    CosignCli,
    RegistryServer,
    SampleImage,
    make_image,
    make_index,
    push_image,
    unique_repository,
)

pytestmark = pytest.mark.django_db


run = run_scan_now


def repository_source(registry: RegistryServer, repo: str, **kwargs) -> Source:
    kwargs.setdefault("trust_root", trust_root_for(make_sigstore()))
    return services.create_source(name=kwargs.pop("name", repo), kind=Source.Kind.REPOSITORY,
                                  location=f"{registry.host}/{repo}", is_insecure=True, **kwargs)


def tags_of(source: Source) -> dict[str, str]:
    return {t.name: t.artifact.digest for t in Tag.objects.filter(artifact__source=source).select_related("artifact")}


def created_image(when: str) -> SampleImage:
    """An image whose manifest says when it was created."""
    image = make_image()
    manifest = json.loads(image.manifest)
    manifest["annotations"] = {"org.opencontainers.image.created": when}
    return SampleImage(image.config, image.layer, json.dumps(manifest).encode())


@pytest.mark.integration
def test_repository_scan_fetches_each_digest_once_and_records_where_tags_pointed(
    registry: RegistryServer, cosign_cli: CosignCli
) -> None:
    repo = unique_repository("repo")
    first, second = make_image(), make_image()
    with registry.client() as client:
        push_image(client, repo, first, "v1")
        client.push_manifest(repo, "latest", first.manifest, first.media_type)
        client.push_manifest(repo, "stable", first.manifest, first.media_type)
        push_image(client, repo, second, "v2")
    cosign_cli.sign(f"{registry.host}/{repo}@{first.digest}")
    source = repository_source(registry, repo)

    scan = run(source)

    assert (scan.state, scan.errors, scan.total, scan.done) == (Scan.State.DONE, 0, 4, 4)
    assert (scan.fetched, scan.unchanged) == (2, 0)  # four tags, two digests: each looked at once
    assert tags_of(source) == {"latest": str(first.digest), "stable": str(first.digest), "v1": str(first.digest),
                               "v2": str(second.digest)}
    assert Artifact.objects.filter(source=source).count() == 2
    [signature] = Evidence.objects.filter(artifact__source=source)
    assert (signature.covers_digest, signature.format) == (str(first.digest), "cosign-sig")
    history = {(e.tag, e.digest, e.previous_digest) for e in TagEvent.objects.filter(source=source)}
    assert history == {(t, d, "") for t, d in tags_of(source).items()}
    source.refresh_from_db()
    assert source.last_scanned_at is not None and source.last_error == ""


@pytest.mark.integration
def test_a_second_scan_changes_nothing_and_skips_unchanged_evidence(registry: RegistryServer,
                                                                    cosign_cli: CosignCli) -> None:
    repo = unique_repository("again")
    image, other = make_image(), make_image()
    with registry.client() as client:
        push_image(client, repo, image, "v1")
        push_image(client, repo, other, "v2")
    cosign_cli.sign(f"{registry.host}/{repo}@{image.digest}")
    source = repository_source(registry, repo)
    run(source)
    before = sorted(Evidence.objects.filter(artifact__source=source).values_list("pk", "digest", "outcome"))
    checked = dict(Artifact.objects.filter(source=source).values_list("digest", "checked_at"))

    again = run(source)

    assert (again.fetched, again.unchanged, again.errors) == (0, 2, 0)
    assert sorted(Evidence.objects.filter(artifact__source=source).values_list("pk", "digest", "outcome")) == before
    assert dict(Artifact.objects.filter(source=source).values_list("digest", "checked_at")) == checked
    assert TagEvent.objects.filter(source=source).count() == 2

    # New evidence for one digest: only that one is fetched again.
    predicate = {"buildType": "x", "builder": {"id": "b"}}
    cosign_cli.attest(f"{registry.host}/{repo}@{other.digest}", predicate, "slsaprovenance")
    third = run(source)
    assert (third.fetched, third.unchanged) == (1, 1)
    assert Evidence.objects.filter(artifact__digest=str(other.digest), kind="attestation").count() == 1

    # Verification settings changed: every digest is verified again, without relying on the old verdicts.
    source.expected_issuer = "https://issuer.example.test"
    source.save()
    fourth = run(source)
    assert (fourth.fetched, fourth.unchanged) == (2, 0)


@pytest.mark.integration
def test_tags_are_resolved_by_one_request_each_a_conditional_one_once_seen(registry: RegistryServer,
                                                                            monkeypatch) -> None:
    from provenance.core.oci import RegistryClient

    repo = unique_repository("resolve")
    image, other = make_image(), make_image()
    with registry.client() as client:
        push_image(client, repo, image, "v1")
        push_image(client, repo, other, "v2")
    calls: list[tuple[str, str]] = []
    for name in ("head_manifest", "get_manifest", "get_manifest_if_changed"):
        original = getattr(RegistryClient, name)

        def counted(self, repository, reference, *args, _name=name, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            result = _original(self, repository, reference, *args, **kwargs)
            calls.append((_name, str(reference), result is None))
            return result

        monkeypatch.setattr(RegistryClient, name, counted)
    source = repository_source(registry, repo)

    run(source)  # new tags: a GET each, whose manifest discovery uses (no HEAD, no second GET by digest)
    assert sorted((n, r) for n, r, _ in calls if r in ("v1", "v2") or r.startswith("sha256:")) == [
        ("get_manifest", "v1"), ("get_manifest", "v2")]

    calls.clear()
    again = run(source)  # seen tags: one conditional GET each, answered 304
    assert (again.fetched, again.unchanged) == (0, 2)
    assert sorted(c for c in calls if c[1] in ("v1", "v2")) == [
        ("get_manifest_if_changed", "v1", True), ("get_manifest_if_changed", "v2", True)]

    with registry.client() as client:  # v2 moves to v1's image: the conditional GET brings the manifest
        client.push_manifest(repo, "v2", image.manifest, image.media_type)
    calls.clear()
    run(source)
    assert ("get_manifest_if_changed", "v2", False) in calls
    assert tags_of(source) == {"v1": str(image.digest), "v2": str(image.digest)}


@pytest.mark.integration
def test_an_unchanged_image_is_evaluated_again_only_when_its_names_changed_or_its_verdict_is_missing(
    registry: RegistryServer, cosign_cli: CosignCli
) -> None:
    from provenance.policies import services as policy_services
    from provenance.policies.models import ArtifactTrust

    repo = unique_repository("evaluate")
    image, other = make_image(), make_image()
    with registry.client() as client:
        push_image(client, repo, image, "dev")
        push_image(client, repo, other, "v2")
    cosign_cli.sign(f"{registry.host}/{repo}@{image.digest}")
    # Only release tags are judged: which images a policy covers depends on their tags.
    key = "".join(f"          {line}\n" for line in cosign_cli.public_key.decode().splitlines())
    policy_services.save_policy(f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {{name: releases}}
spec:
  images: [{{glob: "{registry.host}/{repo}:release-*"}}]
  authorities:
    - ignoreTlog: true
      key:
        data: |
{key}""")
    source = repository_source(registry, repo)
    run(source)
    trust = {t.artifact.digest: t for t in ArtifactTrust.objects.filter(artifact__source=source)
             .select_related("artifact")}
    assert trust[str(image.digest)].code == "no_policy"

    again = run(source)  # nothing changed: no verdict read, written or re-dated

    assert (again.fetched, again.unchanged) == (0, 2)
    after = {t.artifact.digest: (t.status, t.evaluated_at)
             for t in ArtifactTrust.objects.filter(artifact__source=source).select_related("artifact")}
    assert after == {d: (t.status, t.evaluated_at) for d, t in trust.items()}

    # A release tag now names the unchanged image: its evidence is the same, its names are not.
    with registry.client() as client:
        client.push_manifest(repo, "release-1", image.manifest, image.media_type)
    retagged = run(source)
    assert (retagged.fetched, retagged.unchanged) == (0, 2)
    judged = ArtifactTrust.objects.get(artifact__source=source, artifact__digest=str(image.digest))
    assert judged.status == "trusted", judged.reason
    assert ArtifactTrust.objects.get(artifact__source=source,
                                     artifact__digest=str(other.digest)).evaluated_at == after[str(other.digest)][1]

    # A worker that stored evidence and was stopped before it evaluated it: the next scan evaluates it.
    ArtifactTrust.objects.filter(artifact__source=source, artifact__digest=str(other.digest)).delete()
    run(source)
    assert ArtifactTrust.objects.get(artifact__source=source, artifact__digest=str(other.digest)).code == "no_policy"


@pytest.mark.integration
def test_tag_moves_and_deletions_are_recorded_in_the_history(registry: RegistryServer, client) -> None:
    web = client
    repo = unique_repository("moves")
    old, new = make_image(), make_image()
    with registry.client() as client:
        push_image(client, repo, old, "latest")
        push_image(client, repo, old, "v1")
        source = repository_source(registry, repo)
        run(source)
        push_image(client, repo, new, "latest")
        client.push_manifest(repo, "v1", new.manifest, new.media_type)  # v1 moves too ...
        client.delete_manifest(repo, old.digest)  # ... and the old image is gone
        push_image(client, repo, new, "v2")
        scan = run(source)

    assert scan.errors == 0
    assert tags_of(source) == {"latest": str(new.digest), "v1": str(new.digest), "v2": str(new.digest)}
    latest = list(TagEvent.objects.filter(source=source, tag="latest").order_by("seen_at", "pk"))
    assert [(e.previous_digest, e.digest, e.change) for e in latest] == [
        ("", str(old.digest), "added"), (str(old.digest), str(new.digest), "moved")]

    with registry.client() as client:
        client.delete_manifest(repo, new.digest)
        push_image(client, repo, old, "v9")
    run(source)
    gone = TagEvent.objects.filter(source=source, tag="v2").order_by("-seen_at", "-pk").first()
    assert gone is not None and (gone.change, gone.previous_digest) == ("removed", str(new.digest))
    assert tags_of(source) == {"v9": str(old.digest)}
    web.force_login(UserFactory())
    history = web.get(f"/api/v1/sources/{source.pk}/tag-history/").json()["results"]
    assert history[0]["change"] in {"added", "removed"}
    assert {(e["tag"], e["change"]) for e in history} >= {("latest", "moved"), ("v2", "removed"), ("v9", "added")}
    page = web.get(f"/sources/{source.pk}/").content.decode()
    assert "Tag history" in page and "removed" in page


@pytest.mark.integration
def test_tag_pattern_and_newest_select_tags(registry: RegistryServer) -> None:
    repo = unique_repository("select")
    with registry.client() as client:
        for tag, when in [("v1.0", "2024-01-01T00:00:00Z"), ("v1.1", "2024-03-01T00:00:00Z"),
                          ("v2.0", "2024-02-01T00:00:00.123456789Z"), ("nightly", "2024-04-01T00:00:00+02:00")]:
            push_image(client, repo, created_image(when), tag)
    matching = repository_source(registry, repo, name="matching", tag_pattern="v1.*")
    newest = repository_source(registry, repo, name="newest", newest=2)
    newest_v = repository_source(registry, repo, name="newest-v", newest=2, tag_pattern="v*")

    run(matching), run(newest), run(newest_v)

    assert set(tags_of(matching)) == {"v1.0", "v1.1"}
    assert set(tags_of(newest)) == {"nightly", "v1.1"}
    assert set(tags_of(newest_v)) == {"v1.1", "v2.0"}


@pytest.mark.integration
def test_index_and_platforms_are_artifacts_with_problems_on_the_scan(registry: RegistryServer) -> None:
    repo = unique_repository("index")
    amd64, arm64 = make_image(), make_image()
    with registry.client() as client:
        push_image(client, repo, amd64)
        push_image(client, repo, arm64)
        index = client.push_manifest(repo, "v1", make_index((amd64, "linux/amd64"), (arm64, "linux/arm64")),
                                     MediaType.OCI_INDEX)
        client.delete_manifest(repo, arm64.digest)  # an index whose arm64 manifest is gone
        source = repository_source(registry, repo)
        scan = run(source)

    root = Artifact.objects.get(source=source, digest=str(index))
    assert [(c.digest, c.platform) for c in root.children.all()] == [(str(amd64.digest), "linux/amd64")]
    assert scan.state == Scan.State.DONE and scan.errors == 0
    [problem] = scan.problems
    assert problem["code"] == "not_found" and str(arm64.digest) in problem["message"]
    assert problem["reference"].startswith(f"{repo}:v1@{index}")
    assert root.evidence_fingerprint == ""  # looked at again next time


def test_layout_tar_source_is_extracted_and_scanned(tmp_path, settings) -> None:
    sigstore = make_sigstore()
    images = build_demo_fleet(tmp_path / "fleet", sigstore)
    tar_path = tmp_path / "fleet.tar"
    with tarfile.open(tar_path, "w") as archive:
        archive.add(tmp_path / "fleet", arcname=".")
    source = services.create_source(name="tar", kind=Source.Kind.LAYOUT_TAR, location=str(tar_path),
                                    trust_root=trust_root_for(sigstore))

    scan = run(source)

    assert (scan.state, scan.errors, scan.total) == (Scan.State.DONE, 0, len(images))
    assert set(tags_of(source)) == {image.tag for image in images}
    repositories = Artifact.objects.filter(source=source, parent__isnull=True).values_list("repository", flat=True)
    assert set(repositories) == {"fleet"}
    assert not list((settings.DATA_DIR / "scratch").glob(f"layout-{source.pk}-*"))  # the scratch copy is removed


def test_bad_source_definitions_are_refused(tmp_path) -> None:
    root = trust_root_for(make_sigstore())
    cases = [
        (Source.Kind.REPOSITORY, "registry.example.test/app:v1", {}, "bad_reference"),
        (Source.Kind.IMAGE, "registry.example.test/app:v1", {"tag_pattern": "v*"}, "bad_filter"),
        (Source.Kind.REPOSITORY, "registry.example.test/app", {"newest": 0}, "bad_filter"),
        (Source.Kind.LAYOUT_TAR, str(tmp_path), {}, "bad_layout"),
        (Source.Kind.IMAGE, "registry.example.test/app:v1", {"signature_repository": "../x"}, "bad_reference"),
    ]
    for kind, location, extra, code in cases:
        with pytest.raises(Exception) as caught:
            services.create_source(name="bad", kind=kind, location=location, trust_root=root, **extra)
        assert getattr(caught.value, "code", None) == code, (kind, location, extra)
    assert not Source.objects.filter(name="bad").exists()


def test_beat_rescans_only_sources_that_are_due(tmp_path, settings) -> None:
    assert "provenance.sources.tasks.rescan_sources" in {e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    from provenance.core.ocilayout import OciLayout

    root = trust_root_for(make_sigstore())
    layout = OciLayout.init(tmp_path / "empty")

    def source(name: str, **fields) -> Source:
        row = services.create_source(name=name, kind=Source.Kind.LAYOUT, location=str(layout.path), trust_root=root)
        Source.objects.filter(pk=row.pk).update(**fields)
        return row

    due = source("due", last_scanned_at=timezone.now() - timedelta(hours=2))
    never = source("never")
    source("fresh", last_scanned_at=timezone.now())
    source("unscheduled", is_scheduled=False)
    busy = source("busy", last_scanned_at=timezone.now() - timedelta(hours=2))
    Scan.objects.create(source=busy, state=Scan.State.RUNNING)
    failing = source("failed-recently")
    Scan.objects.create(source=failing, state=Scan.State.FAILED, error_code="authentication_failed")

    assert rescan_sources.apply().get() == 2
    assert set(Scan.objects.filter(state=Scan.State.PENDING).values_list("source__name", flat=True)) == {
        due.name, never.name}


@pytest.mark.integration
def test_ingest_command_scans_with_progress(registry: RegistryServer, cosign_cli: CosignCli) -> None:
    repo = unique_repository("cmd")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
        push_image(client, repo, make_image(), "v2")
    cosign_cli.sign(f"{registry.host}/{repo}@{digest}")
    trust_root_for(make_sigstore())
    out = io.StringIO()

    call_command("ingest", f"{registry.host}/{repo}", "--all-tags", "--insecure", "--trust-root", "provenance-test",
                 "--wait", stdout=out)

    text = out.getvalue()
    assert "1/2 images" in text and "2/2 images" in text  # plain lines when not on a terminal
    assert "done: 2/2 images, 2 fetched" in text
    source = Source.objects.get(name=f"{registry.host}/{repo}")
    assert source.kind == Source.Kind.REPOSITORY
    assert Evidence.objects.filter(artifact__source=source, covers_digest=str(digest)).count() == 1

    queued = io.StringIO()
    call_command("ingest", f"{registry.host}/{repo}:v1", "--insecure", "--trust-root", "provenance-test",
                 stdout=queued)
    assert "queued" in queued.getvalue()
    assert Scan.objects.filter(source__kind=Source.Kind.IMAGE, state=Scan.State.PENDING).count() == 1


def test_progress_bar_on_a_terminal_redraws_one_line() -> None:
    from django.core.management.base import OutputWrapper

    from provenance.sources.management.commands.ingest import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = Progress(OutputWrapper(stream))
    for done in (0, 1, 2):
        bar(Scan(done=done, total=2, errors=done // 2))
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1
    assert "[" + "#" * 30 + "] 2/2 images, 1 error" in text


def test_digest_references_are_resolved_without_tags(registry: RegistryServer) -> None:
    repo = unique_repository("bydigest")
    with registry.client() as client:
        digest = push_image(client, repo, make_image())
    source = services.create_source(name="d", kind=Source.Kind.IMAGE, location=f"{registry.host}/{repo}@{digest}",
                                    trust_root=trust_root_for(make_sigstore()), is_insecure=True)
    scan = run(source)
    assert (scan.state, scan.total, scan.done) == (Scan.State.DONE, 1, 1)
    assert Artifact.objects.get(source=source).digest == str(digest)
    assert not TagEvent.objects.filter(source=source).exists()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_scans_a_repository_and_reports_progress(registry: RegistryServer, cosign_cli: CosignCli,
                                                         celery_worker) -> None:
    import time

    repo = unique_repository("worker")
    with registry.client() as client:
        digests = [push_image(client, repo, make_image(), f"v{n}") for n in range(3)]
    cosign_cli.sign(f"{registry.host}/{repo}@{digests[0]}")
    source = repository_source(registry, repo)
    scan = services.start_scan(source)
    deadline = time.monotonic() + 90
    while not scan.is_finished and time.monotonic() < deadline:
        time.sleep(0.25)
        scan.refresh_from_db()

    assert (scan.state, scan.done, scan.total, scan.errors, scan.fetched) == (Scan.State.DONE, 3, 3, 0, 3), (
        scan.error, celery_worker.log()[-3000:])
    assert "scan_source" in celery_worker.log()
    assert Artifact.objects.get(source=source, digest=str(digests[0])).evidence.get().format == "cosign-sig"


@pytest.mark.integration
def test_a_source_with_a_private_ca_is_scanned_over_tls(tls_registry: RegistryServer) -> None:
    repo = unique_repository("tls")
    with tls_registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
    root = trust_root_for(make_sigstore())
    trusted = services.create_source(name="tls", kind=Source.Kind.IMAGE, location=f"{tls_registry.host}/{repo}:v1",
                                     trust_root=root, ca_certificates=tls_registry.ca_pem or "")
    untrusted = services.create_source(name="tls-no-ca", kind=Source.Kind.IMAGE,
                                       location=f"{tls_registry.host}/{repo}:v1", trust_root=root)
    assert (run(trusted).state, Artifact.objects.get(source=trusted).digest) == (Scan.State.DONE, str(digest))
    failed = run(untrusted)
    assert (failed.state, failed.error_code) == (Scan.State.FAILED, "tls_verify_failed")
    assert "certificate" in failed.error.lower()


@pytest.mark.integration
def test_scans_verify_key_based_signatures_with_registered_keys(registry: RegistryServer,
                                                                cosign_cli: CosignCli) -> None:
    from provenance.trust import services as trust_services

    repo = unique_repository("keys")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
    cosign_cli.sign(f"{registry.host}/{repo}@{digest}")  # --tlog-upload=false: never logged
    strict = repository_source(registry, repo, name=f"{repo}-strict")
    relaxed = repository_source(registry, repo, name=f"{repo}-relaxed", ignore_tlog=True)

    def evidence(source: Source) -> Evidence:
        return Evidence.objects.get(artifact__source=source, kind="signature", covers_digest=str(digest))

    run(relaxed)
    assert evidence(relaxed).outcome == "untrusted"  # no key registered: nothing to verify a key signature with
    assert [c["code"] for c in evidence(relaxed).failures] == ["certificate_missing"]

    key = trust_services.add_public_key(name="release", pem=cosign_cli.public_key)
    run(strict)
    run(relaxed)  # the registered keys are part of what verification depends on: a re-scan looks again

    assert [c["code"] for c in evidence(strict).failures] == ["tlog_missing"]
    signature = evidence(relaxed)
    assert signature.outcome == "verified" and signature.key == key.fingerprint
    assert signature.tlog == "not_logged"
    assert "lenient_not_logged" in {c["code"] for c in signature.checks}
