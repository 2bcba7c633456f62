"""Request budgets per scope (rates in settings, from PROVENANCE_API_*_RATE): ``anon`` per client address,
``user`` per user, ``token_write`` per API token for changes. Over budget: 429 ``throttled`` with Retry-After."""

from __future__ import annotations

from typing import Any

from rest_framework import throttling
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from provenance.accounts.models import ApiToken


class AnonThrottle(throttling.AnonRateThrottle):
    """Requests without valid credentials. DRF checks permissions before throttles, so the API's 401 answers
    are counted by the exception handler (``provenance.api.exceptions``) instead."""

    scope = "anon"


class UserThrottle(throttling.UserRateThrottle):
    scope = "user"


class TokenWriteThrottle(throttling.SimpleRateThrottle):
    """Changes made with an API token, per token: a leaked or runaway automation token is slowed down before it
    can make many changes (the user's session keeps its own budget)."""

    scope = "token_write"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.method in SAFE_METHODS or not isinstance(request.auth, ApiToken):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
