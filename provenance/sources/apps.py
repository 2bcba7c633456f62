from django.apps import AppConfig


class SourcesConfig(AppConfig):
    name = "provenance.sources"
    label = "sources"
