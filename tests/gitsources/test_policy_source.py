"""spec.source.requireSignedCommit on the database: SLSA provenance -> git source -> commit -> signature.

Repositories are made with real git and signed gitsign-style by the test Sigstore; fetches run the real fetch
task; in the end-to-end test a real worker fetches the repository and scans images from the real registry.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from django.test import Client

from provenance.artifacts.models import Artifact
from provenance.core.testsigstore import GITHUB_ACTIONS_ISSUER, TestSigstore, in_toto_statement
from provenance.core.types import Digest, MediaType, SignedLayer
from provenance.gitsources import services as git_services
from provenance.gitsources.models import Commit, GitFetch, GitSource
from provenance.gitsources.tasks import fetch_git_source
from provenance.policies import services as policy_services
from provenance.policies.models import ArtifactTrust, Cause, Reevaluation
from provenance.sources import services as source_services
from provenance.sources.models import Scan, Source
from tests.factories import user_with_role
from tests.gitsources.gitsigning import IDENTITY, ISSUER, git, new_repo, signed_commit
from tests.plugins.registry import make_image, push_image
from tests.policies.fleet import APP_WORKFLOW, SLSA_V1, Fleet, make_fleet

POLICY = """apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: signed-source
spec:
  images:
    - glob: "{glob}"
  authorities:
    - name: release
      keyless:
        url: https://fulcio.example
        identities:
          - issuer: {actions}
            subject: {workflow}
  source:
    requireSignedCommit:
      identities:
        - issuer: {issuer}
          subject: {identity}
"""


def _policy(glob: str) -> str:
    return POLICY.format(glob=glob, actions=GITHUB_ACTIONS_ISSUER, workflow=APP_WORKFLOW, issuer=ISSUER,
                         identity=IDENTITY)


def _provenance(reference: str, digest: Digest, repository: str, sha: str) -> bytes:
    predicate = {"buildDefinition": {
        "buildType": "https://github.com/actions/runner",
        "externalParameters": {"workflow": {"repository": repository, "ref": "refs/heads/main",
                                            "path": ".github/workflows/release.yml"}},
        "resolvedDependencies": [{"uri": f"git+{repository}@refs/heads/main", "digest": {"gitCommit": sha}}]},
        "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}}
    return in_toto_statement(reference, digest.hex, SLSA_V1, predicate)


def _repository(path: Path, sigstore: TestSigstore) -> dict[str, str]:
    """main: unsigned <- alice (offline) <- alice (online) <- mallory; feature: alice, off main."""
    repo = new_repo(path)
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "unsigned start")
    shas = {"unsigned": git(repo, "rev-parse", "HEAD")}
    shas["good"] = signed_commit(repo, sigstore, "release", parent=shas["unsigned"]).sha
    shas["online"] = signed_commit(repo, sigstore, "online", parent=shas["good"], offline=False).sha
    shas["mallory"] = signed_commit(repo, sigstore, "mallory", parent=shas["online"],
                                    identity="mallory@example.com").sha
    shas["feature"] = signed_commit(repo, sigstore, "feature", parent=shas["good"], ref="refs/heads/feature").sha
    return shas


def _git_source(repo: Path, fleet_root, **kw: object) -> GitSource:  # type: ignore[no-untyped-def]
    options = {"name": "app", "location": str(repo), "trust_root": fleet_root, "expected_identity": IDENTITY,
               "expected_issuer": ISSUER, "protected_refs": "main", **kw}
    return git_services.create_git_source(**options)  # type: ignore[arg-type]


def test_repository_key_names_a_repository_however_it_is_spelled() -> None:
    key = git_services.repository_key
    same = {key(u) for u in ("https://github.com/MyOrg/App.git", "ssh://git@github.com/myorg/app",
                             "git@github.com:myorg/app.git", "git+https://github.com/myorg/app/")}
    assert same == {"github.com/myorg/app"}
    assert key("file:///srv/Repos/app.git") == key("/srv/Repos/app") == key("file://localhost/srv/Repos/app")
    assert key("/srv/Repos/app") != key("/srv/repos/app")  # local paths keep their case
    assert key("https://github.com") == "" and key("not a url") == "" and key("a\nb") == ""
    assert key("https://github.com/myorg/app") != key("https://github.com/myorg/app-fork")


def _image(fleet: Fleet, name: str, repository: str, sha: str, *, attester: str = APP_WORKFLOW) -> Artifact:
    artifact = fleet.image(name, signers=(APP_WORKFLOW,))
    digest = Digest.parse(artifact.digest)
    statement = _provenance(f"ghcr.io/{name}", digest, repository, sha)
    fleet.store(artifact, "attestation", fleet.sigstore.cosign_attestation_layer(
        statement, identity=attester, issuer=GITHUB_ACTIONS_ISSUER, predicate_type=SLSA_V1))
    return artifact


@pytest.mark.django_db
def test_policy_judges_the_provenance_commit_in_the_stored_git_source(tmp_path: Path) -> None:
    fleet = make_fleet()
    repo = tmp_path / "app"
    shas = _repository(repo, fleet.sigstore)
    source = _git_source(repo, fleet.root)
    fetch = GitFetch.objects.create(source=source)
    fetch_git_source.apply(args=[fetch.pk])
    assert GitFetch.objects.get(pk=fetch.pk).state == "done"
    location = f"file://{repo}"
    images = {name: _image(fleet, f"myorg/{name}", location, shas[name])
              for name in ("good", "unsigned", "online", "mallory", "feature")}
    images["missing"] = _image(fleet, "myorg/missing", location, "0" * 40)
    images["elsewhere"] = _image(fleet, "myorg/elsewhere", "https://github.com/myorg/elsewhere", shas["good"])
    images["by-intruder"] = _image(fleet, "myorg/by-intruder", location, shas["good"],
                                   attester="https://github.com/someone-else/x/.github/workflows/r.yml@refs/heads/x")
    policy_services.save_policy(_policy("ghcr.io/myorg/**"))
    policy_services.evaluate_artifacts([a.pk for a in images.values()], cause=Cause.POLICY)
    found = {name: (t.status, t.code) for name, a in images.items()
             for t in [ArtifactTrust.objects.get(artifact=a)]}
    assert found == {
        "good": ("trusted", "trusted"),
        "unsigned": ("untrusted", "commit_unsigned"),
        "online": ("error", "commit_log_not_checked"),
        "mallory": ("untrusted", "commit_identity_mismatch"),  # the source says untrusted; the policy says who
        "feature": ("untrusted", "commit_not_protected"),
        "missing": ("error", "commit_not_fetched"),
        "elsewhere": ("error", "git_source_missing"),
        "by-intruder": ("untrusted", "identity_mismatch"),  # a provenance by a signer the policy does not accept
    }
    good = ArtifactTrust.objects.get(artifact=images["good"])
    assert f"commit {shas['good'][:12]}" in good.reason and IDENTITY in good.reason

    # The artifact page links image -> provenance -> repository -> commit, with the commit's signature verdict.
    client = Client()
    client.force_login(user_with_role("viewer"))
    commit = Commit.objects.get(source=source, sha=shas["good"])
    page = client.get(f"/artifacts/{images['good'].digest}/").content.decode()
    card = page.split('id="provenance"', 1)[1].split("</section>", 1)[0]
    assert f'href="/git/commits/{commit.pk}/"' in card and "in git source app" in card
    assert "✔ verified" in card and f"signed by {IDENTITY}" in card and "on refs/heads/main" in card
    online = client.get(f"/artifacts/{images['online'].digest}/").content.decode()
    assert "signature valid, log entry not checked" in online.split('id="provenance"', 1)[1]
    missing = client.get(f"/artifacts/{images['missing'].digest}/").content.decode()
    assert "not fetched in git source app" in missing and "/git/commits/" not in missing
    elsewhere = client.get(f"/artifacts/{images['elsewhere'].digest}/").content.decode()
    assert "source-commit" not in elsewhere.split('id="provenance"', 1)[1].split("</section>", 1)[0]

    # The same policy without the git source marking anything protected: could not check, never trusted.
    GitSource.objects.filter(pk=source.pk).update(protected_refs="")
    policy_services.evaluate_artifacts([images["good"].pk], cause=Cause.POLICY)
    assert (ArtifactTrust.objects.get(artifact=images["good"]).code) == "protected_refs_missing"
    # protectedRefs in the policy narrow the source's: the feature branch, protected by the source, is not main.
    GitSource.objects.filter(pk=source.pk).update(protected_refs="main feature")
    narrowed = _policy("ghcr.io/myorg/**") + "      protectedRefs: [main]\n"
    policy_services.save_policy(narrowed, policy=policy_services.Policy.objects.get(name="signed-source"))
    policy_services.evaluate_artifacts([images["good"].pk, images["feature"].pk], cause=Cause.POLICY)
    assert ArtifactTrust.objects.get(artifact=images["good"]).status == "trusted"
    assert ArtifactTrust.objects.get(artifact=images["feature"]).code == "commit_not_protected"


@pytest.mark.django_db
def test_commit_facts_report_each_git_source_of_the_repository(tmp_path: Path) -> None:
    fleet = make_fleet()
    repo = tmp_path / "app"
    shas = _repository(repo, fleet.sigstore)
    fetched = _git_source(repo, fleet.root)
    GitFetch.objects.create(source=fetched)
    fetch_git_source.apply(args=[GitFetch.objects.get(source=fetched).pk])
    _git_source(repo, fleet.root, name="app-again", location=f"file://{repo}.git")  # never fetched
    facts = {f.source: f for f in git_services.commit_facts(f"git+file://{repo}", shas["good"].upper()) or ()}
    assert set(facts) == {"app", "app-again"}
    assert not facts["app-again"].is_fetched
    good = facts["app"]
    assert (good.is_fetched, good.status, good.signature_kind, good.identity) == (True, "verified", "gitsign", IDENTITY)
    assert good.refs == ("refs/heads/feature", "refs/heads/main") and good.protected_refs == ("refs/heads/main",)
    assert good.ref == Commit.objects.get(source=fetched, sha=shas["good"]).pk
    assert git_services.commit_facts("https://github.com/myorg/unknown", shas["good"]) is None


# -- the provenance -> commit link end to end ------------------------------------------------------------------


def _push_cosign_layer(client, repository: str, digest: Digest, suffix: str, layer: SignedLayer) -> None:  # type: ignore[no-untyped-def]
    config = b"{}"
    client.push_blob(repository, config)
    client.push_blob(repository, layer.payload)
    manifest = {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                           "digest": str(Digest.of(config))},
                "layers": [{"mediaType": layer.media_type, "size": len(layer.payload), "digest": str(layer.digest),
                            "annotations": layer.annotations}]}
    client.push_manifest(repository, f"{digest.tag_prefix}{suffix}", json.dumps(manifest).encode(),
                         MediaType.OCI_MANIFEST)


def _wait(row, done, worker, timeout: float = 90):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row.refresh_from_db()
        if done(row):
            return row
        time.sleep(0.25)
    pytest.fail(f"{type(row).__name__} {row.pk} not finished after {timeout}s:\n{worker.log()[-4000:]}")


@pytest.mark.integration
def test_provenance_commit_link_through_a_real_worker(celery_worker, registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet = make_fleet()
    repo = tmp_path / "app"
    shas = _repository(repo, fleet.sigstore)
    git_source = _git_source(repo, fleet.root)
    repository = f"policysrc/{os.urandom(4).hex()}"
    policy_services.save_policy(_policy(f"{registry.host}/{repository}/**"))

    # One image per commit: signature and SLSA provenance by the release workflow, naming the repository.
    tags = {"good": "good", "unsigned": "unsigned", "feature": "feature"}
    with registry.client() as client:
        for name, tag in tags.items():
            image = f"{repository}/{name}"
            digest = push_image(client, image, make_image(f"{repository}-{name}"), tag)
            reference = f"{registry.host}/{image}"
            _push_cosign_layer(client, image, digest, ".sig", fleet.sigstore.cosign_signature_layer(
                str(digest), reference, identity=APP_WORKFLOW, issuer=GITHUB_ACTIONS_ISSUER))
            _push_cosign_layer(client, image, digest, ".att", fleet.sigstore.cosign_attestation_layer(
                _provenance(reference, digest, f"file://{repo}", shas[name]), identity=APP_WORKFLOW,
                issuer=GITHUB_ACTIONS_ISSUER, predicate_type=SLSA_V1))

    # Scanned before the repository is fetched: the commit cannot be checked yet, so "error", not trusted.
    scans = {}
    for name, tag in tags.items():
        source = source_services.create_source(
            name=f"policysrc-{name}", kind=Source.Kind.IMAGE, location=f"{registry.host}/{repository}/{name}:{tag}",
            trust_root=fleet.root, expected_identity=APP_WORKFLOW, expected_issuer=GITHUB_ACTIONS_ISSUER,
            is_insecure=True)
        scans[name] = source_services.start_scan(source)
    for name, scan in scans.items():
        scan = _wait(scan, lambda s: s.is_finished, celery_worker)
        assert scan.state == Scan.State.DONE, (name, scan.error)
    artifacts = {name: Artifact.objects.get(source=scan.source) for name, scan in scans.items()}
    for name, artifact in artifacts.items():
        trust = ArtifactTrust.objects.get(artifact=artifact)
        assert (trust.status, trust.code) == ("error", "commit_not_fetched"), (name, trust.reason)

    # The worker fetches the repository; the fetch re-evaluates the images of the policies over source.
    fetch = _wait(git_services.start_fetch(git_source), lambda f: f.is_finished, celery_worker)
    assert fetch.state == GitFetch.State.DONE, fetch.error
    assert "fetch_git_source" in celery_worker.log()
    job = Reevaluation.objects.get(detail=f"git source {git_source.name} fetched")
    job = _wait(job, lambda j: j.is_finished, celery_worker)
    assert (job.state, job.cause) == ("done", "evidence")
    found = {name: (t.status, t.code) for name, a in artifacts.items()
             for t in [ArtifactTrust.objects.get(artifact=a)]}
    assert found == {"good": ("trusted", "trusted"), "unsigned": ("untrusted", "commit_unsigned"),
                     "feature": ("untrusted", "commit_not_protected")}
    assert Commit.objects.get(source=git_source, sha=shas["good"]).status == "verified"
