"""Who may do what: three roles, each a Django group holding one permission, and the checks views declare.

* **viewer** reads everything (fleet, artifacts, policies, trust, the audit trail);
* **operator** also changes sources, credentials, scans and policies;
* **admin** also changes trust roots, public keys, users' roles and other users' API tokens.

Each role includes the ones before it. Superusers hold every role. A user in no group may log in and sees nothing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def permission(self) -> str:
        return f"accounts.{_CODENAMES[self]}"

    @property
    def includes(self) -> tuple[Role, ...]:
        """This role and every role below it."""
        order = list(Role)
        return tuple(order[: order.index(self) + 1])


_CODENAMES = {Role.VIEWER: "role_viewer", Role.OPERATOR: "role_operator", Role.ADMIN: "role_admin"}
PERMISSIONS = [(code, f"Role: {role.value}") for role, code in _CODENAMES.items()]


def has_role(user: Any, role: Role) -> bool:
    """Whether an authenticated, active ``user`` holds ``role`` (or a higher one)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or user.has_perm(role.permission))


def role_of(user: Any) -> Role | None:
    """The highest role ``user`` holds, or None."""
    for role in reversed(Role):
        if has_role(user, role):
            return role
    return None
