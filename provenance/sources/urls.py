from django.urls import path

from provenance.sources import views

urlpatterns = [
    path("sources/new/", views.source_new, name="source-new"),
    path("sources/<int:pk>/", views.source_detail, name="source-detail"),
    path("sources/<int:pk>/scan/", views.source_scan, name="source-scan"),
]
