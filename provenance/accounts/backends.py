"""Failed logins are rate limited: the login page, the admin's and the API's password (Basic) authentication all
pass through this backend. After ``PROVENANCE_LOGIN_ATTEMPTS`` failures for one username or one client address
within ``PROVENANCE_LOGIN_WINDOW`` seconds, further attempts are refused until the window has passed — even with
the right password, so that guessing gains nothing."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest


def _keys(request: HttpRequest | None, username: str | None) -> list[str]:
    keys = [f"login-fail:user:{(username or '').lower()[:150]}"]
    address = request.META.get("REMOTE_ADDR") if request is not None else None
    if address:
        keys.append(f"login-fail:ip:{address}")
    return keys


def is_locked_out(request: HttpRequest | None, username: str | None) -> bool:
    limit = settings.PROVENANCE_LOGIN_ATTEMPTS
    return any((cache.get(key) or 0) >= limit for key in _keys(request, username))


class RateLimitedModelBackend(ModelBackend):
    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> Any:
        if is_locked_out(request, username):
            raise PermissionDenied("too many failed logins; try again later")  # stops every backend
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            for key in _keys(request, username):
                cache.add(key, 0, timeout=settings.PROVENANCE_LOGIN_WINDOW)
                try:
                    cache.incr(key)
                except ValueError:  # expired between add and incr
                    cache.set(key, 1, timeout=settings.PROVENANCE_LOGIN_WINDOW)
        return user
