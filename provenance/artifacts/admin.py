from django.contrib import admin

from provenance.accounts.admin import ReadOnlyAdmin
from provenance.artifacts.models import Artifact, Evidence


@admin.register(Artifact)
class ArtifactAdmin(ReadOnlyAdmin):
    list_display = ["repository", "digest", "platform", "status", "status_code", "checked_at"]
    list_filter = ["status"]
    search_fields = ["repository", "digest"]


@admin.register(Evidence)
class EvidenceAdmin(ReadOnlyAdmin):
    list_display = ["artifact", "kind", "format", "outcome", "identity", "tlog"]
    list_filter = ["kind", "outcome"]
