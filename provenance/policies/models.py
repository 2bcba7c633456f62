"""Policies (ClusterImagePolicy documents), per-artifact trust status, its history, and re-evaluation jobs."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    """Mirrors :class:`provenance.core.policy.TrustStatus`."""

    TRUSTED = "trusted", "Trusted"
    UNTRUSTED = "untrusted", "Untrusted"
    WARN = "warn", "Warn"
    UNSIGNED = "unsigned", "Unsigned"
    ERROR = "error", "Could not check"
    PENDING = "pending", "Pending"


class Cause(models.TextChoices):
    EVIDENCE = "evidence", "New evidence"
    POLICY = "policy", "Policy change"
    TRUST_ROOT = "trust_root", "Trust-root change"
    SCHEDULE = "schedule", "Scheduled re-verification"


class Policy(models.Model):
    """A ClusterImagePolicy as imported: the YAML source is the truth, ``parsed`` a normalized copy for display."""

    class Mode(models.TextChoices):
        ENFORCE = "enforce", "Enforce"
        WARN = "warn", "Warn"

    name = models.CharField(max_length=253, unique=True)
    source = models.TextField(help_text="The ClusterImagePolicy YAML, as imported.")
    parsed = models.JSONField(default=dict)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.ENFORCE)
    is_enabled = models.BooleanField(default=True)
    warnings = models.JSONField(default=list)
    sha256 = models.CharField(max_length=64, editable=False)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name


class ArtifactTrust(models.Model):
    """An artifact's current trust status under the enabled policies, and why."""

    artifact = models.OneToOneField("artifacts.Artifact", on_delete=models.CASCADE, related_name="trust")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    code = models.CharField(max_length=60, blank=True)
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, help_text="Per-policy results and, for an index, per-platform ones.")
    evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "artifact trust"

    def __str__(self) -> str:
        return f"{self.artifact_id}: {self.status}"


class TrustEvent(models.Model):
    """One change of an artifact's trust status: when, from what to what, and what caused it."""

    artifact = models.ForeignKey("artifacts.Artifact", on_delete=models.CASCADE, related_name="trust_events")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    cause = models.CharField(max_length=20, choices=Cause.choices)
    detail = models.CharField(max_length=300, blank=True)
    previous_status = models.CharField(max_length=10, choices=Status.choices)
    status = models.CharField(max_length=10, choices=Status.choices)
    code = models.CharField(max_length=60, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["artifact", "-at"], name="trustevent_artifact_at")]


class Reevaluation(models.Model):
    """A background re-evaluation from stored evidence. The row is the job; the Celery message only a nudge.

    ``scope`` selects the artifacts: ``{}`` for all, else any of ``artifact_ids``, ``source_ids`` and ``globs``
    (image globs of the policies involved); an artifact in any of them is re-evaluated.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    cause = models.CharField(max_length=20, choices=Cause.choices)
    detail = models.CharField(max_length=300, blank=True)
    scope = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    @property
    def is_finished(self) -> bool:
        return self.state in {self.State.DONE, self.State.FAILED}
