"""Git repositories as sources: a real worker fetches real repositories; pages, API and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from provenance.core.errors import MalformedEvidenceError
from provenance.gitsources import services
from provenance.gitsources.models import Commit, GitFetch, GitRef, GitSource
from provenance.gitsources.tasks import fetch_git_source
from tests.factories import make_sigstore, trust_root_for, user_with_role
from tests.gitsources.gitsigning import (
    IDENTITY,
    ISSUER,
    git,
    gitsign_signature,
    new_repo,
    signed_commit,
    ssh_key,
    ssh_signed_commit,
    write_object,
)

ROOT = Path(__file__).resolve().parents[2]


def _wait(fetch: GitFetch, timeout: float = 60) -> GitFetch:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fetch.refresh_from_db()
        if fetch.is_finished:
            return fetch
        time.sleep(0.2)
    raise AssertionError(f"fetch {fetch.pk} did not finish: {fetch.state}")


def _repository(tmp_path: Path) -> tuple[Path, dict[str, str], str]:
    """main: unsigned <- gitsign offline <- gitsign online <- wrong identity <- SSH; tag v1 signed (gitsign)."""
    sigstore = make_sigstore()
    repo = new_repo(tmp_path / "remote")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "unsigned start")
    shas = {"unsigned": git(repo, "rev-parse", "HEAD")}
    shas["offline"] = signed_commit(repo, sigstore, "offline <script>alert(1)</script>", parent=shas["unsigned"]).sha
    shas["online"] = signed_commit(repo, sigstore, "online", parent=shas["offline"], offline=False).sha
    shas["mallory"] = signed_commit(repo, sigstore, "mallory", parent=shas["online"],
                                    identity="mallory@example.com").sha
    git(repo, "reset", "--quiet", "--soft", shas["mallory"])
    key, allowed = ssh_key(tmp_path)
    shas["ssh"] = ssh_signed_commit(repo, key, "ssh")
    payload = (f"object {shas['offline']}\ntype commit\ntag v1\ntagger Alice <{IDENTITY}> 1700000000 +0000\n\n"
               "v1\n").encode()
    signature, _ = gitsign_signature(payload, sigstore)
    write_object(repo, payload + signature, kind="tag", ref="refs/tags/v1")
    return repo, shas, allowed


def _source(location: str, allowed: str = "", **kw: object) -> GitSource:
    root = trust_root_for(make_sigstore())
    options = {"name": "repo", "location": location, "trust_root": root, "tag_pattern": "v*",
               "expected_identity": IDENTITY, "expected_issuer": ISSUER, "allowed_signers": allowed,
               "protected_refs": "main v*", **kw}
    return services.create_git_source(**options)  # type: ignore[arg-type]


def test_worker_fetches_and_judges_every_commit(celery_worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo, shas, allowed = _repository(tmp_path)
    source = _source(str(repo), allowed)
    fetch = _wait(services.start_fetch(source))
    assert fetch.state == GitFetch.State.DONE, (fetch.error, celery_worker.log()[-3000:])
    assert "fetch_git_source" in celery_worker.log()
    assert (fetch.commits_seen, fetch.commits_new) == (5, 5)
    status = {c.sha: c.status for c in Commit.objects.filter(source=source)}
    assert status == {shas["unsigned"]: "unsigned", shas["offline"]: "verified", shas["online"]: "log_not_checked",
                      shas["mallory"]: "untrusted", shas["ssh"]: "verified"}
    offline = Commit.objects.get(sha=shas["offline"])
    assert (offline.signer_identity, offline.signer_issuer, offline.log_status) == (IDENTITY, ISSUER, "verified")
    assert offline.refs == ["refs/heads/main", "refs/tags/v1"]
    assert services.is_protected(source, offline.refs)
    tag = GitRef.objects.get(source=source, name="refs/tags/v1")
    assert tag.is_annotated and tag.status == "verified" and tag.commit_sha == shas["offline"]
    assert (Path(settings.DATA_DIR) / "git" / f"{source.pk}.git" / "HEAD").exists()

    # Incremental: one new commit, one new row; running the task twice changes nothing.
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "later")
    again = _wait(services.start_fetch(source))
    assert (again.state, again.commits_seen, again.commits_new) == ("done", 6, 1)
    fetch_git_source.apply(args=[again.pk])
    assert Commit.objects.filter(source=source).count() == 6

    # Reverified with another expected signer: the verdicts follow.
    GitSource.objects.filter(pk=source.pk).update(expected_identity="mallory@example.com")
    source.refresh_from_db()
    services.reverify_source(source)
    assert Commit.objects.get(sha=shas["mallory"]).status == "verified"
    assert Commit.objects.get(sha=shas["offline"]).status == "untrusted"


@pytest.mark.django_db
def test_pages_show_verdicts_and_filter(tmp_path: Path) -> None:
    repo, shas, allowed = _repository(tmp_path)
    source = _source(str(repo), allowed)
    fetch = GitFetch.objects.create(source=source)
    fetch_git_source.apply(args=[fetch.pk])
    client = Client()
    client.force_login(user_with_role("viewer"))
    page = client.get(f"/git/{source.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "signature valid, log entry not checked" in page and "✔ verified" in page
    only = client.get(f"/git/{source.pk}/", {"status": "untrusted"}).content.decode()
    commit = Commit.objects.get(sha=shas["mallory"])
    offline = Commit.objects.get(sha=shas["offline"])
    assert f"/git/commits/{commit.pk}/" in only and f"/git/commits/{offline.pk}/" not in only
    detail = client.get(f"/git/commits/{commit.pk}/").content.decode()
    assert "identity_mismatch" in detail and "mallory@example.com" in detail
    progress = client.get(f"/git/{source.pk}/", {"progress": "1"}, HTTP_HX_REQUEST="true")
    assert progress.status_code == 286
    assert client.get("/git/").status_code == 200
    api = client.get("/api/v1/git-commits/", {"source": source.pk, "status": "verified"}).json()
    assert {c["sha"] for c in api["results"]} == {shas["offline"], shas["ssh"]}


@pytest.mark.django_db
def test_history_larger_than_the_limit_is_bounded(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "remote")
    stream = "".join(f"commit refs/heads/main\ncommitter A <a@example.com> {1700000000 + i} +0000\ndata 4\nc{i:03}\n"
                     for i in range(300))
    git(repo, "fast-import", "--quiet", stdin=stream.encode())
    source = _source(str(repo), max_commits=20)
    fetch = GitFetch.objects.create(source=source)
    fetch_git_source.apply(args=[fetch.pk])
    fetch.refresh_from_db()
    assert (fetch.state, fetch.commits_seen) == ("done", 20)
    assert Commit.objects.filter(source=source).count() == 20


@pytest.mark.django_db
def test_missing_repository_fails_the_fetch_with_a_reason(tmp_path: Path) -> None:
    source = _source(str(tmp_path / "nowhere"))
    fetch = GitFetch.objects.create(source=source)
    fetch_git_source.apply(args=[fetch.pk])
    fetch.refresh_from_db()
    source.refresh_from_db()
    assert (fetch.state, fetch.error_code) == ("failed", "git_not_found")
    assert source.last_error.startswith("git_not_found")


@pytest.mark.django_db
def test_shallow_clone_is_flagged(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "remote")
    for i in range(4):
        git(repo, "commit", "--quiet", "--allow-empty", "-m", f"c{i}")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "--quiet", "--depth=1", repo.as_uri(), str(shallow))
    source = _source(str(shallow))
    fetch = GitFetch.objects.create(source=source)
    fetch_git_source.apply(args=[fetch.pk])
    source.refresh_from_db()
    assert source.is_shallow and "shallow" in source.warning
    assert Commit.objects.filter(source=source).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("location", ["ext::sh -c id", "relative/dir", "http://example.com/r.git"])
def test_unsafe_locations_are_refused(location: str) -> None:
    with pytest.raises(MalformedEvidenceError):
        _source(location)
    client = Client()
    client.force_login(user_with_role("operator"))
    response = client.post("/api/v1/git-sources/", {"name": "x", "location": location,
                                                     "trust_root": trust_root_for(make_sigstore()).pk})
    assert response.status_code == 400


def test_verify_commit_command(tmp_path: Path) -> None:
    sigstore = make_sigstore()
    repo = new_repo(tmp_path / "repo")
    good = signed_commit(repo, sigstore, "good").sha
    online = signed_commit(repo, sigstore, "online", parent=good, offline=False, ref="refs/heads/online").sha
    root_file = tmp_path / "trusted_root.json"
    root_file.write_bytes(sigstore.trusted_root_json())

    def run(rev: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "verify-commit", str(repo), rev, "--certificate-identity", IDENTITY,
             "--certificate-oidc-issuer", ISSUER, "--trusted-root", str(root_file), "--json", *extra],
            cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PROVENANCE_DEBUG": "1",
                                                           "PROVENANCE_DATA_DIR": str(tmp_path / "data")})

    ok = run("main")
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert (body["commit"], body["identity"], body["issuer"], body["log_status"]) == (good, IDENTITY, ISSUER,
                                                                                      "verified")
    assert body["reasons"] == []
    not_logged = run(online)
    assert not_logged.returncode == 1
    assert json.loads(not_logged.stdout)["status"] == "log_not_checked"
    assert run("no-such-branch").returncode != 0
    default_root = subprocess.run([sys.executable, "manage.py", "verify-commit", str(repo), "main",
                                   "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER],
                                  cwd=ROOT, capture_output=True, text=True,
                                  env={"PATH": "/usr/bin:/bin", "PROVENANCE_DEBUG": "1",
                                       "PROVENANCE_DATA_DIR": str(tmp_path / "data")})
    assert default_root.returncode == 1 and "chain_untrusted" in default_root.stdout
