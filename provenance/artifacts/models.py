"""Artifacts (content-addressed manifests), the tags that named them, and the evidence found for them."""

from __future__ import annotations

from django.db import models

from provenance.core.names import full_name


class TrustStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    VERIFIED = "verified", "Verified"
    FAILED = "failed", "Failed"
    UNSIGNED = "unsigned", "Unsigned"
    ERROR = "error", "Could not verify"


class Artifact(models.Model):
    """One manifest digest in one repository; an index's platform manifests are artifacts too."""

    source = models.ForeignKey("sources.Source", on_delete=models.CASCADE, related_name="artifacts")
    repository = models.CharField(max_length=500)
    digest = models.CharField(max_length=140, db_index=True)
    media_type = models.CharField(max_length=200, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    platform = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=TrustStatus.choices, default=TrustStatus.PENDING, db_index=True)
    status_code = models.CharField(max_length=60, blank=True)
    status_reason = models.TextField(blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # What discovery saw (provenance.core.discovery fingerprint, with the verification settings): a re-scan that
    # computes the same value cheaply skips fetching and verifying again. Empty: always look again.
    evidence_fingerprint = models.CharField(max_length=140, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["repository", "digest"]
        constraints = [
            models.UniqueConstraint(fields=["source", "repository", "digest"], name="artifact_unique_per_source"),
        ]
        # The gate looks an image up by its place (repository) and digest, and a tag by repository and name.
        indexes = [
            models.Index(fields=["repository", "digest"], name="artifact_repository_digest"),
            # API filters: repository prefix (LIKE 'x%' on PostgreSQL needs the pattern opclass). The newest-first
            # order's index (checked_at DESC NULLS LAST, id DESC) is PostgreSQL-only: migration 0006.
            models.Index(fields=["repository"], name="artifact_repository_prefix", opclasses=["varchar_pattern_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def full_name(self) -> str:
        """``registry/repository`` as policies match it (see core.names); loads the source if not selected."""
        return full_name(self.source.registry_host, self.repository)

    @property
    def is_index(self) -> bool:
        return self.media_type in {
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        }


class Tag(models.Model):
    """A tag seen pointing at an artifact, with when it was first and last seen there."""

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=128)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["artifact", "name"], name="tag_unique_per_artifact")]
        indexes = [models.Index(fields=["name"], name="tag_name")]


class TagEvent(models.Model):
    """A change of what a tag points at, as seen by a scan: first seen, moved, or gone (``digest`` empty).

    The latest event per (source, repository, tag) is where the tag pointed when last looked at.
    """

    source = models.ForeignKey("sources.Source", on_delete=models.CASCADE, related_name="tag_events")
    repository = models.CharField(max_length=500)
    tag = models.CharField(max_length=128)
    digest = models.CharField(max_length=140, blank=True)
    previous_digest = models.CharField(max_length=140, blank=True)
    seen_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-seen_at", "-pk"]
        indexes = [models.Index(fields=["source", "repository", "tag", "-seen_at"], name="tagevent_lookup")]

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag} {self.previous_digest or '-'} -> {self.digest or 'gone'}"

    @property
    def change(self) -> str:
        if not self.digest:
            return "removed"
        return "moved" if self.previous_digest else "added"


class Evidence(models.Model):
    """A signature or attestation found for an artifact, and the result of verifying it."""

    class Kind(models.TextChoices):
        SIGNATURE = "signature", "Signature"
        ATTESTATION = "attestation", "Attestation"
        SBOM = "sbom", "SBOM"

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="evidence")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    format = models.CharField(max_length=40)
    location = models.CharField(max_length=300, help_text="Where it was found, e.g. the .sig tag.")
    digest = models.CharField(max_length=140, help_text="Digest of the layer holding the evidence.")
    # Several signers' cosign layers share one payload blob (same digest) and differ only in their annotations:
    # the evidence's identity is the layer digest *and* its annotations.
    evidence_key = models.CharField(max_length=64, default="")
    covers_digest = models.CharField(max_length=140)
    level = models.CharField(max_length=20, default="image")
    predicate_type = models.CharField(max_length=300, blank=True)
    outcome = models.CharField(max_length=20)
    valid = models.BooleanField(default=False, help_text="A valid signature by someone: verified, or failed only "
                                                         "on who signed (the coverage figures count these).")
    identity = models.CharField(max_length=500, blank=True)
    issuer = models.CharField(max_length=500, blank=True)
    key = models.CharField(max_length=200, blank=True)
    tlog = models.CharField(max_length=40, blank=True)
    integrated_time = models.DateTimeField(null=True, blank=True)
    checks = models.JSONField(default=list)
    statement = models.JSONField(null=True, blank=True)
    # The evidence exactly as fetched (bounded by discovery), so it can be re-verified without refetching.
    payload = models.BinaryField(default=b"")
    annotations = models.JSONField(default=dict)
    media_type = models.CharField(max_length=200, blank=True)
    verified_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "location", "digest"]
        constraints = [
            models.UniqueConstraint(fields=["artifact", "kind", "evidence_key"], name="evidence_unique_per_artifact"),
        ]
        # "Which images did this identity (issuer) sign?" across the fleet.
        indexes = [models.Index(fields=["identity", "outcome"], name="evidence_identity"),
                   models.Index(fields=["issuer", "outcome"], name="evidence_issuer")]

    @property
    def is_verified(self) -> bool:
        return self.outcome == "verified"

    @property
    def failures(self) -> list[dict]:
        return [c for c in self.checks if not c.get("ok")]
