from django.apps import AppConfig


class ArtifactsConfig(AppConfig):
    name = "provenance.artifacts"
    label = "artifacts"
