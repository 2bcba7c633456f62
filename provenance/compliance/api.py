"""Compliance in the API: exports, evidence packs, the report, VSAs and the signing key (all reads: viewer).

An export takes the artifact list's query parameters (same filter, same rows) and its format from ``?format=``
(``csv``, ``json``, ``pdf``) or the Accept header.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import renderers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from provenance.accounts.permissions import ViewerReads
from provenance.artifacts import services as artifact_services
from provenance.compliance import services, views
from provenance.core.errors import ProvenanceError


class _Passthrough(renderers.BaseRenderer):
    """Names a format for content negotiation; the view answers with its own (streamed) response."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return renderers.JSONRenderer().render(data)  # errors only


class CsvRenderer(_Passthrough):
    media_type, format = "text/csv", "csv"


class PdfRenderer(_Passthrough):
    media_type, format = "application/pdf", "pdf"


class ZipRenderer(_Passthrough):
    media_type, format = "application/zip", "zip"


class JsonLinesRenderer(_Passthrough):
    media_type, format = "application/x-ndjson", "jsonl"


class PemRenderer(_Passthrough):
    media_type, format = "application/x-pem-file", "pem"


class _FileView(APIView):
    """Answers a file; errors are JSON whatever format was asked for."""

    permission_classes = [ViewerReads]

    def handle_exception(self, exc: Exception) -> Response:
        self.request.accepted_renderer = renderers.JSONRenderer()
        self.request.accepted_media_type = "application/json"
        return super().handle_exception(exc)


def _bad(err: ProvenanceError) -> ValidationError:
    return ValidationError({"detail": err.message}, code=err.code)


class ExportView(_FileView):
    """Viewer: the artifacts the artifact list's filters select (plus ``top_level``, ``policy_name``) as CSV,
    JSON (schema: ``/compliance/export/schema.json``) or PDF; CSV and JSON stream."""

    permission_classes = [ViewerReads]
    renderer_classes = [renderers.JSONRenderer, CsvRenderer, PdfRenderer]

    @extend_schema(parameters=[services.ExportFilter], responses={
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR), (200, "application/json"): OpenApiTypes.OBJECT,
        (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY)})
    def get(self, request: Request) -> HttpResponse:
        params = {k: v for k, v in request.query_params.items() if k != "format"}
        try:
            return views.export_response(params, request.accepted_renderer.format)
        except services.ExportError as err:
            raise _bad(err) from err


class PackView(_FileView):
    """Viewer: the evidence pack (zip) of the artifacts the artifact list's filters select."""

    permission_classes = [ViewerReads]
    renderer_classes = [ZipRenderer, renderers.JSONRenderer]

    @extend_schema(parameters=[services.ExportFilter],
                   responses={(200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY)})
    def get(self, request: Request) -> HttpResponse:
        params = {k: v for k, v in request.query_params.items() if k != "format"}
        try:
            return views.pack_response(params, title="Provenance evidence pack", base=views.base_url(request))
        except ProvenanceError as err:
            raise _bad(err) from err


class ReportView(APIView):
    """Viewer: the compliance report of a scope (``source`` id or ``policy`` name) and period (``since``,
    ``until``, ISO 8601) as JSON."""

    permission_classes = [ViewerReads]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        form = services.ReportForm(request.query_params)
        if not form.is_valid():
            raise ValidationError(form.errors)
        return Response(services.build_report(form.cleaned_data).as_json())


class ArtifactVsaView(_FileView):
    """Viewer: the artifact's signed VSAs (JSON Lines, one DSSE envelope per policy)."""

    permission_classes = [ViewerReads]
    renderer_classes = [JsonLinesRenderer, renderers.JSONRenderer]

    @extend_schema(responses={(200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR)})
    def get(self, request: Request, digest: str) -> HttpResponse:
        artifact = artifact_services.find_artifact(digest)
        try:
            envelopes = services.artifact_vsas(artifact, base_url=views.base_url(request))
        except ProvenanceError as err:
            raise _bad(err) from err
        return HttpResponse(b"".join(e + b"\n" for _, e in envelopes), content_type="application/x-ndjson")


class SigningKeyView(_FileView):
    """Viewer: the dashboard's public signing key (PEM), the one its VSAs verify with."""

    permission_classes = [ViewerReads]
    renderer_classes = [PemRenderer, renderers.JSONRenderer]

    @extend_schema(responses={(200, "application/x-pem-file"): OpenApiResponse(OpenApiTypes.STR)})
    def get(self, request: Request) -> HttpResponse:
        try:
            pem = services.signing_public_pem()
        except ProvenanceError as err:
            raise _bad(err) from err
        return HttpResponse(pem, content_type="application/x-pem-file")
