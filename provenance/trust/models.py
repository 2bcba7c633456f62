"""Trust anchors as data: Sigstore ``trusted_root.json`` documents, and named long-lived public keys."""

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
    version = models.PositiveIntegerField(default=1, editable=False, help_text="Raised by every new document; "
                                                                              "each one is kept (versions).")
    tuf_url = models.URLField(blank=True, help_text="TUF repository the document is refreshed from, if any.")
    tuf_root = models.TextField(blank=True, help_text="The TUF root.json a private repository is anchored in "
                                                      "(the built-in repositories use the one sigstore ships).")
    signing_config = models.TextField(blank=True, help_text="The deployment's signing_config.json, when its TUF "
                                                            "repository has one (which log and timestamp "
                                                            "authorities new signatures use).")
    refreshed_at = models.DateTimeField(null=True, blank=True, help_text="Last successful TUF refresh.")
    refresh_error = models.TextField(blank=True, help_text="Why the last TUF refresh failed (the old root is kept).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PublicKey(models.Model):
    """A named long-lived signing key (``cosign.pub``) trusted for key-based signatures."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    pem = models.TextField(help_text="The PEM public key (SubjectPublicKeyInfo).")
    fingerprint = models.CharField(max_length=80, unique=True, editable=False,
                                   help_text="sha256 of the DER public key, as shown in verification results.")
    algorithm = models.CharField(max_length=20, editable=False)
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TrustRootVersion(models.Model):
    """Every document a trust root has held, kept: a root is never replaced in place."""

    class Origin(models.TextChoices):
        SHIPPED = "shipped", "shipped with sigstore"
        UPLOAD = "upload", "uploaded"
        TUF = "tuf", "TUF refresh"

    trust_root = models.ForeignKey(TrustRoot, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    document = models.TextField()
    sha256 = models.CharField(max_length=64)
    origin = models.CharField(max_length=10, choices=Origin.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["trust_root", "-version"]
        constraints = [models.UniqueConstraint(fields=["trust_root", "version"], name="trust_root_version_unique")]

    def __str__(self) -> str:
        return f"{self.trust_root.name} v{self.version}"


class PublicKeyVersion(models.Model):
    """Every key a name has stood for, kept after it is replaced or retired (by name: it outlives the key row)."""

    name = models.SlugField(max_length=100, db_index=True)
    version = models.PositiveIntegerField()
    pem = models.TextField()
    fingerprint = models.CharField(max_length=80)
    algorithm = models.CharField(max_length=20)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True, help_text="When it stopped being trusted.")

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="public_key_version_unique")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"
