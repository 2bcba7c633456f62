"""Trust roots: Sigstore ``trusted_root.json`` documents, stored as data."""

from __future__ import annotations

from django.db import models


class TrustRoot(models.Model):
    class Kind(models.TextChoices):
        PUBLIC_GOOD = "public-good", "Sigstore public-good (production)"
        STAGING = "staging", "Sigstore staging"
        PRIVATE = "private", "Private Sigstore deployment"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.PRIVATE)
    description = models.CharField(max_length=300, blank=True)
    document = models.TextField(help_text="The trusted_root.json document.")
    sha256 = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
