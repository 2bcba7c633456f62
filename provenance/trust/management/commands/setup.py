from django.core.management.base import BaseCommand

from provenance.trust import services


class Command(BaseCommand):
    help = "Store the public-good and staging Sigstore trust roots shipped with sigstore (idempotent)."

    def handle(self, *args: object, **options: object) -> None:
        services.ensure_builtin_roots()
        self.stdout.write("built-in trust roots are in place")
