from django.urls import path

from provenance.trust import views

urlpatterns = [
    path("trust/", views.trust_index, name="trust"),
]
