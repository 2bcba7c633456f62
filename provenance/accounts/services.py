"""Accounts: roles given to users, API tokens (created, found, revoked) and the audit trail (recorded, listed)."""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import hashlib
import hmac
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from provenance.accounts.models import ApiToken, AuditEvent
from provenance.accounts.roles import Role

TOKEN_PREFIX = "prv_"  # noqa: S105 - a marker, not a secret
MAX_TOKEN_DAYS = 366
_PREFIX_CHARS = 10


# -- roles ------------------------------------------------------------------------------------------------------


def ensure_role_groups() -> dict[Role, Group]:
    """The three groups, each holding its role's permission and those below it (idempotent)."""
    groups = {}
    for role in Role:
        group, _ = Group.objects.get_or_create(name=role.value)
        codenames = [r.permission.split(".", 1)[1] for r in role.includes]
        group.permissions.set(Permission.objects.filter(content_type__app_label="accounts", codename__in=codenames))
        groups[role] = group
    return groups


@transaction.atomic
def set_role(user: Any, role: Role | None) -> None:
    """Give ``user`` exactly ``role`` (None: no role); the group changes are audited (accounts.signals)."""
    groups = ensure_role_groups()
    others = [g for r, g in groups.items() if r != role]
    if user.groups.filter(pk__in=[g.pk for g in others]).exists():
        user.groups.remove(*others)
    if role is not None:
        user.groups.add(groups[role])


# -- API tokens -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewToken:
    token: ApiToken
    secret: str  # the whole token: shown once, never stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def create_token(user: Any, *, name: str, scope: str = ApiToken.Scope.READ, days: int = 90) -> NewToken:
    """A new token for ``user``, valid for ``days`` (1..366). The returned secret is shown once."""
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise ValueError(f"a token is valid for 1 to {MAX_TOKEN_DAYS} days")
    if scope not in ApiToken.Scope.values:
        raise ValueError(f"the scope is one of {', '.join(ApiToken.Scope.values)}")
    prefix = secrets.token_hex(_PREFIX_CHARS // 2)
    secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(user=user, name=name[:100], prefix=prefix, digest=_digest(secret), scope=scope,
                                    expires_at=timezone.now() + timedelta(days=days))
    record("token.create", token, {"user": user.get_username(), "scope": scope, "expires_at": token.expires_at})
    return NewToken(token, secret)


def find_token(secret: str) -> ApiToken | None:
    """The live token ``secret`` names (not revoked, not expired), its last use updated; None otherwise."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    prefix = secret[len(TOKEN_PREFIX):].split("_", 1)[0]
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.digest, _digest(secret)):
        return None
    now = timezone.now()
    if token.revoked_at is not None or token.expires_at <= now or not token.user.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):  # one write a minute at most
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def revoke_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
        token.refresh_from_db()
        record("token.revoke", token, {"user": token.user.get_username()})


# -- the audit trail --------------------------------------------------------------------------------------------

_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("provenance_request", default=None)
def _process_actor() -> str:
    """Who acts when no request does: a management command (and the account running it), a worker, the scheduler."""
    argv = [os.path.basename(a) for a in sys.argv[:3]]
    if argv and argv[0] in ("manage.py", "provenance") and len(argv) > 1:
        return f"{argv[0]} {argv[1]} ({getpass.getuser()})"[:150]
    if argv and argv[0] == "celery":
        return "worker"
    return "system"


_PROCESS_ACTOR = _process_actor()
_actor: contextvars.ContextVar[str] = contextvars.ContextVar("provenance_actor", default=_PROCESS_ACTOR)


@contextlib.contextmanager
def acting(*, request: HttpRequest | None = None, name: str | None = None) -> Iterator[None]:
    """Within this block, changes are recorded as made by ``request``'s user, or by ``name`` (a command)."""
    tokens = (_request.set(request), _actor.set(name or _actor.get()))
    try:
        yield
    finally:
        _request.reset(tokens[0])
        _actor.reset(tokens[1])


def record(action: str, obj: Any, detail: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event: ``action`` (``thing.verb``) done to ``obj`` by whoever is acting now."""
    request = _request.get()
    user = getattr(request, "user", None) if request is not None else None
    authenticated = user is not None and user.is_authenticated
    meta = obj._meta if hasattr(obj, "_meta") else None
    return AuditEvent.objects.create(
        actor=user if authenticated else None,
        actor_name=(user.get_username() if authenticated else _actor.get())[:150],
        action=action[:60],
        object_type=(meta.model_name if meta else type(obj).__name__.lower())[:60],
        object_id=str(getattr(obj, "pk", "") or "")[:100],
        object_repr=str(obj)[:300],
        detail=_jsonable(detail or {}),
        ip=_client_ip(request),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    address = request.META.get("REMOTE_ADDR") or None
    return address if address and len(address) <= 45 else None
