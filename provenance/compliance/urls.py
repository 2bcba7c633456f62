from django.urls import path

from provenance.compliance import views

urlpatterns = [
    path("compliance/", views.report, name="compliance"),
    path("compliance/export/", views.export, name="compliance-export"),
    path("compliance/export/schema.json", views.export_schema, name="compliance-export-schema"),
    path("compliance/pack/", views.pack, name="compliance-pack"),
    path("compliance/signing-key.pub", views.signing_key, name="compliance-signing-key"),
    path("compliance/signing-key/rotate", views.signing_key_rotate, name="compliance-signing-key-rotate"),
    path("artifacts/<str:digest>/vsa.intoto.jsonl", views.artifact_vsa, name="artifact-vsa"),
    path("artifacts/<str:digest>/vsa/push", views.artifact_vsa_push, name="artifact-vsa-push"),
]
