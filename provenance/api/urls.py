from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import APIRootView, DefaultRouter

from provenance.accounts.decorators import role_required
from provenance.accounts.permissions import ViewerReads
from provenance.accounts.roles import Role
from provenance.api import gate_views, views
from provenance.compliance import api as compliance
from provenance.gitsources import api as gitsources_api
from provenance.monitor import api as monitor_api


class _Root(APIRootView):
    """Viewer: the API's resources; the schema and its docs page; commands (POST) are listed in the docs."""

    permission_classes = [ViewerReads]


class _Router(DefaultRouter):
    APIRootView = _Root

    # Besides the resources: lists that are actions, and routes outside the router (when they exist: a name
    # that does not resolve is left out of the root).
    extra = {
        "policy-coverage": "policy-coverage",
        "check": "api-check",
        "admission": "api-admission",
        "schema": "api-schema",
        "docs": "api-docs",
    }

    def get_api_root_view(self, api_urls=None):  # type: ignore[no-untyped-def]
        root = {prefix: self.routes[0].name.format(basename=basename) for prefix, _, basename in self.registry}
        return self.APIRootView.as_view(api_root_dict={**root, **self.extra})


router = _Router()
router.register("artifacts", views.ArtifactViewSet)
router.register("sources", views.SourceViewSet)
router.register("scans", views.ScanViewSet)
router.register("trust-roots", views.TrustRootViewSet)
router.register("policies", views.PolicyViewSet)
router.register("public-keys", views.PublicKeyViewSet)
router.register("tokens", views.ApiTokenViewSet)
router.register("audit", views.AuditEventViewSet)
router.register("git-sources", gitsources_api.GitSourceViewSet)
router.register("git-commits", gitsources_api.CommitViewSet)
router.register("monitor/events", monitor_api.EventViewSet)
router.register("monitor/logs", monitor_api.MonitoredLogViewSet)
router.register("monitor/identities", monitor_api.WatchedIdentityViewSet)
router.register("monitor/rules", monitor_api.AlertRuleViewSet)
router.register("monitor/deliveries", monitor_api.DeliveryViewSet)

urlpatterns = [
    path("v1/check/", gate_views.CheckView.as_view(), name="api-check"),
    path("v1/admission/", gate_views.AdmissionView.as_view(), name="api-admission"),
    path("v1/compliance/export/", compliance.ExportView.as_view(), name="api-compliance-export"),
    path("v1/compliance/pack/", compliance.PackView.as_view(), name="api-compliance-pack"),
    path("v1/compliance/report/", compliance.ReportView.as_view(), name="api-compliance-report"),
    path("v1/compliance/signing-key/", compliance.SigningKeyView.as_view(), name="api-compliance-signing-key"),
    path("v1/digests/<str:digest>/", views.DigestView.as_view(), name="api-digest"),
    path("v1/artifacts/<str:digest>/vsa/", compliance.ArtifactVsaView.as_view(), name="api-artifact-vsa"),
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[ViewerReads]), name="api-schema"),
    # A page for people (anonymous: to the login page): Swagger UI from drf-spectacular-sidecar's vendored
    # files (SPECTACULAR_SETTINGS: SIDECAR), no CDN; it reads the schema with the same session. The split view
    # serves its start-up script as a file (?script), so the page needs no inline script under the CSP.
    path("docs/", role_required(Role.VIEWER)(
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", permission_classes=[ViewerReads])), name="api-docs"),
]
