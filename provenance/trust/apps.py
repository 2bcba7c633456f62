from django.apps import AppConfig


class TrustConfig(AppConfig):
    name = "provenance.trust"
    label = "trust"
