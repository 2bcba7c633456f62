from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path


def healthz(request: HttpRequest) -> JsonResponse:
    """Anyone (no login): liveness for load balancers and compose: the process answers and the database does too."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/", include("provenance.api.urls")),
    path("", include("provenance.accounts.urls")),
    path("", include("provenance.sources.urls")),
    path("", include("provenance.artifacts.urls")),
    path("", include("provenance.trust.urls")),
    path("", include("provenance.policies.urls")),
    path("", include("provenance.gitsources.urls")),
    path("", include("provenance.monitor.urls")),
    path("", include("provenance.compliance.urls")),
]
