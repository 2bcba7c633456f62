from django.contrib import admin

from provenance.accounts.admin import ReadOnlyAdmin
from provenance.trust.models import PublicKey, PublicKeyVersion, TrustRoot, TrustRootVersion


@admin.register(TrustRoot)
class TrustRootAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "sha256", "refreshed_at", "updated_at"]
    readonly_fields = ["sha256", "refreshed_at", "refresh_error"]


@admin.register(PublicKey)
class PublicKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "algorithm", "fingerprint", "created_at"]
    readonly_fields = ["fingerprint", "algorithm"]
    search_fields = ["name", "fingerprint"]


@admin.register(TrustRootVersion)
class TrustRootVersionAdmin(ReadOnlyAdmin):
    list_display = ["trust_root", "version", "sha256", "origin", "created_at"]


@admin.register(PublicKeyVersion)
class PublicKeyVersionAdmin(ReadOnlyAdmin):
    list_display = ["name", "version", "fingerprint", "created_at", "retired_at"]
