from django.apps import AppConfig


class GitSourcesConfig(AppConfig):
    name = "provenance.gitsources"
    label = "gitsources"
    verbose_name = "Git repositories"
