"""Sources and scans: create them, run them. The ORM meets the core here.

A scan lists what a source names (an image, a repository's tags, a layout's tags), resolves each tag to a digest
and records where it pointed, then looks at each digest once however many tags point at it. A digest whose
evidence is unchanged since the last scan (same manifests in the same places, same verification settings) is
recognised with a few HEAD requests and not fetched or verified again. Network work runs on a small thread pool;
the database is written from the scan's own thread only.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import logging
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, JSONField, Value
from django.db.models.functions import Least
from django.utils import timezone

from provenance.accounts import services as audit
from provenance.artifacts import services as artifact_services
from provenance.core import discovery as core_discovery
from provenance.core.credentials import CredentialBox, CredentialsError, insecure_key_from_secret
from provenance.core.discovery import Discovery
from provenance.core.errors import (
    AccessError,
    MalformedEvidenceError,
    NotFoundError,
    ProvenanceError,
    TransientError,
)
from provenance.core.oci import (
    Budget,
    ListingTruncatedError,
    Manifest,
    Metered,
    Registry,
    RegistryClient,
    signature_place,
)
from provenance.core.ocilayout import OciLayout, extract_layout_tar
from provenance.core.trustroot import TrustRoot as CoreTrustRoot
from provenance.core.types import Digest, IdentityPolicy, ImageRef
from provenance.core.verify import Verified
from provenance.policies import services as policy_services
from provenance.sources import signals
from provenance.sources.models import Scan, ScanChunk, ScanListing, Source, registry_host
from provenance.trust import services as trust_services
from provenance.trust.models import TrustRoot

log = logging.getLogger(__name__)

# Tags that hold evidence rather than images: cosign's sha256-<hex>[.sig|.att|.sbom] and referrers fallbacks.
_EVIDENCE_TAG = re.compile(r"^sha(256|384|512)-[0-9a-f]{64,128}(\.[a-z]+)?$")
MAX_PROBLEMS = 500
MAX_CHUNK_ATTEMPTS = 3
MAX_PENDING_RESENDS = 4  # timeouts a scan may stay pending (sent again after each) before it is failed
_FLUSH_SECONDS = 0.5  # how often a running scan's counters reach its row
_STORE_BATCH = 50  # changed digests stored together
MAX_NEWEST = 10_000


# --------------------------------------------------------------------------------------------------------------
# Credentials


def credential_box() -> CredentialBox:
    """The box that encrypts registry credentials, from ``PROVENANCE_FERNET_KEY`` (comma-separated, newest first).

    Without that setting, a key derived from SECRET_KEY is used in debug, demo and test mode only; otherwise
    raises :class:`CredentialsError` (``credentials_key_missing``) so that nothing is stored under a weak key.
    """
    keys = [key.strip() for key in (settings.PROVENANCE_FERNET_KEY or "").split(",") if key.strip()]
    if not keys:
        if not (settings.DEBUG or settings.DEMO or settings.TESTING):
            raise CredentialsError(
                "registry credentials cannot be stored: PROVENANCE_FERNET_KEY is not set (generate one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)",
                code="credentials_key_missing",
            )
        keys = [insecure_key_from_secret(settings.SECRET_KEY)]
    return CredentialBox(keys)


def set_credentials(source: Source, *, username: str, password: str | None) -> None:
    """Store (encrypted) or clear a source's registry credentials. ``password=None`` keeps the stored one."""
    if not username:
        source.username, source.encrypted_password = "", ""
    else:
        if password is None and not source.encrypted_password:
            raise MalformedEvidenceError("a username needs a password", code="bad_credentials")
        source.username = username[:200]
        if password is not None:
            source.encrypted_password = credential_box().encrypt(password)
    Source.objects.filter(pk=source.pk).update(username=source.username, encrypted_password=source.encrypted_password)
    password_change = "cleared" if not username else ("kept" if password is None else "set")
    audit.record("source.credentials", source, {"username": source.username, "password": password_change})


def registry_password(source: Source) -> str | None:
    """A registry source's password, decrypted (None without credentials); never log or show it."""
    if not source.has_credentials:
        return None
    return credential_box().decrypt(source.encrypted_password)


# --------------------------------------------------------------------------------------------------------------
# Sources


def _split_repository(location: str) -> tuple[str, str]:
    """``registry/name`` → (registry, repository); raises MalformedEvidenceError for a tag or digest."""
    last = location.rsplit("/", 1)[-1]
    if "@" in location or ":" in last:
        raise MalformedEvidenceError(
            f"{location[:100]!r} names a tag or digest; a repository source is registry/name", code="bad_reference"
        )
    ref = ImageRef.parse(location)
    return ref.registry, ref.repository


def _signature_place(signature_repository: str, default_registry: str) -> tuple[str, str]:
    """Parse a COSIGN_REPOSITORY-style value: ``registry/name``, or ``name`` on the image's registry."""
    return signature_place(signature_repository, default_registry=default_registry)




def layout_location(location: str) -> Path:
    """The resolved path of a layout (directory or tar) source, if it lies below one of PROVENANCE_LAYOUT_DIRS.

    Symbolic links are followed before the check. Raises :class:`MalformedEvidenceError` (``layout_not_allowed``)
    otherwise: a layout source reads files on this server, so only the directories an operator named may be read.
    """
    allowed = [Path(d).resolve() for d in getattr(settings, "PROVENANCE_LAYOUT_DIRS", []) if d]
    path = Path(location)
    if not allowed:
        raise MalformedEvidenceError("OCI layout sources are not enabled on this server (PROVENANCE_LAYOUT_DIRS is "
                                     "empty)", code="layout_not_allowed")
    resolved = path.resolve() if path.is_absolute() else None
    if resolved is None or not any(resolved == d or resolved.is_relative_to(d) for d in allowed):
        raise MalformedEvidenceError("OCI layout sources must be absolute paths below the directories in "
                                     "PROVENANCE_LAYOUT_DIRS", code="layout_not_allowed")
    return resolved


@transaction.atomic
def create_source(
    *,
    name: str,
    kind: str,
    location: str,
    trust_root: TrustRoot,
    expected_identity: str = "",
    expected_identity_regexp: str = "",
    expected_issuer: str = "",
    is_insecure: bool = False,
    ignore_tlog: bool = False,
    tag_pattern: str = "",
    newest: int | None = None,
    signature_repository: str = "",
    ca_certificates: str = "",
    username: str = "",
    password: str | None = None,
    is_scheduled: bool = True,
) -> Source:
    """Validate and store (or update, by name) a source; raises MalformedEvidenceError on bad input.

    Credentials are encrypted before they are stored; raises :class:`CredentialsError` when there is no key.
    """
    location = location.strip()
    if kind == Source.Kind.IMAGE:
        ImageRef.parse(location)
    elif kind == Source.Kind.REPOSITORY:
        _split_repository(location)
    elif kind == Source.Kind.LAYOUT:
        layout_location(location)  # before looking: whether a path exists elsewhere is not for API users to learn
        if not (Path(location) / "index.json").is_file():
            raise MalformedEvidenceError(f"{location!r} is not an OCI image layout (no index.json)", code="bad_layout")
    elif kind == Source.Kind.LAYOUT_TAR:
        layout_location(location)
        if not Path(location).is_file() or not tarfile.is_tarfile(location):
            raise MalformedEvidenceError(f"{location!r} is not a tar file", code="bad_layout")
    else:
        raise MalformedEvidenceError(f"unknown source kind {kind!r}", code="bad_kind")
    if kind != Source.Kind.REPOSITORY and (tag_pattern or newest):
        raise MalformedEvidenceError("tag patterns and newest-N apply to repository sources only", code="bad_filter")
    if newest is not None and not 1 <= newest <= MAX_NEWEST:
        raise MalformedEvidenceError(f"newest must be between 1 and {MAX_NEWEST}", code="bad_filter")
    if len(tag_pattern) > 200:
        raise MalformedEvidenceError("tag pattern is too long", code="bad_filter")
    is_registry = kind in {Source.Kind.IMAGE, Source.Kind.REPOSITORY}
    if signature_repository:
        if not is_registry:
            raise MalformedEvidenceError("a signature repository applies to registry sources", code="bad_reference")
        _signature_place(signature_repository, registry_host(kind, location))
    if (username or password) and not is_registry:
        raise MalformedEvidenceError("credentials apply to registry sources", code="bad_credentials")
    if ca_certificates and "BEGIN CERTIFICATE" not in ca_certificates:
        raise MalformedEvidenceError("CA certificates must be PEM", code="bad_ca")
    source, created = Source.objects.update_or_create(
        name=name,
        defaults={
            "kind": kind,
            "location": location,
            "trust_root": trust_root,
            "expected_identity": expected_identity,
            "expected_identity_regexp": expected_identity_regexp,
            "expected_issuer": expected_issuer,
            "is_insecure": is_insecure,
            "ignore_tlog": ignore_tlog,
            "tag_pattern": tag_pattern,
            "newest": newest,
            "signature_repository": signature_repository,
            "ca_certificates": ca_certificates,
            "is_scheduled": is_scheduled,
        },
    )
    audit.record("source.create" if created else "source.update", source, {
        "kind": kind, "location": location, "trust_root": trust_root.name, "insecure_registry": is_insecure,
        "ignore_tlog": ignore_tlog, "identity": expected_identity or expected_identity_regexp,
        "issuer": expected_issuer})
    if username or password is not None or source.username:
        set_credentials(source, username=username, password=password)
    return source


# --------------------------------------------------------------------------------------------------------------
# Scans: the row is the job


def start_scan(source: Source, *, scheduled: bool = False) -> Scan:
    """Create a pending scan row and nudge a worker once the row is committed. A scan someone asked for (not
    ``scheduled``) is recorded in the audit trail."""
    from provenance.sources.tasks import scan_source

    with transaction.atomic():
        scan = Scan.objects.create(source=source)
        if not scheduled:
            audit.record("scan.request", source, {"scan": scan.pk})
        scan_source.delay_on_commit(scan.pk)
    return scan


def scan_here(source: Source, *, progress: Callable[[Scan], None] | None = None) -> Scan:
    """Run a scan of ``source`` in this process (no worker), e.g. for ``manage.py ingest --wait``.

    The scan row is claimed like a worker would, so it is never run twice. Errors end up on the row, as they
    would from the task; returns the finished row.
    """
    scan = Scan.objects.create(source=source)
    if claim_scan(scan.pk):
        try:
            run_scan(scan.pk, progress=progress, inline=True)
        except ProvenanceError as err:
            fail_scan(scan.pk, err)
    scan.refresh_from_db()
    return scan


def claim_scan(scan_id: int) -> bool:
    """Move a pending scan to running; False when another worker has it or it is gone."""
    return Scan.objects.filter(pk=scan_id, state=Scan.State.PENDING).update(
        state=Scan.State.RUNNING, started_at=timezone.now()
    ) == 1


def release_scan(scan_id: int, err: TransientError) -> None:
    """Put a running scan back to pending (a retry follows), keeping the reason visible meanwhile."""
    Scan.objects.filter(pk=scan_id, state=Scan.State.RUNNING).update(
        state=Scan.State.PENDING, error_code=err.code, error=f"retrying: {err.message}"
    )


def fail_scan(scan_id: int, err: ProvenanceError) -> None:
    """Record a scan as failed with a stable code and a message, on the scan and its source."""
    scan = Scan.objects.select_related("source").filter(pk=scan_id).first()
    if scan is None:
        return
    with transaction.atomic():
        Scan.objects.filter(pk=scan_id).update(
            state=Scan.State.FAILED, error_code=err.code, error=err.message, finished_at=timezone.now()
        )
        Source.objects.filter(pk=scan.source_id).update(last_error=f"{err.code}: {err.message}"[:20000])
    _announce(scan_id)


def sweep_stuck_scans(*, older_than: timedelta | None = None) -> int:
    """Recover what killed workers left behind; returns how many scans were touched.

    A task cannot legitimately run longer than its hard time limit, so one running longer than that lost its
    worker. A scan's own task (listing, or a small scan's whole work) is failed as ``worker_lost`` and the source
    is scanned again; a large scan's lost chunk is put back and done again (failed after three attempts), and
    chunks never picked up (a broker that lost its queue) are sent again. Ingestion is idempotent, so doing work
    again loses nothing.
    """
    if older_than is None:
        older_than = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    cutoff = timezone.now() - older_than
    stuck = list(Scan.objects.filter(state=Scan.State.RUNNING, started_at__lt=cutoff, chunks__isnull=True)
                 .select_related("source"))
    swept = 0
    for scan in stuck:
        lost = Scan.objects.filter(pk=scan.pk, state=Scan.State.RUNNING).update(
            state=Scan.State.FAILED,
            error_code="worker_lost",
            error="the worker running this scan stopped before finishing; a new scan was started",
            finished_at=timezone.now(),
        )
        if lost:
            swept += 1
            if not scan.source.scans.filter(state__in=[Scan.State.PENDING, Scan.State.RUNNING]).exists():
                start_scan(scan.source, scheduled=True)
    from provenance.sources.tasks import scan_chunk

    touched: set[int] = set()
    for chunk in ScanChunk.objects.filter(state=ScanChunk.State.RUNNING, started_at__lt=cutoff,
                                          scan__state=Scan.State.RUNNING):
        if chunk.attempts >= MAX_CHUNK_ATTEMPTS:
            fail_chunk(chunk.pk, ProvenanceError(f"the workers doing this part of the scan stopped "
                                                 f"{chunk.attempts} times", code="worker_lost"))
        elif ScanChunk.objects.filter(pk=chunk.pk, state=ScanChunk.State.RUNNING).update(
                state=ScanChunk.State.PENDING):
            scan_chunk.delay(chunk.pk)
        touched.add(chunk.scan_id)
    for chunk in ScanChunk.objects.filter(state=ScanChunk.State.PENDING, queued_at__lt=cutoff,
                                          scan__state=Scan.State.RUNNING):
        scan_chunk.delay(chunk.pk)  # claim_chunk makes a duplicate message harmless
        touched.add(chunk.scan_id)
    return swept + len(touched) + _sweep_pending_scans()


def _sweep_pending_scans() -> int:
    """Scans no worker picked up (a broker that lost its queue, e.g. Redis restarted without persistence).

    A scan pending longer than PROVENANCE_PENDING_SCAN_TIMEOUT is sent again (claim_scan makes a duplicate
    harmless); one still pending after MAX_PENDING_RESENDS timeouts is failed as ``never_started``, so that it no
    longer blocks its source's scheduled re-scans (which then start a new one, after the usual interval).
    """
    from provenance.sources.tasks import scan_source

    limit = timedelta(seconds=getattr(settings, "PROVENANCE_PENDING_SCAN_TIMEOUT", 900))
    now = timezone.now()
    touched = 0
    for scan_id, created_at in Scan.objects.filter(state=Scan.State.PENDING, created_at__lt=now - limit
                                                   ).values_list("pk", "created_at"):
        if created_at < now - limit * MAX_PENDING_RESENDS:
            minutes = int((now - created_at).total_seconds() // 60)
            touched += Scan.objects.filter(pk=scan_id, state=Scan.State.PENDING).update(
                state=Scan.State.FAILED, error_code="never_started", finished_at=now,
                error=f"no worker started this scan in {minutes} minutes although it was sent again; was the "
                      "broker's queue lost (see README: Redis persistence)? The next scheduled scan starts anew")
        else:
            scan_source.delay(scan_id)
            touched += 1
    return touched


def fail_chunk(chunk_id: int, err: ProvenanceError) -> None:
    """Fail a chunk as a whole (its targets count as not ingested) and finish its scan if it was the last."""
    chunk = ScanChunk.objects.filter(pk=chunk_id).exclude(state__in=[ScanChunk.State.DONE,
                                                                      ScanChunk.State.FAILED]).first()
    if chunk is None:
        return
    problem = {"reference": f"chunk {chunk.index + 1} of scan #{chunk.scan_id}", "code": err.code,
               "message": err.message[:1000]}
    with transaction.atomic():
        if not ScanChunk.objects.filter(pk=chunk_id).exclude(
                state__in=[ScanChunk.State.DONE, ScanChunk.State.FAILED]).update(
                state=ScanChunk.State.FAILED, finished_at=timezone.now(), problems=[problem],
                messages=f"{problem['reference']}: {err.code}: {err.message}"):
            return
        problems = Scan.objects.select_for_update().values_list("problems", flat=True).get(pk=chunk.scan_id)
        Scan.objects.filter(pk=chunk.scan_id).update(
            errors=F("errors") + len(chunk.targets),
            problems=Value([*problems, problem][:MAX_PROBLEMS], output_field=JSONField()))
    _finish_if_last(chunk.scan_id)


def rescan_due_sources(*, interval: timedelta | None = None) -> int:
    """Start a scan of each scheduled source last scanned longer than ``interval`` ago and not being scanned.

    Returns how many scans were started. Cheap for unchanged images: see the module docstring.
    """
    if interval is None:
        interval = timedelta(seconds=getattr(settings, "PROVENANCE_RESCAN_INTERVAL", 3600))
    cutoff = timezone.now() - interval
    busy = Scan.objects.filter(state__in=[Scan.State.PENDING, Scan.State.RUNNING]).values("source_id")
    # A recent scan that failed (say, wrong credentials) also counts: do not hammer a registry every few minutes.
    recent = Scan.objects.filter(created_at__gte=cutoff).values("source_id")
    due = (
        Source.objects.filter(is_scheduled=True)
        .exclude(pk__in=busy)
        .exclude(pk__in=recent)
        .exclude(last_scanned_at__gte=cutoff)
    )
    started = 0
    for source in due:
        start_scan(source, scheduled=True)
        started += 1
    return started


# --------------------------------------------------------------------------------------------------------------
# Access to what a source names


@dataclass
class Access:
    """The read side of a source: the image registry (or layout) and where signatures live."""

    registry: Registry
    signature_registry: Registry | None = None
    signature_repository: str | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self._closers:
            close()


def _client(source: Source, host: str, *, with_credentials: bool) -> RegistryClient:
    password = registry_password(source) if with_credentials else None
    return RegistryClient(
        host,
        username=source.username if password is not None else None,
        password=password,
        insecure=source.is_insecure,
        ca_certificates=source.ca_certificates or None,
        timeout=float(settings.PROVENANCE_HTTP_TIMEOUT),
        retries=getattr(settings, "PROVENANCE_HTTP_RETRIES", 3),
        **registry_limits(),
    )


def registry_limits() -> dict[str, Any]:
    """The egress rules and listing budgets every registry client of the application gets, from settings."""
    return {
        "allow_private": settings.PROVENANCE_ALLOW_PRIVATE_REGISTRIES,
        "redirect_hosts": tuple(settings.PROVENANCE_REDIRECT_HOSTS),
        "max_tags": settings.PROVENANCE_MAX_TAGS,
        "max_pages": settings.PROVENANCE_MAX_PAGES,
        "max_referrers": settings.PROVENANCE_MAX_REFERRERS,
        "max_request_seconds": float(settings.PROVENANCE_MAX_REQUEST_SECONDS),
    }


@contextmanager
def open_access(source: Source) -> Iterator[Access]:
    """Open a source for reading: registry clients, an OCI layout, or a layout tar extracted to a temporary
    directory (removed afterwards). Raises :class:`ProvenanceError` subclasses."""
    access: Access
    if source.kind in {Source.Kind.LAYOUT, Source.Kind.LAYOUT_TAR}:
        layout_location(source.location)  # again: the setting may have changed since the source was made
    if source.kind == Source.Kind.LAYOUT:
        access = Access(OciLayout(Path(source.location)))
    elif source.kind == Source.Kind.LAYOUT_TAR:
        scratch = Path(tempfile.mkdtemp(prefix=f"layout-{source.pk}-", dir=_scratch_dir()))
        try:
            layout = extract_layout_tar(source.location, scratch)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        access = Access(layout, _closers=[lambda: shutil.rmtree(scratch, ignore_errors=True)])
    else:
        host = source.registry_host
        client = _client(source, host, with_credentials=True)
        access = Access(client, _closers=[client.close])
        if source.signature_repository:
            sig_host, sig_repo = _signature_place(source.signature_repository, host)
            access.signature_repository = sig_repo
            if sig_host != host:
                # Another registry: our credentials are for the image's registry only, never sent elsewhere.
                sig_client = _client(source, sig_host, with_credentials=False)
                access.signature_registry = sig_client
                access._closers.append(sig_client.close)
    try:
        yield access
    finally:
        access.close()


def _scratch_dir() -> Path:
    path = Path(settings.DATA_DIR) / "scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_registry(source: Source) -> Registry:
    """Return the read-side client for a registry or layout-directory source (the caller closes it)."""
    if source.kind == Source.Kind.LAYOUT:
        return OciLayout(layout_location(source.location))
    return _client(source, source.registry_host, with_credentials=True)


def identity_policy(source: Source) -> IdentityPolicy | None:
    if not source.expected_issuer or not (source.expected_identity or source.expected_identity_regexp):
        return None
    return IdentityPolicy(
        issuer=source.expected_issuer,
        identity=source.expected_identity,
        identity_regexp=source.expected_identity_regexp,
    )


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to ingest: a tag (or a digest) in a repository."""

    repository: str
    reference: str  # a tag, or a digest string
    tag: str | None

    def __str__(self) -> str:
        return f"{self.repository}@{self.reference}" if self.tag is None else f"{self.repository}:{self.tag}"


@dataclass(slots=True)
class Listing:
    targets: list[Target]
    # Image tags that exist now, per repository (absent: the source does not enumerate tags).
    existing: dict[str, set[str]] = field(default_factory=dict)
    # Every tag (evidence tags too) per repository: lets discovery skip looking for tags that do not exist.
    listed: dict[str, frozenset[str]] = field(default_factory=dict)
    # (reference, code, message) of limits the listing hit: what was listed is scanned, the reason is stored.
    problems: list[tuple[str, str, str]] = field(default_factory=list)


def _list_tags(registry: Registry, repository: str, problems: list[tuple[str, str, str]]) -> tuple[list[str], bool]:
    """A repository's tags, and whether that is all of them: a listing cut off at a limit (PROVENANCE_MAX_TAGS,
    PROVENANCE_MAX_PAGES) keeps what was read and records why."""
    try:
        tags, complete = registry.list_tags(repository), True
    except ListingTruncatedError as err:
        setting = {"max_tags": "PROVENANCE_MAX_TAGS", "max_pages": "PROVENANCE_MAX_PAGES"}.get(err.limit, err.limit)
        problems.append((f"tags of {repository}", "limit_exceeded", f"{err.message} ({setting})"))
        tags, complete = err.partial, False
    return list(dict.fromkeys(tags)), complete  # a registry may repeat a tag; it is one target


def _layout_repository(source: Source) -> str:
    name = Path(source.location).name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name or "layout"


def list_targets(source: Source, access: Access, *, pool: ThreadPoolExecutor | None = None) -> Listing:
    """Return what a source names. Raises when the source itself cannot be read (auth, unknown repository)."""
    if source.kind == Source.Kind.IMAGE:
        ref = ImageRef.parse(source.location)
        if ref.digest is not None:
            return Listing([Target(ref.repository, str(ref.digest), None)])
        return Listing([Target(ref.repository, str(ref.tag), ref.tag)])
    if source.kind in {Source.Kind.LAYOUT, Source.Kind.LAYOUT_TAR}:
        repository = _layout_repository(source)
        everything = access.registry.list_tags(repository)
        tags = sorted(t for t in everything if not _EVIDENCE_TAG.match(t))
        return Listing([Target(repository, t, t) for t in tags], {repository: set(tags)},
                       {repository: frozenset(everything)})
    _, repository = _split_repository(source.location)
    problems: list[tuple[str, str, str]] = []
    everything, complete = _list_tags(access.registry, repository, problems)
    tags = [t for t in everything if not _EVIDENCE_TAG.match(t)]
    selected = [t for t in tags if fnmatch.fnmatchcase(t, source.tag_pattern)] if source.tag_pattern else tags
    if source.newest:
        selected = _newest(access.registry, repository, selected, source.newest, pool)
    # A cut-off listing proves neither that a tag is gone nor that an evidence tag is absent: neither is used.
    listed = {repository: frozenset(everything)} if complete else {}
    if access.signature_repository and access.signature_registry is None:
        signature_tags, signature_complete = _list_tags(access.registry, access.signature_repository, problems)
        if signature_complete:
            listed[access.signature_repository] = frozenset(signature_tags)
    return Listing([Target(repository, t, t) for t in sorted(selected)], {repository: set(tags)} if complete else {},
                   listed, problems)


def _newest(registry: Registry, repository: str, tags: list[str], count: int,
            pool: ThreadPoolExecutor | None) -> list[str]:
    """The ``count`` tags whose images were created last (config ``created``; tags without one sort last)."""
    def created(tag: str) -> str:
        try:
            return core_discovery.image_created(registry, repository, tag)
        except (TransientError, AccessError):
            raise
        except ProvenanceError:
            return ""

    times = list(pool.map(created, tags)) if pool is not None else [created(t) for t in tags]
    ranked = sorted(zip(tags, times, strict=True), key=lambda item: (item[1], _natural(item[0])), reverse=True)
    return [tag for tag, _ in ranked[:count]]


def _natural(tag: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", tag) if part)


# --------------------------------------------------------------------------------------------------------------
# Running a scan


def _policy_key(source: Source) -> str:
    """What verification depends on besides the evidence: a change forces a fresh look at every digest."""
    keys = sorted(hashlib.sha256(pem).hexdigest() for pem in trust_services.public_key_pems())
    parts = [hashlib.sha256(source.trust_root.document.encode()).hexdigest(), source.expected_identity,
             source.expected_identity_regexp, source.expected_issuer, source.signature_repository,
             "ignore-tlog" if source.ignore_tlog else "", *keys]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _combined(evidence_fingerprint: str, policy_key: str) -> str:
    return core_discovery.fingerprint_of({"evidence": evidence_fingerprint, "policy": policy_key})


@dataclass(slots=True)
class _Examined:
    """What a worker thread learned about one digest."""

    digest: Digest
    unchanged: bool = False
    discovery: Discovery | None = None
    results: list[Verified] = field(default_factory=list)
    fingerprint: str = ""


class _Progress:
    """Counts and problems of one run over a list of targets (a whole small scan, or one chunk of a large one).

    Counters reach the scan row as increments (several chunks add to one scan at once), flushed at most every
    ``_FLUSH_SECONDS`` and at the end, so a large scan writes a few rows a second, not one per image; problems
    are appended under the scan row's lock.
    """

    def __init__(self, scan: Scan, callback: Callable[[Scan], None] | None) -> None:
        self.scan = scan
        self.callback = callback
        self.messages: list[str] = []
        self.problems: list[dict[str, str]] = []
        self.transient = 0
        self.succeeded = 0
        self.touched: list[tuple[str, Digest]] = []  # (repository, digest) stored anew, for policy evaluation
        self.unchanged: list[tuple[str, Digest]] = []  # (repository, digest) found as they were
        self.advanced = 0  # targets this run got through
        self._pending = {"done": 0, "errors": 0, "fetched": 0, "unchanged": 0}
        self._unsent: list[dict[str, str]] = []
        self._flushed_at = time.monotonic()

    def problem(self, reference: str, code: str, message: str, *, is_error: bool) -> None:
        item = {"reference": reference[:300], "code": code[:60], "message": message[:1000]}
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(item)
            self._unsent.append(item)
        if is_error:
            self._pending["errors"] += 1
            self.messages.append(f"{reference}: {code}: {message}")

    def count(self, field_name: str, steps: int = 1) -> None:
        self._pending[field_name] += steps

    def advance(self, steps: int) -> None:
        self.advanced += steps
        self._pending["done"] += steps
        # Someone watching (``ingest --wait``) sees every step; a worker writes a few times a second at most.
        if self.callback is not None or time.monotonic() - self._flushed_at >= _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._flushed_at = time.monotonic()
        changes = {k: F(k) + v for k, v in self._pending.items() if v}
        if not changes and not self._unsent:
            return
        with transaction.atomic():
            if self._unsent:
                problems = Scan.objects.select_for_update().values_list("problems", flat=True).get(pk=self.scan.pk)
                room = max(0, MAX_PROBLEMS - len(problems))
                changes["problems"] = Value([*problems, *self._unsent[:room]], output_field=JSONField())
            Scan.objects.filter(pk=self.scan.pk).update(**changes)
        self._pending = dict.fromkeys(self._pending, 0)
        self._unsent = []
        if self.callback is not None:
            self.scan.refresh_from_db()
            self.callback(self.scan)


@dataclass(frozen=True, slots=True)
class _Run:
    """What every part of one scan needs, whichever process does it."""

    source: Source
    trust: _Trust
    policy: str  # the verification settings' key (see _policy_key)


def _prepare(scan: Scan) -> _Run:
    source = scan.source
    trust = _Trust(trust_services.load(source.trust_root), identity_policy(source), trust_services.public_key_pems(),
                   require_tlog=not source.ignore_tlog)
    return _Run(source, trust, _policy_key(source))


def run_scan(scan_id: int, *, progress: Callable[[Scan], None] | None = None, inline: bool = False) -> None:
    """Ingest every image a source names, verify its evidence and store the results.

    The scan lists the source's targets. Up to ``PROVENANCE_SCAN_CHUNK`` of them are done here and now; more are
    split into chunks that worker tasks do in parallel (``inline``: all here, one after the other, as
    ``ingest --wait`` does); the last chunk to finish finishes the scan. Problems with one image (unreadable,
    gone, unreachable) are stored on the scan and the rest goes on. Raises :class:`TransientError` only when
    nothing could be ingested for a transient reason (so the task retries), and errors about the source itself
    (authentication, unknown repository, unusable trust root).
    """
    scan = Scan.objects.select_related("source__trust_root").get(pk=scan_id)
    Scan.objects.filter(pk=scan_id).update(problems=[], errors=0, done=0, fetched=0, unchanged=0, total=0)
    run = _prepare(scan)
    source = run.source
    with open_access(source) as access, _pools() as (pool, lookups):
        listing = list_targets(source, access, pool=pool)
        Scan.objects.filter(pk=scan_id).update(total=len(listing.targets))
        if listing.problems:
            noted = _Progress(scan, None)
            for reference, code, message in listing.problems:
                noted.problem(reference, code, message, is_error=True)
            noted.flush()
        regone: list[int] = []
        for repository, existing in listing.existing.items():
            known = artifact_services.current_tags(source, repository)
            regone += artifact_services.record_tags_gone(source, repository, [t for t in known if t not in existing])
        if regone:  # their names changed: the policies that match them may have too
            policy_services.evaluate_artifacts(regone, cause="evidence", detail=f"scan #{scan_id}")
        size = max(1, getattr(settings, "PROVENANCE_SCAN_CHUNK", 200))
        chunks = [listing.targets[i:i + size] for i in range(0, len(listing.targets), size)]
        if len(chunks) <= 1:
            tracker = _Progress(scan, progress)
            tracker.messages += [f"{ref}: {code}: {message}" for ref, code, message in listing.problems]
            _process(run, access, listing.targets, listing.listed, pool, lookups, tracker)
            tracker.flush()
            if tracker.transient and not tracker.succeeded and listing.targets:
                raise TransientError(f"nothing could be ingested: {tracker.messages[0]}")
            _finish_scan(scan_id, tracker.messages)
            return
    with transaction.atomic():
        ScanListing.objects.update_or_create(scan_id=scan_id, defaults={
            "listed": {repository: sorted(tags) for repository, tags in listing.listed.items()}})
        ScanChunk.objects.filter(scan_id=scan_id).delete()  # a retried coordinator starts its chunks again
        rows = ScanChunk.objects.bulk_create(
            ScanChunk(scan_id=scan_id, index=i, targets=[[t.repository, t.reference, t.tag] for t in chunk])
            for i, chunk in enumerate(chunks))
    if inline:
        for row in rows:
            if claim_chunk(row.pk):
                run_chunk(row.pk, progress=progress)
    else:
        from provenance.sources.tasks import scan_chunk

        for row in rows:
            transaction.on_commit(lambda pk=row.pk: scan_chunk.delay(pk))


def claim_chunk(chunk_id: int) -> bool:
    """Move a pending chunk to running; False when another worker has it, it is finished, or it is gone."""
    return ScanChunk.objects.filter(pk=chunk_id, state=ScanChunk.State.PENDING).update(
        state=ScanChunk.State.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1) == 1


def run_chunk(chunk_id: int, *, progress: Callable[[Scan], None] | None = None) -> None:
    """Do one claimed chunk of a scan; the last chunk to end finishes the scan. A problem with the source itself
    (access revoked, trust root unusable) fails this chunk with its reason; the other chunks go on."""
    chunk = ScanChunk.objects.select_related("scan__source__trust_root").get(pk=chunk_id)
    scan = chunk.scan
    targets = [Target(repository, reference, tag) for repository, reference, tag in chunk.targets]
    tracker = _Progress(scan, progress)
    try:
        run = _prepare(scan)
        listed = _listing(scan.pk)
        with open_access(run.source) as access, _pools() as (pool, lookups):
            _process(run, access, targets, listed, pool, lookups, tracker)
    except ProvenanceError as err:
        # The targets not reached count as not ingested; the scan's done count reaches its total at the end.
        undone = len(targets) - tracker.advanced
        tracker.problem(f"chunk {chunk.index + 1} of scan #{scan.pk}", err.code, err.message, is_error=True)
        tracker.count("errors", max(0, undone - 1))
        state = ScanChunk.State.FAILED
    else:
        state = ScanChunk.State.DONE
    tracker.flush()
    ScanChunk.objects.filter(pk=chunk_id).update(
        state=state, finished_at=timezone.now(), problems=tracker.problems, messages="\n".join(tracker.messages),
        transient=tracker.transient, succeeded=tracker.succeeded)
    _finish_if_last(scan.pk)


def _finish_if_last(scan_id: int) -> None:
    with transaction.atomic():
        scan = Scan.objects.select_for_update().get(pk=scan_id)
        if scan.state != Scan.State.RUNNING:
            return
        open_chunks = ScanChunk.objects.filter(scan_id=scan_id).exclude(
            state__in=[ScanChunk.State.DONE, ScanChunk.State.FAILED])
        if open_chunks.exists():
            return
        messages = [m for text in ScanChunk.objects.filter(scan_id=scan_id).values_list("messages", flat=True)
                    for m in text.splitlines() if m]
        # A chunk that failed as a whole left its targets undone: the scan's count still reaches the total.
        Scan.objects.filter(pk=scan_id).update(done=F("total"), errors=Least(F("errors"), F("total")))
    _finish_scan(scan_id, messages)


def _finish_scan(scan_id: int, messages: list[str]) -> None:
    now = timezone.now()
    summary = "\n".join(messages)[:20000]
    scan = Scan.objects.get(pk=scan_id)
    with transaction.atomic():
        # Only a running scan finishes, once: two last chunks ending together cannot both finish and announce it.
        finished = Scan.objects.filter(pk=scan_id, state=Scan.State.RUNNING).update(
            state=Scan.State.DONE, error_code="partial" if scan.errors else "", error=summary, finished_at=now)
        if not finished:
            return
        Source.objects.filter(pk=scan.source_id).update(last_error=summary, last_scanned_at=now)
        ScanListing.objects.filter(scan_id=scan_id).delete()
    _announce(scan_id)


@functools.lru_cache(maxsize=8)
def _cached_listing(scan_id: int) -> dict[str, frozenset[str]]:
    row = ScanListing.objects.filter(scan_id=scan_id).values_list("listed", flat=True).first() or {}
    return {repository: frozenset(tags) for repository, tags in row.items()}


def _listing(scan_id: int) -> dict[str, frozenset[str]]:
    """The scan's tag listing, parsed once per worker process (a chunk of the same scan reuses it)."""
    return _cached_listing(scan_id)


def _concurrency() -> int:
    return max(1, settings.PROVENANCE_SCAN_CONCURRENCY)


@contextmanager
def _pools() -> Iterator[tuple[ThreadPoolExecutor, ThreadPoolExecutor]]:
    """The threads of one scan or chunk: ``PROVENANCE_SCAN_CONCURRENCY`` images at a time, and twice as many
    threads for their registry requests, shared by all images (a pool per image costs a thread per request)."""
    with ThreadPoolExecutor(_concurrency(), thread_name_prefix="scan") as pool, \
            ThreadPoolExecutor(2 * _concurrency(), thread_name_prefix="lookup") as lookups:
        yield pool, lookups


def _process(run: _Run, access: Access, targets: list[Target], listed: dict[str, frozenset[str]],
             pool: ThreadPoolExecutor, lookups: ThreadPoolExecutor, tracker: _Progress) -> None:
    """Resolve, look at, verify and store ``targets``; record their tags; evaluate the policies over them."""
    source = run.source
    # Bytes fetched and time spent by this scan (by this chunk, of a large one), tags resolved included: past
    # either, the images not yet done stop with the reason, and the task ends before its time limit would kill it.
    scan_budget = Budget(max_bytes=settings.PROVENANCE_MAX_SCAN_BYTES, what="scan",
                         bytes_limit="PROVENANCE_MAX_SCAN_BYTES",
                         max_seconds=float(settings.PROVENANCE_MAX_SCAN_SECONDS),
                         seconds_limit="PROVENANCE_MAX_SCAN_SECONDS")
    groups, manifests = _resolve(access, targets, pool, tracker, source, scan_budget)
    futures: dict[Future[_Examined], tuple[str, Digest, list[Target]]] = {}
    stored = artifact_services.stored_trees(source, list(groups))
    for (repository, digest), group in groups.items():
        artifact, nodes = stored.get((repository, str(digest)), (None, []))
        future = pool.submit(_examine, access, repository, digest, nodes=nodes,
                             manifest=manifests.get((repository, digest)),
                             stored=artifact.evidence_fingerprint if artifact is not None else "", policy=run.policy,
                             trust=run.trust, listed=listed, scan_budget=scan_budget, lookups=lookups)
        futures[future] = (repository, digest, group)
    tags: dict[str, dict[str, Digest]] = {}
    pending: list[_Looked] = []
    for future in as_completed(futures):
        repository, digest, group = futures.pop(future)
        _finish_digest(source, future, repository, digest, group, tracker, pending)
        for target in group:
            if target.tag is not None:
                tags.setdefault(repository, {})[target.tag] = digest
    _store_batch(source, pending, tracker)
    # Evaluated: what was stored anew, what was retagged (its names changed, so may the policies that match it),
    # and what a stopped worker stored but did not evaluate. An unchanged image under unchanged policies (the
    # fingerprint covers the source's verification settings; policy, key and trust-root changes re-evaluate
    # the fleet themselves) keeps its verdict without a read or a write.
    ids = set(artifact_services.tree_ids(source, tracker.touched))
    for repository, pointing in tags.items():
        ids |= artifact_services.record_tags(source, repository, pointing).artifacts
    ids.update(artifact_services.unevaluated(source, tracker.unchanged))
    if ids:
        policy_services.evaluate_artifacts(ids, cause="evidence", detail=f"scan #{tracker.scan.pk}")


def _announce(scan_id: int) -> None:
    """Send ``scan_finished`` once the scan's state is committed; a receiver's error never touches the scan."""
    def send() -> None:
        scan = Scan.objects.select_related("source").filter(pk=scan_id).first()
        if scan is not None:
            for receiver, result in signals.scan_finished.send_robust(sender=Scan, scan=scan):
                if isinstance(result, Exception):
                    log.error("scan_finished receiver %r failed: %r", receiver, result)

    transaction.on_commit(send)


def _resolve(access: Access, targets: list[Target], pool: ThreadPoolExecutor, tracker: _Progress,
             source: Source, budget: Budget
             ) -> tuple[dict[tuple[str, Digest], list[Target]], dict[tuple[str, Digest], Manifest]]:
    """Resolve tags to digests; group targets by digest. A tag gone since the listing is recorded gone.

    A tag seen before costs one conditional GET (304 while it names the same digest); a new one, or one that
    moved, is fetched at once and its manifest kept for discovery. Registries (layouts) without conditional
    requests are asked by HEAD."""
    known: dict[tuple[str, str], Digest] = {}
    for repository in {t.repository for t in targets if t.tag is not None}:
        tags = [t.tag for t in targets if t.repository == repository and t.tag is not None]
        known.update({(repository, tag): Digest.parse(digest)
                      for tag, digest in artifact_services.current_tags(source, repository, tags).items()})
    conditional = getattr(access.registry, "get_manifest_if_changed", None)

    def resolve(target: Target) -> tuple[Digest, Manifest | None]:
        if target.tag is None:
            return Digest.parse(target.reference), None
        budget.check()
        try:
            if conditional is not None:
                before = known.get((target.repository, target.tag))
                if before is None:
                    manifest = access.registry.get_manifest(target.repository, target.tag)
                else:
                    manifest = conditional(target.repository, target.tag, before)
                    if manifest is None:
                        return before, None
                return manifest.digest, manifest
            head = getattr(access.registry, "head_manifest", None)
            digest = head(target.repository, target.tag) if head is not None else None
        except NotFoundError:
            digest = None
        if digest is None:
            # Distribution answers 404 for a tag that was listed a moment ago and deleted since.
            raise NotFoundError(f"tag {target} was listed but no longer exists (deleted since?)",
                                code="tag_gone")
        return digest, None

    groups: dict[tuple[str, Digest], list[Target]] = {}
    manifests: dict[tuple[str, Digest], Manifest] = {}
    gone: dict[str, list[str]] = {}
    futures = [(target, pool.submit(resolve, target)) for target in targets]
    for target, future in futures:
        try:
            digest, manifest = future.result()
        except AccessError:
            raise
        except ProvenanceError as err:
            _record_failure(tracker, str(target), err)
            if target.tag is not None and isinstance(err, NotFoundError):
                gone.setdefault(target.repository, []).append(target.tag)
            tracker.advance(1)
            continue
        groups.setdefault((target.repository, digest), []).append(target)
        if manifest is not None:
            manifests[(target.repository, digest)] = manifest
    for repository, tags in gone.items():
        artifact_services.record_tags_gone(source, repository, tags)
    return groups, manifests


@dataclass(frozen=True, slots=True)
class _Trust:
    """What a source's evidence is verified against."""

    trust_root: CoreTrustRoot
    identity: IdentityPolicy | None
    public_keys: tuple[bytes, ...]
    require_tlog: bool = True


def _metered(registry: Registry, budget: Budget) -> Metered:
    return Metered(registry, budget, max_layers=settings.PROVENANCE_MAX_LAYERS,
                   max_referrers=settings.PROVENANCE_MAX_REFERRERS)


def _examine(access: Access, repository: str, digest: Digest, *, nodes: list[tuple[Digest, str]], stored: str,
             policy: str, trust: _Trust, listed: dict[str, frozenset[str]],
             scan_budget: Budget | None = None, lookups: ThreadPoolExecutor | None = None,
             manifest: Manifest | None = None) -> _Examined:
    """On a worker thread: skip an unchanged digest cheaply, else discover and verify (no database here).

    Everything fetched for the image spends its budget (PROVENANCE_MAX_IMAGE_BYTES, _SECONDS) and the scan's."""
    budget = Budget(max_bytes=settings.PROVENANCE_MAX_IMAGE_BYTES, max_seconds=settings.PROVENANCE_MAX_IMAGE_SECONDS,
                    bytes_limit="PROVENANCE_MAX_IMAGE_BYTES", seconds_limit="PROVENANCE_MAX_IMAGE_SECONDS",
                    parent=scan_budget)
    budget.check()  # an image not begun before the scan's budget ran out is stopped, with the reason
    registry = _metered(access.registry, budget)
    signature_registry = _metered(access.signature_registry, budget) if access.signature_registry else None
    if stored and nodes:
        current = _combined(
            core_discovery.evidence_fingerprint(
                registry, repository, nodes, signature_repository=access.signature_repository,
                signature_registry=signature_registry, listed_tags=listed, executor=lookups,
            ),
            policy,
        )
        if current == stored:
            return _Examined(digest, unchanged=True)
    options: dict[str, Any] = {"signature_repository": access.signature_repository,
                               "signature_registry": signature_registry, "listed_tags": listed, "executor": lookups}
    if manifest is not None:  # fetched when its tag was resolved: counted against the image's budget here
        registry.budget.charge(len(manifest.data))
        found = core_discovery.discover_manifest(registry, repository, manifest, **options)
    else:
        found = core_discovery.discover(registry, repository, digest, **options)
    results = artifact_services.verify_discovery(found, trust_root=trust.trust_root, identity=trust.identity,
                                                 public_keys=trust.public_keys, require_tlog=trust.require_tlog)
    fingerprint = _combined(found.fingerprint, policy) if found.fingerprint else ""
    return _Examined(digest, discovery=found, results=results, fingerprint=fingerprint)


@dataclass(slots=True)
class _Looked:
    """A digest a worker thread looked at, with the targets (tags) that named it."""

    repository: str
    digest: Digest
    targets: list[Target]
    examined: _Examined

    @property
    def label(self) -> str:
        shown = " ".join(str(t) for t in self.targets[:3]) + (" ..." if len(self.targets) > 3 else "")
        return f"{shown}@{self.digest}"


def _finish_digest(source: Source, future: Future[_Examined], repository: str, digest: Digest,
                   targets: list[Target], tracker: _Progress, pending: list[_Looked]) -> None:
    """On the scan thread: count an unchanged digest, queue a changed one for the next batch store, record a
    failure (tags are recorded per batch)."""
    looked = _Looked(repository, digest, targets, _Examined(digest))
    try:
        looked.examined = future.result()
    except AccessError:
        raise
    except ProvenanceError as err:
        artifact_services.forget_fingerprint(source, repository, digest)
        _record_failure(tracker, looked.label, err)
    except Exception as err:  # a bug with one image must not lose the others; it is logged in full
        log.exception("internal error ingesting %s@%s", repository, digest)
        _record_failure(tracker, looked.label,
                        ProvenanceError(f"internal error: {type(err).__name__}", code="internal_error"))
    else:
        if not looked.examined.unchanged:
            pending.append(looked)
            if len(pending) >= _STORE_BATCH:
                _store_batch(source, pending, tracker)
            return
        tracker.succeeded += 1
        tracker.unchanged.append((repository, digest))
        tracker.count("unchanged")
    tracker.advance(len(targets))


def _store_batch(source: Source, pending: list[_Looked], tracker: _Progress) -> None:
    """Store the queued digests in one batch (a constant number of statements). Two workers may store the same
    digest at once (two tags of it in two chunks): the upserts meet on the unique keys, and a batch that still
    fails is stored one digest at a time so that one bad image loses nothing of the others."""
    def store(batch: list[_Looked]) -> None:
        artifact_services.store_discoveries(source, [
            artifact_services.Found(item.repository, item.examined.discovery, item.examined.results,
                                    item.examined.fingerprint)
            for item in batch if item.examined.discovery is not None])

    try:
        store(pending)
        stored = list(pending)
    except Exception:
        log.warning("storing a batch of %d digests failed; storing them one at a time", len(pending), exc_info=True)
        stored = []
        for item in pending:
            try:
                store([item])
            except Exception as err:
                log.exception("internal error storing %s", item.label)
                _record_failure(tracker, item.label,
                                ProvenanceError(f"internal error: {type(err).__name__}", code="internal_error"))
                tracker.advance(len(item.targets))
            else:
                stored.append(item)
    for item in stored:
        tracker.succeeded += 1
        tracker.touched.append((item.repository, item.digest))
        tracker.count("fetched")
        assert item.examined.discovery is not None
        for problem in item.examined.discovery.problems:
            tracker.problem(item.label, problem.code, problem.message, is_error=False)
        tracker.advance(len(item.targets))
    pending.clear()


def _record_failure(tracker: _Progress, reference: str, err: ProvenanceError) -> None:
    if isinstance(err, TransientError):
        tracker.transient += 1
    tracker.problem(reference, err.code, err.message, is_error=True)
