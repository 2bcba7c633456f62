"""API authentication by token: ``Authorization: Bearer prv_…``. A read-scoped token allows safe methods only."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from provenance.accounts import services
from provenance.accounts.models import ApiToken


class TokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("the Authorization header is `Bearer <token>`", code="token_invalid")
        token = services.find_token(header[1].decode("ascii", "replace"))
        if token is None:
            raise exceptions.AuthenticationFailed("the token is unknown, expired or revoked", code="token_invalid")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="provenance"'
