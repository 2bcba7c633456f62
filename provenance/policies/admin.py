from django.contrib import admin

from provenance.accounts.admin import ReadOnlyAdmin
from provenance.policies.models import ArtifactTrust, Policy, Reevaluation, TrustEvent


@admin.register(Policy)
class PolicyAdmin(ReadOnlyAdmin):
    list_display = ["name", "mode", "is_enabled", "version", "updated_at"]
    readonly_fields = ["parsed", "warnings", "sha256", "version"]


@admin.register(ArtifactTrust)
class ArtifactTrustAdmin(ReadOnlyAdmin):
    list_display = ["artifact", "status", "code", "evaluated_at"]
    list_filter = ["status"]


@admin.register(TrustEvent)
class TrustEventAdmin(ReadOnlyAdmin):
    list_display = ["artifact", "at", "cause", "previous_status", "status", "code"]
    list_filter = ["cause", "status"]


@admin.register(Reevaluation)
class ReevaluationAdmin(ReadOnlyAdmin):
    list_display = ["pk", "cause", "detail", "state", "done", "total", "changed", "created_at"]
    list_filter = ["state", "cause"]
