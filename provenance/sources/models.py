"""Sources of artifacts (an image reference, a registry repository, an OCI layout) and their scans."""

from __future__ import annotations

from django.db import models

from provenance.core.errors import MalformedEvidenceError
from provenance.core.names import LAYOUT_REGISTRY
from provenance.core.types import ImageRef


class Source(models.Model):
    """Where images come from. Registry credentials are stored encrypted (Fernet) and never shown back."""

    class Kind(models.TextChoices):
        IMAGE = "image", "Image reference"
        REPOSITORY = "repository", "Registry repository"
        LAYOUT = "layout", "OCI image layout directory"
        LAYOUT_TAR = "layout-tar", "OCI image layout tar"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.IMAGE)
    location = models.CharField(
        max_length=1000,
        help_text="An image reference, a repository (registry/name), or the path of a layout directory or tar.",
    )
    tag_pattern = models.CharField(
        max_length=200, blank=True, help_text="Repository sources: only tags matching this glob (e.g. v1.*)."
    )
    newest = models.PositiveIntegerField(
        null=True, blank=True, help_text="Repository sources: only the newest N tags (by image creation time)."
    )
    signature_repository = models.CharField(
        max_length=500, blank=True, help_text="Where cosign signatures live, if elsewhere (COSIGN_REPOSITORY)."
    )
    is_insecure = models.BooleanField(default=False, help_text="Plain HTTP to the registry (local registries only).")
    ignore_tlog = models.BooleanField(
        default=False,
        help_text="INSECURE: accept key-based signatures that were never logged in a transparency log (cosign's "
                  "--insecure-ignore-tlog, for air-gapped signers); they are shown as \"not logged\".",
    )
    ca_certificates = models.TextField(blank=True, help_text="PEM CA certificates for a registry with a private CA.")
    username = models.CharField(max_length=200, blank=True)
    # A Fernet token (provenance.core.credentials); never rendered, never logged.
    encrypted_password = models.TextField(blank=True)
    is_scheduled = models.BooleanField(default=True, help_text="Re-scan periodically.")
    trust_root = models.ForeignKey("trust.TrustRoot", on_delete=models.PROTECT, related_name="sources")
    expected_identity = models.CharField(max_length=500, blank=True)
    expected_identity_regexp = models.CharField(max_length=500, blank=True)
    expected_issuer = models.CharField(max_length=500, blank=True)
    last_error = models.TextField(blank=True)
    last_scanned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Source {self.pk} {self.name!r} {self.kind}>"

    @property
    def has_credentials(self) -> bool:
        return bool(self.username and self.encrypted_password)

    @property
    def is_registry(self) -> bool:
        return self.kind in {self.Kind.IMAGE, self.Kind.REPOSITORY}

    @property
    def registry_host(self) -> str:
        """The registry its images live on, as names spell it (``oci-layout`` for a layout; see core.names)."""
        return registry_host(self.kind, self.location)


def registry_host(kind: str, location: str) -> str:
    """The registry host of a source of ``kind`` at ``location`` ("" when the location does not parse)."""
    if kind not in {Source.Kind.IMAGE, Source.Kind.REPOSITORY}:
        return LAYOUT_REGISTRY
    try:
        return ImageRef.parse(location).registry
    except MalformedEvidenceError:
        return ""


class Scan(models.Model):
    """One ingestion run of a source. The row is the job; the Celery message only a nudge."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="scans")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0, help_text="Images that could not be ingested.")
    fetched = models.PositiveIntegerField(default=0, help_text="Digests whose evidence was fetched and verified.")
    unchanged = models.PositiveIntegerField(default=0, help_text="Digests whose evidence was unchanged (skipped).")
    # What went wrong on the way, one {"reference", "code", "message"} per problem (bounded).
    problems = models.JSONField(default=list, blank=True)
    error_code = models.CharField(max_length=60, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    @property
    def is_finished(self) -> bool:
        return self.state in {self.State.DONE, self.State.FAILED}

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else (100 if self.is_finished else 0)


class ScanChunk(models.Model):
    """A slice of a large scan's targets, done by one task: the pool (and several worker processes or machines on
    one database and broker) works through a scan's chunks in parallel; the scan stays one row whose counters
    the chunks add to. The row is the job: a chunk lost with its worker is put back and done again."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    targets = models.JSONField(help_text="[[repository, reference, tag or null], ...]")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True)
    messages = models.TextField(blank=True, help_text="The errors of this chunk, one per line.")
    transient = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["scan", "index"]
        constraints = [models.UniqueConstraint(fields=["scan", "index"], name="scan_chunk_unique")]


class ScanListing(models.Model):
    """Every tag of the scanned repositories when the scan began (evidence tags too): chunks consult it to skip
    looking for tags that do not exist, without listing the repository again."""

    scan = models.OneToOneField(Scan, on_delete=models.CASCADE, related_name="listing")
    listed = models.JSONField(default=dict)
