from django.contrib import admin

from provenance.policies.models import ArtifactTrust, Policy, Reevaluation, TrustEvent


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "mode", "is_enabled", "version", "updated_at"]
    readonly_fields = ["parsed", "warnings", "sha256", "version"]

    # Edit policies on the Policies page: it validates, previews and re-evaluates; the admin would not.
    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(ArtifactTrust)
class ArtifactTrustAdmin(admin.ModelAdmin):
    list_display = ["artifact", "status", "code", "evaluated_at"]
    list_filter = ["status"]


@admin.register(TrustEvent)
class TrustEventAdmin(admin.ModelAdmin):
    list_display = ["artifact", "at", "cause", "previous_status", "status", "code"]
    list_filter = ["cause", "status"]


@admin.register(Reevaluation)
class ReevaluationAdmin(admin.ModelAdmin):
    list_display = ["pk", "cause", "detail", "state", "done", "total", "changed", "created_at"]
    list_filter = ["state", "cause"]
