from django.contrib import admin

from provenance.trust.models import PublicKey, TrustRoot


@admin.register(TrustRoot)
class TrustRootAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "sha256", "refreshed_at", "updated_at"]
    readonly_fields = ["sha256", "refreshed_at", "refresh_error"]


@admin.register(PublicKey)
class PublicKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "algorithm", "fingerprint", "created_at"]
    readonly_fields = ["fingerprint", "algorithm"]
    search_fields = ["name", "fingerprint"]
