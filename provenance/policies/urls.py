from django.urls import path

from provenance.policies import views

urlpatterns = [
    path("policies/", views.policy_list, name="policy-list"),
    path("policies/new/", views.policy_new, name="policy-new"),
    path("policies/jobs/", views.job_status, name="policy-jobs"),
    path("policies/<int:pk>/", views.policy_detail, name="policy-detail"),
    path("policies/<int:pk>/export/", views.policy_export, name="policy-export"),
    path("policies/<int:pk>/delete/", views.policy_delete, name="policy-delete"),
    path("coverage/", views.coverage, name="coverage"),
    path("trust/<str:digest>/", views.artifact_trust, name="artifact-trust"),
]
