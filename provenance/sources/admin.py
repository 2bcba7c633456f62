from django.contrib import admin

from provenance.sources.models import Scan, Source


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "location", "trust_root", "expected_issuer"]


@admin.register(Scan)
class ScanAdmin(admin.ModelAdmin):
    list_display = ["source", "state", "done", "total", "error_code", "created_at", "finished_at"]
    list_filter = ["state"]
