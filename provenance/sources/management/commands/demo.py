from django.conf import settings
from django.core.management.base import BaseCommand

from provenance.sources.demo import load_demo


class Command(BaseCommand):
    help = "Load the demo fleet (signed by the private test Sigstore), create the demo admin and start a scan."

    def handle(self, *args: object, **options: object) -> None:
        demo = load_demo(settings.DATA_DIR)
        self.stdout.write("Demo fleet (an OCI layout signed by the test Sigstore):")
        for image in demo.images:
            self.stdout.write(f"  {image.tag:<18} expect {image.expected_status:<9} {image.description}")
        self.stdout.write(f"Scan #{demo.scan.pk} of source '{demo.source.name}' queued for the worker.")
        self.stdout.write(self.style.SUCCESS(
            f"Demo admin: username {demo.username}  password {demo.password}  (log in at http://127.0.0.1:8000/)"
        ))
