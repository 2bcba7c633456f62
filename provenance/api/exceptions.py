"""The one place API errors become responses: ``{"error": "<stable_code>", "detail": "..."}``."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from provenance.core.errors import AccessError, NotFoundError, ProvenanceError, TransientError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ProvenanceError):
        code = status.HTTP_400_BAD_REQUEST
        if isinstance(exc, TransientError):
            code = status.HTTP_503_SERVICE_UNAVAILABLE
        elif isinstance(exc, NotFoundError):
            code = status.HTTP_404_NOT_FOUND
        elif isinstance(exc, AccessError):
            code = status.HTTP_502_BAD_GATEWAY
        return Response({"error": exc.code, "detail": exc.message}, status=code)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        exc = _throttle_anonymous(exc, context)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        detail = response.data["detail"]
        response.data = {"error": getattr(detail, "code", "error"), "detail": str(detail)}
    return response


def _throttle_anonymous(exc: exceptions.APIException, context: dict[str, Any]) -> exceptions.APIException:
    """Count a request refused for want of (valid) credentials against the client address's ``anon`` budget:
    DRF checks permissions before throttles, so a 401 would otherwise never be counted."""
    from provenance.api.throttling import AnonThrottle

    request, view = context.get("request"), context.get("view")
    if request is None:
        return exc
    throttle = AnonThrottle()
    if throttle.allow_request(request, view):
        return exc
    return exceptions.Throttled(throttle.wait())
