"""API tokens and the audit trail."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from provenance.accounts.roles import PERMISSIONS


class RoleHolder(models.Model):
    """No rows: only the home of the three role permissions (``accounts.role_viewer`` ...)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = PERMISSIONS


class ApiToken(models.Model):
    """A user's API token. Only its SHA-256 is stored (the token is 32 random bytes: no slow hash is needed);
    the token itself is shown once, when it is created."""

    class Scope(models.TextChoices):
        READ = "read", "read (safe methods only)"
        WRITE = "write", "write (whatever the user's role allows)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="The token's public first part, to find it.")
    digest = models.CharField(max_length=64, editable=False)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class AuditEvent(models.Model):
    """One change: who did what to which object, when. Append-only: rows are never changed or deleted (the model
    refuses, the admin offers neither, and on PostgreSQL a trigger refuses UPDATE and DELETE)."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    # No constraint: deleting a user must not rewrite the trail (actor_name keeps who it was).
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING,
                              db_constraint=False, related_name="+")
    actor_name = models.CharField(max_length=150, help_text="The username, or how a change without a user came "
                                                            "about (a command, the scheduler).")
    action = models.CharField(max_length=60, db_index=True, help_text="e.g. source.create, trust_root.version")
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=100, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.object_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionError("the audit trail is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("the audit trail is append-only")
