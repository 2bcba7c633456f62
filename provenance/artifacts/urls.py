from django.urls import path

from provenance.artifacts import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("artifacts/<str:digest>/", views.artifact_detail, name="artifact-detail"),
]
