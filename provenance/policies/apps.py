from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "provenance.policies"
    label = "policies"
    verbose_name = "Policies and trust"
