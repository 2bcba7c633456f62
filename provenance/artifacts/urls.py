from django.urls import path

from provenance.artifacts import views
from provenance.policies import views as policy_views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("charts/verdicts/", views.verdict_chart, name="verdict-chart"),
    # One page per place (an artifact row: source, repository, digest) ...
    path("artifacts/<int:pk>/", views.artifact_place, name="artifact-place"),
    path("artifacts/<int:pk>/trust/", policy_views.place_trust, name="artifact-place-trust"),
    # ... and the digest view: every place the digest is found (a redirect when there is one).
    path("artifacts/<str:digest>/", views.artifact_digest, name="artifact-detail"),
]
