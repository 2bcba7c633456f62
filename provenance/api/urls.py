from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from provenance.api import gate_views, views
from provenance.policies.api import PolicyViewSet

router = DefaultRouter()
router.register("artifacts", views.ArtifactViewSet)
router.register("sources", views.SourceViewSet)
router.register("scans", views.ScanViewSet)
router.register("trust-roots", views.TrustRootViewSet)
router.register("policies", PolicyViewSet)
router.register("public-keys", views.PublicKeyViewSet)

urlpatterns = [
    path("v1/check/", gate_views.CheckView.as_view(), name="api-check"),
    path("v1/admission/", gate_views.AdmissionView.as_view(), name="api-admission"),
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
]
