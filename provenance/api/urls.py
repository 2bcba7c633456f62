from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import APIRootView, DefaultRouter

from provenance.accounts.permissions import ViewerReads
from provenance.api import views


class _Root(APIRootView):
    """Viewer: the API's resources."""

    permission_classes = [ViewerReads]


class _Router(DefaultRouter):
    APIRootView = _Root


router = _Router()
router.register("artifacts", views.ArtifactViewSet)
router.register("sources", views.SourceViewSet)
router.register("scans", views.ScanViewSet)
router.register("trust-roots", views.TrustRootViewSet)
router.register("policies", views.PolicyViewSet)
router.register("public-keys", views.PublicKeyViewSet)
router.register("tokens", views.ApiTokenViewSet)
router.register("audit", views.AuditEventViewSet)

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[ViewerReads]), name="api-schema"),
]
