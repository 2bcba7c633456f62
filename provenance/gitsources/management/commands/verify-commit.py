"""``manage.py verify-commit``: the stable, hyphenated name of :mod:`.verify_commit` (Django names commands by file)."""

from provenance.gitsources.management.commands.verify_commit import Command

__all__ = ["Command"]
