"""The bare mirror with real git: locations, incremental fetches, bounds, shallow and missing remotes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from provenance.core.errors import MalformedEvidenceError
from provenance.core.gitrepo import MAX_COMMITS, GitError, GitLimits, Mirror, parse_location
from tests.gitsources.gitsigning import git, new_repo


def _commits(repo: Path, count: int, start: int = 1700000000) -> list[str]:
    shas = []
    for i in range(count):
        when = f"@{start + i * 60} +0000"
        git(repo, "commit", "--quiet", "--allow-empty", "-m", f"c{i}",
            env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})
        shas.append(git(repo, "rev-parse", "HEAD"))
    return shas


@pytest.mark.parametrize("location", [
    "ext::sh -c touch% /tmp/pwned", "fd::3", "git://example.com/x.git", "http://example.com/x.git",
    "relative/path", "-uhelp", "--upload-pack=touch /tmp/pwned", "https://example.com/x\n.git", "",
])
def test_refuses_unsafe_locations(location: str) -> None:
    with pytest.raises(MalformedEvidenceError) as err:
        parse_location(location)
    assert err.value.code == "git_location_invalid"


def test_accepts_urls_and_paths(tmp_path: Path) -> None:
    assert parse_location("https://github.com/sigstore/gitsign.git") == "https://github.com/sigstore/gitsign.git"
    assert parse_location("git@github.com:sigstore/gitsign.git") == "git@github.com:sigstore/gitsign.git"
    assert parse_location("ssh://git@example.com/x.git") == "ssh://git@example.com/x.git"
    assert parse_location(str(tmp_path)) == tmp_path.resolve().as_uri()


def test_fetches_incrementally(tmp_path: Path) -> None:
    remote = new_repo(tmp_path / "remote")
    first = _commits(remote, 3)
    git(remote, "tag", "-a", "v1", "-m", "one")
    git(remote, "branch", "other")
    mirror = Mirror(tmp_path / "mirror.git")
    result = mirror.fetch(parse_location(str(remote)), branches=["main"], tag_pattern="v*")
    assert {r.name for r in result.refs} == {"refs/heads/main", "refs/tags/v1"}
    tag = next(r for r in result.refs if r.is_tag)
    assert tag.is_annotated and tag.commit == first[-1]
    assert not result.is_shallow
    assert mirror.rev_list([first[-1]], max_count=10) == first[::-1]
    more = _commits(remote, 2, start=1800000000)
    result = mirror.fetch(parse_location(str(remote)), branches=["main"], tag_pattern="v*")
    main = next(r for r in result.refs if r.name == "refs/heads/main")
    assert main.commit == more[-1]
    since = mirror.rev_list([main.commit], max_count=10, since=datetime.fromtimestamp(1790000000, tz=UTC))
    assert since == more[::-1]
    objects = mirror.read_objects([first[0], "0" * 40])
    assert objects[first[0]][0] == "commit" and objects[first[0]][1].startswith(b"tree ")
    assert "0" * 40 not in objects
    assert mirror.is_ancestor(first[0], main.commit) and not mirror.is_ancestor(main.commit, first[0])


def test_history_far_larger_than_the_limit_is_bounded(tmp_path: Path) -> None:
    remote = new_repo(tmp_path / "remote")
    # 1200 commits written in one fast-import stream.
    stream = []
    for i in range(1200):
        stream.append(f"commit refs/heads/main\ncommitter A <a@example.com> {1700000000 + i} +0000\n"
                      f"data {len(f'c{i}')}\nc{i}\n")
    git(remote, "fast-import", "--quiet", stdin="".join(stream).encode())
    mirror = Mirror(tmp_path / "mirror.git")
    result = mirror.fetch(parse_location(str(remote)))
    head = result.refs[0].commit
    assert len(mirror.rev_list([head], max_count=25)) == 25
    assert len(mirror.rev_list([head], max_count=10**9)) == min(1200, MAX_COMMITS)


def test_missing_repository(tmp_path: Path) -> None:
    with pytest.raises(GitError) as err:
        Mirror(tmp_path / "mirror.git").fetch(parse_location(str(tmp_path / "nothing-here")))
    assert err.value.code == "git_not_found"


def test_shallow_remote_is_reported(tmp_path: Path) -> None:
    remote = new_repo(tmp_path / "remote")
    _commits(remote, 5)
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "--quiet", "--depth=2", "--no-local", parse_location(str(remote)), str(shallow))
    result = Mirror(tmp_path / "mirror.git").fetch(parse_location(str(shallow)))
    assert result.is_shallow and "shallow" in result.warnings[0]
    assert len(Mirror(tmp_path / "mirror.git").rev_list([result.refs[0].commit], max_count=100)) == 2


def test_size_limit_stops_the_fetch(tmp_path: Path) -> None:
    remote = new_repo(tmp_path / "remote")
    (remote / "blob").write_bytes(__import__("os").urandom(3 * 1024 * 1024))
    git(remote, "add", "blob")
    git(remote, "commit", "--quiet", "-m", "big")
    mirror = Mirror(tmp_path / "mirror.git", limits=GitLimits(max_bytes=1024 * 1024))
    with pytest.raises(GitError) as err:
        mirror.fetch(parse_location(str(remote)))
    assert err.value.code == "git_too_large"


def test_remote_configuration_and_hooks_do_not_run(tmp_path: Path) -> None:
    """A hostile local repository: hooks and an upload-pack hook in its own config never run here."""
    remote = new_repo(tmp_path / "remote")
    _commits(remote, 1)
    marker = tmp_path / "pwned"
    hook = remote / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    git(remote, "config", "uploadpack.packObjectsHook", f"touch {marker}; git")
    git(remote, "config", "core.fsmonitor", f"touch {marker}")
    mirror = Mirror(tmp_path / "mirror.git")
    mirror.fetch(parse_location(str(remote)))
    mirror.fetch(parse_location(str(remote)))
    assert not marker.exists()


def test_bad_branch_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MalformedEvidenceError):
        Mirror(tmp_path / "m.git").fetch(parse_location(str(tmp_path)), branches=["main:refs/heads/x"])
    with pytest.raises(MalformedEvidenceError):
        Mirror(tmp_path / "m.git").fetch(parse_location(str(tmp_path)), branches=["../../x"])
