"""``manage.py verify-image``: the stable, hyphenated name of :mod:`.verify_image` (Django names commands by file)."""

from provenance.artifacts.management.commands.verify_image import Command

__all__ = ["Command"]
