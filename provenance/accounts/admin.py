"""The admin shows accounts data; the audit trail and API tokens are read-only there (tokens are made and revoked
on the Tokens page or the API, so they are shown once and audited)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from provenance.accounts.models import ApiToken, AuditEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never added, changed or deleted from the admin: stored verdicts, evidence and history are
    read-only everywhere, the admin included; trust and policy changes go through the pages and the API, which
    validate, version, audit and re-evaluate."""

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor_name", "action", "object_type", "object_repr"]
    list_filter = ["action"]
    search_fields = ["actor_name", "object_repr"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["name", "user", "scope", "prefix", "expires_at", "last_used_at", "revoked_at"]
    exclude = ["digest"]
