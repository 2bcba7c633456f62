from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from provenance.api import views

router = DefaultRouter()
router.register("artifacts", views.ArtifactViewSet)
router.register("sources", views.SourceViewSet)
router.register("scans", views.ScanViewSet)
router.register("trust-roots", views.TrustRootViewSet)

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
]
