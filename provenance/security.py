"""Response headers Django's SecurityMiddleware does not set: the Content-Security-Policy.

The policy (``PROVENANCE_CSP``) allows scripts, styles, images and connections from this origin only: no inline
script, no ``eval``, no framing (``frame-ancestors 'none'``), no plugins, forms posting only here. htmx works under
it: it is a static file, configured by a ``<meta name="htmx-config">`` tag (no eval, no injected style); the
CSRF header comes from the ``hx-headers`` attribute, which is data, not script. The API docs page uses
drf-spectacular's split view, which serves its start-up script as a file; Swagger UI sets inline styles, so that
one page (and only it) may apply inline styles (``PROVENANCE_CSP_DOCS``), never inline script.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse


class ContentSecurityPolicyMiddleware:
    """Add ``Content-Security-Policy`` to every response that does not set its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy = settings.PROVENANCE_CSP
        self.docs_policy = settings.PROVENANCE_CSP_DOCS
        self._docs_path: str | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = self.docs_policy if request.path == self.docs_path() else self.policy
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response

    def docs_path(self) -> str:
        if self._docs_path is None:
            try:
                self._docs_path = reverse("api-docs")
            except NoReverseMatch:
                self._docs_path = ""
        return self._docs_path
