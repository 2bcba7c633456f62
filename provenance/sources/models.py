"""Sources of artifacts (an image reference, a registry repository, an OCI layout) and their scans."""

from __future__ import annotations

from django.db import models


class Source(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image", "Image reference"
        LAYOUT = "layout", "OCI image layout directory"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.IMAGE)
    location = models.CharField(max_length=1000, help_text="An image reference, or a layout directory path.")
    is_insecure = models.BooleanField(default=False, help_text="Plain HTTP to the registry (local registries only).")
    trust_root = models.ForeignKey("trust.TrustRoot", on_delete=models.PROTECT, related_name="sources")
    expected_identity = models.CharField(max_length=500, blank=True)
    expected_identity_regexp = models.CharField(max_length=500, blank=True)
    expected_issuer = models.CharField(max_length=500, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


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
