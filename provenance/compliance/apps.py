from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "provenance.compliance"
    label = "compliance"
