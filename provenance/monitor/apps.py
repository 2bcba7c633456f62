from django.apps import AppConfig


class MonitorConfig(AppConfig):
    name = "provenance.monitor"
    label = "monitor"
    verbose_name = "Monitoring and alerts"

    def ready(self) -> None:
        from provenance.monitor import drift  # noqa: F401  (connects to scan_finished and evidence_stored)
