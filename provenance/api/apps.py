from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "provenance.api"
    label = "api"
