from django.contrib import admin

from provenance.trust.models import TrustRoot


@admin.register(TrustRoot)
class TrustRootAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "sha256", "updated_at"]
    readonly_fields = ["sha256"]
