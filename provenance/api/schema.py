"""The OpenAPI schema: generated from the views, plus the error answers every operation can give."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

from provenance.api.serializers import ErrorSerializer

_ERRORS = {
    "401": "Not authenticated (no credentials, or an unknown, expired or revoked token).",
    "403": "Authenticated, but the role or the token's scope does not allow this.",
    "429": "Too many requests (`throttled`); retry after the seconds in `Retry-After`.",
}


class ApiSchema(AutoSchema):
    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        errors = dict(_ERRORS)
        if self.method != "GET" or self._is_a_detail():
            errors["404"] = "Not found (`not_found`)."
        for code, description in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=description), code, direction=direction)
        return responses

    def _is_a_detail(self) -> bool:
        return "{" in self.path


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "provenance.accounts.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "prv_…",
                "description": "An API token from the Tokens page or `POST /api/v1/tokens/`."}
