from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "provenance.accounts"
    label = "accounts"
    verbose_name = "Accounts, roles, API tokens and the audit trail"

    def ready(self) -> None:
        from provenance.accounts import signals

        post_migrate.connect(_role_groups, sender=self)
        signals.connect()


def _role_groups(sender: Any, **kwargs: Any) -> None:
    # After migrate has created the role permissions (post_migrate runs in app order; auth's comes first).
    from provenance.accounts.services import ensure_role_groups

    ensure_role_groups()
