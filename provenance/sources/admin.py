from django.contrib import admin

from provenance.accounts.admin import ReadOnlyAdmin
from provenance.sources.models import Scan, Source


@admin.register(Source)
class SourceAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "location", "trust_root", "expected_issuer", "last_scanned_at"]
    # The encrypted password is never shown, not even encrypted; set credentials with the form or the API.
    exclude = ["encrypted_password"]
    readonly_fields = ["username", "last_error", "last_scanned_at"]


@admin.register(Scan)
class ScanAdmin(ReadOnlyAdmin):
    list_display = ["source", "state", "done", "total", "errors", "fetched", "unchanged", "error_code", "created_at",
                    "finished_at"]
    list_filter = ["state"]
