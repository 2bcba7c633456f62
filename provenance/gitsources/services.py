"""Where git sources meet the core: create, fetch (mirror, list, verify, store), re-verify, look commits up."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from provenance.accounts import services as audit
from provenance.core.errors import ProvenanceError, TransientError
from provenance.core.gitrepo import (
    MAX_COMMITS,
    GitLimits,
    Mirror,
    parse_commit_header,
    parse_identity_line,
    parse_location,
    ref_names,
)
from provenance.core.policy import CommitFacts
from provenance.core.trustroot import TrustRoot as CoreTrustRoot
from provenance.core.verify import CommitVerification, verify_git_object
from provenance.gitsources.models import Commit, GitFetch, GitRef, GitSource, SignatureVerdict
from provenance.trust import services as trust_services
from provenance.trust.models import TrustRoot

MAX_REFS = 200  # refs whose reachability is recorded per fetch
_BATCH = 200


def mirror_path(source: GitSource) -> Path:
    return Path(settings.DATA_DIR) / "git" / f"{source.pk}.git"


def limits() -> GitLimits:
    """Bounds per fetch (``PROVENANCE_GIT_TIMEOUT`` seconds, ``PROVENANCE_GIT_MAX_BYTES``)."""
    return GitLimits(timeout=settings.PROVENANCE_GIT_TIMEOUT, max_bytes=settings.PROVENANCE_GIT_MAX_BYTES)


@transaction.atomic
def create_git_source(*, name: str, location: str, trust_root: TrustRoot, branches: str = "", tag_pattern: str = "",
                      max_commits: int = 200, since: datetime | None = None, protected_refs: str = "",
                      expected_identity: str = "", expected_identity_regexp: str = "", expected_issuer: str = "",
                      allowed_signers: str = "", is_scheduled: bool = True) -> GitSource:
    """Validate and store a git source; raises MalformedEvidenceError for a bad location or ref name."""
    parse_location(location)
    ref_names(branches.replace(",", " ").split())
    if tag_pattern:
        ref_names([tag_pattern])
    source = GitSource.objects.create(
        name=name, location=location.strip(), trust_root=trust_root, branches=branches, tag_pattern=tag_pattern,
        max_commits=max(1, min(max_commits, MAX_COMMITS)), since=since, protected_refs=protected_refs,
        expected_identity=expected_identity, expected_identity_regexp=expected_identity_regexp,
        expected_issuer=expected_issuer, allowed_signers=allowed_signers, is_scheduled=is_scheduled,
    )
    audit.record("git_source.create", source, {"location": source.location, "branches": branches,
                                               "tags": tag_pattern, "trust_root": trust_root.name})
    return source


def start_fetch(source: GitSource, *, scheduled: bool = False) -> GitFetch:
    """A pending fetch row, and a nudge to a worker once it is committed."""
    from provenance.gitsources.tasks import fetch_git_source

    with transaction.atomic():
        fetch = GitFetch.objects.create(source=source)
        if not scheduled:
            audit.record("git_source.fetch", source, {"fetch": fetch.pk})
        fetch_git_source.delay_on_commit(fetch.pk)
    return fetch


def claim_fetch(fetch_id: int) -> bool:
    return GitFetch.objects.filter(pk=fetch_id, state=GitFetch.State.PENDING).update(
        state=GitFetch.State.RUNNING, started_at=timezone.now()) == 1


def release_fetch(fetch_id: int, err: TransientError) -> None:
    GitFetch.objects.filter(pk=fetch_id, state=GitFetch.State.RUNNING).update(
        state=GitFetch.State.PENDING, error_code=err.code, error=f"retrying: {err.message}")


def fail_fetch(fetch_id: int, err: ProvenanceError) -> None:
    fetch = GitFetch.objects.filter(pk=fetch_id).first()
    if fetch is None:
        return
    with transaction.atomic():
        GitFetch.objects.filter(pk=fetch_id).update(state=GitFetch.State.FAILED, error_code=err.code,
                                                    error=err.message[:20000], finished_at=timezone.now())
        GitSource.objects.filter(pk=fetch.source_id).update(last_error=f"{err.code}: {err.message}"[:20000])


def refetch_due_sources() -> int:
    """Beat: a fetch of every scheduled source without one pending or running."""
    busy = GitFetch.objects.filter(state__in=[GitFetch.State.PENDING, GitFetch.State.RUNNING]).values("source_id")
    due = GitSource.objects.filter(is_scheduled=True).exclude(pk__in=busy)
    count = 0
    for source in due:
        start_fetch(source, scheduled=True)
        count += 1
    return count


def sweep_stuck_fetches(*, older_than: timedelta | None = None) -> int:
    cutoff = timezone.now() - (older_than or timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60))
    return GitFetch.objects.filter(state=GitFetch.State.RUNNING, started_at__lt=cutoff).update(
        state=GitFetch.State.FAILED, error_code="worker_lost", error="the worker stopped before finishing",
        finished_at=timezone.now())


class _Judge:
    """Verifies objects of one source with its trust root, identity and SSH signers (the root built once)."""

    def __init__(self, source: GitSource) -> None:
        self.root: CoreTrustRoot = trust_services.load(source.trust_root)
        self.identity = source.identity_policy
        self.allowed_signers = source.allowed_signers

    def __call__(self, raw: bytes, object_type: str = "commit") -> CommitVerification:
        return verify_git_object(raw, object_type=object_type, trust_root=self.root, identity=self.identity,
                             allowed_signers=self.allowed_signers)


def _apply(row: SignatureVerdict, verdict: CommitVerification) -> None:
    row.signature_kind = verdict.kind
    row.status = verdict.status
    row.signer_identity = verdict.identity[:500]
    row.signer_issuer = verdict.issuer[:500]
    row.signer_key = verdict.key[:200]
    row.log_status = verdict.log_status
    row.log_index = verdict.log_index
    row.integrated_time = verdict.integrated_time
    row.signing_time = verdict.signing_time
    row.reason = verdict.reason
    row.checks = [c.as_dict() for c in verdict.checks]
    row.verified_at = timezone.now()


_VERDICT_FIELDS = ["signature_kind", "status", "signer_identity", "signer_issuer", "signer_key", "log_status",
                   "log_index", "integrated_time", "signing_time", "reason", "checks", "verified_at"]


def _commit_row(source: GitSource, sha: str, raw: bytes, verdict: CommitVerification) -> Commit:
    headers = parse_commit_header(raw)
    author = parse_identity_line(headers.get("author", [b""])[0])
    committer = parse_identity_line(headers.get("committer", [b""])[0])
    message = raw.split(b"\n\n", 1)[1] if b"\n\n" in raw else b""
    row = Commit(
        source=source, sha=sha, raw=raw,
        parents=[p.decode("ascii", "replace")[:40] for p in headers.get("parent", [])][:64],
        author_name=author[0], author_email=author[1], authored_at=author[2],
        committer_name=committer[0], committer_email=committer[1], committed_at=committer[2],
        subject=message.split(b"\n", 1)[0].decode("utf-8", "replace")[:500],
    )
    _apply(row, verdict)
    return row


def run_fetch(fetch_id: int) -> None:
    """Fetch the source into its mirror, check the new commits and the refs, store everything.

    Raises the core's errors (the task records them); a commit whose signature fails is stored, not raised.
    """
    fetch = GitFetch.objects.select_related("source__trust_root").get(pk=fetch_id)
    source = fetch.source
    mirror = Mirror(mirror_path(source), limits=limits())
    result = mirror.fetch(parse_location(source.location), branches=source.branch_list,
                          tag_pattern=source.tag_pattern)
    refs = result.refs[:MAX_REFS]
    heads = list(dict.fromkeys(r.commit for r in refs))
    count = max(1, min(source.max_commits, MAX_COMMITS))
    shas = mirror.rev_list(heads, max_count=count, since=source.since)
    window = set(shas)
    reachable: dict[str, list[str]] = {}
    for ref in refs:
        for sha in mirror.rev_list([ref.commit], max_count=count, since=source.since):
            if sha in window:
                reachable.setdefault(sha, []).append(ref.name)
    known = set(Commit.objects.filter(source=source, sha__in=shas).values_list("sha", flat=True))
    new = [s for s in shas if s not in known]
    judge = _Judge(source)
    created = 0
    for start in range(0, len(new), _BATCH):
        chunk = new[start:start + _BATCH]
        objects = mirror.read_objects(chunk)
        rows = []
        for sha in chunk:
            kind, raw = objects.get(sha, ("missing", b""))
            if kind != "commit":
                continue  # too large or gone: not a commit we can show (counted as seen, not stored)
            rows.append(_commit_row(source, sha, raw, judge(raw)))
        with transaction.atomic():
            Commit.objects.bulk_create(rows, ignore_conflicts=True)
        created += len(rows)
    before = dict(GitRef.objects.filter(source=source).values_list("name", "commit_sha"))
    annotated = [r.target for r in refs if r.is_annotated]
    tag_objects = mirror.read_objects(annotated) if annotated else {}
    with transaction.atomic():
        for sha, names in reachable.items():
            Commit.objects.filter(source=source, sha=sha).exclude(refs=sorted(names)).update(refs=sorted(names))
        Commit.objects.filter(source=source).exclude(sha__in=window).exclude(refs=[]).update(refs=[])
        for ref in refs:
            row, _ = GitRef.objects.update_or_create(source=source, name=ref.name, defaults={
                "target": ref.target, "commit_sha": ref.commit, "is_tag": ref.is_tag,
                "is_annotated": ref.is_annotated})
            if ref.is_annotated:
                kind, raw = tag_objects.get(ref.target, ("missing", b""))
                if kind == "tag":
                    _apply(row, judge(raw, "tag"))
                    row.save(update_fields=_VERDICT_FIELDS)
        GitRef.objects.filter(source=source).exclude(name__in=[r.name for r in refs]).delete()
        GitSource.objects.filter(pk=source.pk).update(
            last_fetched_at=timezone.now(), last_error="", is_shallow=result.is_shallow,
            warning="; ".join(result.warnings))
        GitFetch.objects.filter(pk=fetch_id).update(state=GitFetch.State.DONE, commits_seen=len(shas),
                                                    commits_new=created, finished_at=timezone.now(),
                                                    error_code="", error="")
        if created or before != {r.name: r.commit for r in refs}:
            reevaluate_source_policies(source, detail=f"git source {source.name} fetched")


def reverify_source(source: GitSource) -> int:
    """Judge every stored commit of ``source`` again (after its trust root, identity or signers changed)."""
    judge = _Judge(source)
    count = 0
    for start in range(0, source.commits.count(), _BATCH):
        rows = list(source.commits.order_by("id")[start:start + _BATCH])
        for row in rows:
            _apply(row, judge(bytes(row.raw)))
        with transaction.atomic():
            Commit.objects.bulk_update(rows, _VERDICT_FIELDS)
        count += len(rows)
    reevaluate_source_policies(source, detail=f"git source {source.name} re-verified")
    return count


def reevaluate_source_policies(source: GitSource, *, detail: str) -> None:
    """After a source's commits, refs or verdicts changed: re-evaluate the images of the policies that require a
    signed source commit (``spec.source``), after commit, in a worker."""
    from provenance.policies import services as policy_services
    from provenance.policies.models import Cause

    globs = sorted({g for p in policy_services.enabled_policies() if p.source is not None for g in p.images})
    if globs:
        policy_services.start_reevaluation(cause=Cause.EVIDENCE, detail=detail, scope={"globs": globs})


def commits_by_sha(sha: str) -> list[Commit]:
    """Every stored commit with this name, in any source (the graph's and policies' way from provenance)."""
    return list(Commit.objects.filter(sha=sha.lower()).select_related("source"))


def is_protected(source: GitSource, refs: Iterable[str]) -> bool:
    """Whether one of ``refs`` (full names) is a protected branch or tag of ``source``."""
    patterns = source.protected_refs.replace(",", " ").split()
    for ref in refs:
        short = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        if any(fnmatch.fnmatchcase(short, p) or fnmatch.fnmatchcase(ref, p) for p in patterns):
            return True
    return False


_SCP = re.compile(r"^(?:[^@/:]+@)?([^/:]+):(?!//)(.+)$")


def repository_key(location: str) -> str:
    """A repository location reduced to what names the repository, for matching a provenance's source URI
    (``git+https://github.com/o/r@refs/heads/main`` is split by the statement parser first) to a git source.

    ``https://github.com/o/r.git``, ``ssh://git@github.com/o/r`` and ``git@github.com:o/r`` all give
    ``github.com/o/r`` (host and path lower-cased, as forges treat them); ``file:///srv/r.git`` and ``/srv/r`` give
    ``/srv/r`` (local paths keep their case). Returns ``""`` for what is not a location."""
    text = location.strip().removeprefix("git+")
    if not text or len(text) > 1000 or any(ord(c) < 0x20 for c in text):
        return ""
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.lower() == "file":
            path = unquote(rest.split("?", 1)[0].split("#", 1)[0])
            if not path.startswith("/"):  # file://host/path: the host part is not part of the path
                path = "/" + path.split("/", 1)[1] if "/" in path else ""
            return path.rstrip("/").removesuffix(".git")
        rest = rest.split("?", 1)[0].split("#", 1)[0]
        host, _, path = rest.partition("/")
        host = host.rsplit("@", 1)[-1]
        return f"{host}/{path}".rstrip("/").removesuffix(".git").lower() if path else ""
    if text.startswith("/"):
        return text.rstrip("/").removesuffix(".git")
    match = _SCP.match(text)
    if match:
        return f"{match.group(1)}/{match.group(2).lstrip('/')}".rstrip("/").removesuffix(".git").lower()
    return ""


def sources_for_repository(repository: str) -> list[GitSource]:
    """The git sources whose location names ``repository`` (see :func:`repository_key`)."""
    wanted = repository_key(repository)
    if not wanted:
        return []
    found = []
    for source in GitSource.objects.all():
        keys = {repository_key(source.location)}
        try:
            keys.add(repository_key(parse_location(source.location)))
        except ProvenanceError:
            pass
        if wanted in keys:
            found.append(source)
    return found


def commit_facts(repository: str, sha: str) -> tuple[CommitFacts, ...] | None:
    """What each git source mirroring ``repository`` holds about the commit ``sha`` (the policies' view, see
    :class:`provenance.core.policy.CommitFacts`); ``None`` when no git source mirrors that repository."""
    sources = sources_for_repository(repository)
    if not sources:
        return None
    rows = {c.source_id: c for c in Commit.objects.filter(source__in=sources, sha=sha.lower())}
    facts = []
    for source in sources:
        row = rows.get(source.pk)
        has_protected = bool(source.protected_refs.replace(",", " ").split())
        if row is None:
            facts.append(CommitFacts(source=source.name, sha=sha.lower(), is_fetched=False,
                                     has_protected_refs=has_protected))
            continue
        refs = tuple(str(r) for r in row.refs or ())
        facts.append(CommitFacts(
            source=source.name, sha=row.sha, is_fetched=True, ref=row.pk, signature_kind=row.signature_kind,
            status=row.status, identity=row.signer_identity, issuer=row.signer_issuer, log_status=row.log_status,
            reason=row.reason, failed_checks=tuple((str(c.get("stage", "")), str(c.get("code", "")))
                                                   for c in row.checks or () if not c.get("ok")),
            refs=refs, protected_refs=tuple(r for r in refs if is_protected(source, [r])),
            has_protected_refs=has_protected,
        ))
    return tuple(facts)
