"""Git repositories, read safely: a bare mirror fetched incrementally, refs, bounded commit lists, raw objects.

Everything a remote sends is attacker-controlled, and so is a local repository's own configuration. Git is run:

* without a shell (an argument list), with ``--`` before every location or revision a user gave;
* with no system or global configuration (``GIT_CONFIG_NOSYSTEM=1``, ``GIT_CONFIG_GLOBAL=/dev/null``) and no hooks
  (``-c core.hooksPath=/dev/null``), no fsmonitor, no credential helper, no prompts, no replace objects (which could
  show other content under a commit's name), and object checks on every fetch (``transfer.fsckObjects``);
* only over the allowed transports (``GIT_ALLOW_PROTOCOL``: https, ssh, file), never ``ext::`` or ``fd::``;
* with a time limit per command, and a size limit on the mirror while a fetch runs (the fetch is killed beyond it).

A shallow remote gives a shallow mirror: that is recorded (:attr:`FetchResult.is_shallow`), never hidden.

Framework-free: no Django, no Celery.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from provenance.core.errors import MalformedEvidenceError, ProvenanceError, TransientError

__all__ = [
    "ALLOWED_PROTOCOLS",
    "MAX_COMMITS",
    "MAX_OBJECT_BYTES",
    "FetchResult",
    "GitError",
    "GitLimits",
    "Mirror",
    "Ref",
    "git_env",
    "parse_location",
    "ref_names",
]

ALLOWED_PROTOCOLS = ("https", "ssh", "file")
MAX_COMMITS = 5000  # commits per source, whatever a source asks for
MAX_OBJECT_BYTES = 1024 * 1024  # a commit or tag object; real ones are a few KiB, gitsign's ~5 KiB
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+:(?!//)[^\s]*$")
_REF_NAME = re.compile(r"^[A-Za-z0-9._/+-]{1,200}$")


class GitError(ProvenanceError):
    """Git could not do what was asked (no such repository, a bad location, a limit reached)."""

    code = "git_error"


@dataclass(frozen=True, slots=True)
class GitLimits:
    """Bounds on one source: seconds per git command, bytes of the mirror, commits listed."""

    timeout: float = 300.0
    max_bytes: int = 2 * 1024**3
    max_commits: int = 1000


@dataclass(frozen=True, slots=True)
class Ref:
    """A branch or tag of the mirror: ``target`` is what the ref names (a tag object for annotated tags),
    ``commit`` the commit it leads to."""

    name: str
    target: str
    commit: str
    is_tag: bool
    is_annotated: bool


@dataclass(frozen=True, slots=True)
class FetchResult:
    refs: tuple[Ref, ...]
    is_shallow: bool
    size_bytes: int
    warnings: tuple[str, ...] = field(default_factory=tuple)


def parse_location(location: str) -> str:
    """Return the URL git is given for ``location``: an https, ssh or file URL, an scp-like ``host:path``, or an
    absolute local path (as a ``file://`` URL, so that git uses upload-pack and its checks, not a raw copy).

    Raises :class:`MalformedEvidenceError` (``git_location_invalid``) for anything else: other transports
    (``ext::``, ``git://``, ``http://``), relative paths, options in disguise (a leading ``-``), control characters.
    """
    text = (location or "").strip()
    if not text or len(text) > 1000 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text) or text.startswith("-"):
        raise MalformedEvidenceError(f"not a git location: {text[:100]!r}", code="git_location_invalid")
    if "::" in text.split("/", 1)[0]:
        raise MalformedEvidenceError(
            f"git remote helpers ({text.split('::', 1)[0]}::) are not allowed: {text[:100]!r}",
            code="git_location_invalid",
        )
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in ALLOWED_PROTOCOLS:
            raise MalformedEvidenceError(
                f"the {scheme}:// transport is not allowed (allowed: {', '.join(ALLOWED_PROTOCOLS)})",
                code="git_location_invalid",
            )
        return text
    if text.startswith("/"):
        return Path(text).resolve().as_uri()
    if _SCP_LIKE.match(text):
        return text  # ssh, scp-like syntax
    raise MalformedEvidenceError(
        f"not a git location: {text[:100]!r} (give an https, ssh or file URL, host:path, or an absolute path)",
        code="git_location_invalid",
    )


def git_env(home: Path) -> dict[str, str]:
    """The whole environment git runs with: nothing inherited but PATH, no configuration but the repository's."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_ALLOW_PROTOCOL": ":".join(ALLOWED_PROTOCOLS),
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes",
    }


_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.askPass=/bin/false",
    "credential.helper=",
    "transfer.fsckObjects=true",
    "fetch.fsckObjects=true",
    "gc.auto=0",
    "maintenance.auto=false",
    "protocol.allow=never",
    *(f"protocol.{name}.allow=always" for name in ALLOWED_PROTOCOLS),
)


class Mirror:
    """A bare mirror of one remote at ``path`` (created on first fetch)."""

    def __init__(self, path: Path, *, limits: GitLimits = GitLimits()) -> None:
        self.path = Path(path)
        self.limits = limits
        self._home = Path(tempfile.gettempdir()) / "provenance-git-home"

    # -- running git --

    def _argv(self, args: Sequence[str]) -> list[str]:
        argv = ["git"]
        for item in _SAFE_CONFIG:
            argv += ["-c", item]
        return [*argv, "--git-dir", str(self.path), *args]

    def _run(self, args: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None) -> bytes:
        self._home.mkdir(mode=0o700, exist_ok=True)
        try:
            done = subprocess.run(
                self._argv(args), input=stdin, capture_output=True, env=git_env(self._home),
                timeout=timeout or self.limits.timeout, check=False, cwd=self.path if self.path.exists() else None,
            )
        except subprocess.TimeoutExpired as err:
            raise TransientError(f"git {args[0]} took longer than {timeout or self.limits.timeout:.0f} s",
                                 code="git_timeout") from err
        except OSError as err:
            raise GitError(f"cannot run git: {err}", code="git_unavailable") from err
        if done.returncode != 0:
            raise GitError(f"git {args[0]} failed: {_stderr(done.stderr)}", code="git_failed")
        return done.stdout

    # -- fetching --

    def fetch(self, url: str, *, branches: Iterable[str] = (), tag_pattern: str = "") -> FetchResult:
        """Fetch ``branches`` (all when empty) and the tags matching the glob ``tag_pattern`` (none when empty)
        from ``url`` (see :func:`parse_location`) into the mirror, incrementally; return its refs.

        Raises :class:`GitError` (``git_not_found``, ``git_failed``, ``git_too_large``) or :class:`TransientError`
        (``git_timeout``; a network failure that may pass).
        """
        refspecs = [f"+refs/heads/{b}:refs/heads/{b}" for b in ref_names(branches)] or [
            "+refs/heads/*:refs/heads/*"]
        if tag_pattern:
            pattern = ref_names([tag_pattern])[0]
            refspecs.append(f"+refs/tags/{pattern}:refs/tags/{pattern}")
        if not (self.path / "HEAD").exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "--quiet", "--bare", "--", str(self.path)], env=git_env(self._mkhome()),
                           capture_output=True, check=True, timeout=60)
        args = ["fetch", "--quiet", "--prune", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules",
                "--update-shallow", "--", url, *refspecs]
        self._fetch_bounded(args)
        warnings = []
        is_shallow = (self.path / "shallow").exists()
        if is_shallow:
            warnings.append("the remote repository is a shallow clone: history ends where it was cut, and older "
                            "commits cannot be checked")
        return FetchResult(self.refs(), is_shallow, _size(self.path), tuple(warnings))

    def _mkhome(self) -> Path:
        self._home.mkdir(mode=0o700, exist_ok=True)
        return self._home

    def _fetch_bounded(self, args: Sequence[str]) -> None:
        """Run a fetch, polling the mirror's size; kill it past :attr:`GitLimits.max_bytes` or the time limit."""
        with tempfile.TemporaryFile() as err_file:
            process = subprocess.Popen(self._argv(args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=err_file, env=git_env(self._mkhome()), start_new_session=True)
            deadline = time.monotonic() + self.limits.timeout
            reason = ""
            while process.poll() is None:
                if time.monotonic() > deadline:
                    reason = "timeout"
                elif _size(self.path) > self.limits.max_bytes:
                    reason = "size"
                if reason:
                    process.kill()
                    process.wait()
                    break
                time.sleep(0.1)
            err_file.seek(0)
            stderr = err_file.read(64 * 1024)
        if reason == "timeout":
            raise TransientError(f"fetching took longer than {self.limits.timeout:.0f} s", code="git_timeout")
        if reason == "size" or _size(self.path) > self.limits.max_bytes:
            _remove_temporary_packs(self.path)
            raise GitError(f"the repository is larger than the limit of {self.limits.max_bytes} bytes; "
                           "fetch fewer branches or raise the limit", code="git_too_large")
        if process.returncode != 0:
            text = _stderr(stderr)
            lowered = text.lower()
            if any(s in lowered for s in ("does not appear to be a git repository", "not found",
                                          "does not exist", "repository '")):
                raise GitError(f"no git repository there: {text}", code="git_not_found")
            if any(s in lowered for s in ("could not resolve host", "connection timed out", "connection refused",
                                          "early eof", "remote end hung up")):
                raise TransientError(f"fetching failed: {text}", code="git_unreachable")
            raise GitError(f"fetching failed: {text}", code="git_failed")

    # -- reading --

    def refs(self) -> tuple[Ref, ...]:
        """Every branch and tag, with the commit each leads to (a tag of a tree or blob leads nowhere: left out)."""
        out = self._run(["for-each-ref", "--format=%(objectname) %(objecttype) %(refname) %(*objectname) "
                         "%(*objecttype)", "refs/heads", "refs/tags"])
        refs = []
        for line in out.decode("utf-8", "replace").splitlines():
            parts = line.split(" ")
            if len(parts) != 5:
                continue
            target, kind, name, peeled, peeled_kind = parts
            if kind == "commit":
                refs.append(Ref(name, target, target, name.startswith("refs/tags/"), False))
            elif kind == "tag" and peeled_kind == "commit":
                refs.append(Ref(name, target, peeled, True, True))
        return tuple(refs)

    def rev_list(self, commits: Iterable[str], *, max_count: int, since: datetime | None = None) -> list[str]:
        """The newest ``max_count`` commits (at most :data:`MAX_COMMITS`) reachable from ``commits``, newest
        first, optionally only those committed since ``since``."""
        starts = [c for c in commits if _SHA_RE.match(c)]
        if not starts:
            return []
        count = max(0, min(max_count, MAX_COMMITS))
        args = ["rev-list", f"--max-count={count}", "--date-order"]
        if since is not None:
            args.append(f"--since={int(since.astimezone(UTC).timestamp())}")
        out = self._run([*args, *starts, "--"])
        return [line for line in out.decode("ascii", "replace").split() if _SHA_RE.match(line)]

    def read_objects(self, shas: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """Raw objects by name: ``{sha: (type, content)}``. An object larger than :data:`MAX_OBJECT_BYTES` is
        returned as type ``too-large`` with no content; a missing one is left out."""
        wanted = [s for s in shas if _SHA_RE.match(s)]
        if not wanted:
            return {}
        # First the sizes (cheap), then only the objects within the limit.
        listing = self._run(["cat-file", "--batch-check"], stdin="".join(f"{s}\n" for s in wanted).encode())
        result: dict[str, tuple[str, bytes]] = {}
        small = []
        for line in listing.decode("ascii", "replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2].isdigit():
                if int(parts[2]) > MAX_OBJECT_BYTES:
                    result[parts[0]] = ("too-large", b"")
                else:
                    small.append(parts[0])
        if not small:
            return result
        out = self._run(["cat-file", "--batch"], stdin="".join(f"{s}\n" for s in small).encode())
        position = 0
        while position < len(out):
            end = out.index(b"\n", position)
            header = out[position:end].decode("ascii", "replace").split()
            position = end + 1
            if len(header) != 3:
                break
            sha, kind, size = header[0], header[1], int(header[2])
            result[sha] = (kind, out[position:position + size])
            position += size + 1
        return result

    def resolve(self, revision: str) -> str:
        """The commit a revision (a name, a branch, a tag) names; raises :class:`GitError` (``git_rev_unknown``)."""
        if not revision or revision.startswith("-") or len(revision) > 300 or any(ord(c) < 0x21 for c in revision):
            raise GitError(f"not a revision: {revision[:100]!r}", code="git_rev_unknown")
        try:
            out = self._run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"])
        except GitError as err:
            raise GitError(f"no commit {revision[:100]!r} in {self.path}", code="git_rev_unknown") from err
        sha = out.decode("ascii", "replace").strip()
        if not _SHA_RE.match(sha):
            raise GitError(f"no commit {revision[:100]!r} in {self.path}", code="git_rev_unknown")
        return sha

    def is_ancestor(self, commit: str, of: str) -> bool:
        """Whether ``commit`` is reachable from ``of`` (both full names)."""
        if not (_SHA_RE.match(commit) and _SHA_RE.match(of)):
            return False
        try:
            self._run(["merge-base", "--is-ancestor", commit, of])
        except GitError:
            return False
        return True

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def ref_names(names: Iterable[str]) -> list[str]:
    """The branch or tag names (a glob with one ``*`` allowed), checked; raises MalformedEvidenceError."""
    result = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        if not _REF_NAME.match(name.replace("*", "x")) or ".." in name or name.startswith(("-", "/")) or (
                name.count("*") > 1):
            raise MalformedEvidenceError(f"not a branch or tag name: {name[:100]!r}", code="git_ref_invalid")
        result.append(name)
    return result


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _remove_temporary_packs(path: Path) -> None:
    pack_dir = path / "objects" / "pack"
    for item in pack_dir.glob("tmp_pack_*") if pack_dir.exists() else ():
        item.unlink(missing_ok=True)


def _stderr(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:500] or "(no message)"


def parse_commit_header(raw: bytes) -> dict[str, list[bytes]]:
    """The header fields of a raw commit or tag object (continuation lines joined with ``\\n``), by name."""
    headers: dict[str, list[bytes]] = {}
    head = raw.split(b"\n\n", 1)[0]
    last: str | None = None
    for line in head.split(b"\n"):
        if line.startswith(b" ") and last is not None:
            headers[last][-1] += b"\n" + line[1:]
            continue
        key, _, value = line.partition(b" ")
        last = key.decode("ascii", "replace")
        headers.setdefault(last, []).append(value)
    return headers


def parse_identity_line(value: bytes) -> tuple[str, str, datetime | None]:
    """``Name <email> 1681496842 -0400`` -> (name, email, time in UTC or None)."""
    text = value.decode("utf-8", "replace")
    match = re.match(r"^(.*?) ?<([^>]*)> (\d{1,12}) ([+-]\d{4})$", text)
    if not match:
        return text[:200], "", None
    try:
        when = datetime.fromtimestamp(int(match.group(3)), tz=UTC)
    except (OverflowError, ValueError, OSError):
        when = None
    return match.group(1)[:200], match.group(2)[:200], when
