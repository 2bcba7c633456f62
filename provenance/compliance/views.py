"""Compliance pages: exports (CSV, JSON, PDF), the report, evidence packs, VSAs and the signing key.

Exports stream: CSV and JSON are written batch by batch while the response is sent (100,000 rows in seconds
with flat memory, see bench/export.py), so no background job is needed; a PDF is built in memory and holds at
most ``PDF_MAX_ROWS`` rows.
"""

from __future__ import annotations

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from provenance.accounts.decorators import role_required
from provenance.accounts.roles import Role
from provenance.artifacts import services as artifact_services
from provenance.compliance import services
from provenance.core import exports
from provenance.core.errors import ProvenanceError
from provenance.policies.models import Policy
from provenance.sources.models import Source

FORMATS = ("csv", "json", "pdf")


def base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


def export_response(params: dict[str, str], fmt: str) -> HttpResponse:
    """The export of the artifacts ``params`` select, as ``fmt``; raises :class:`services.ExportError`."""
    if fmt not in FORMATS:
        raise services.ExportError(f"format must be one of {', '.join(FORMATS)}", code="export_invalid")
    queryset, scope = services.select_artifacts(params)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    name = f"provenance-export-{stamp}.{fmt}"
    response: HttpResponse | StreamingHttpResponse
    if fmt == "csv":
        response = StreamingHttpResponse(services.export_csv(queryset), content_type="text/csv; charset=utf-8")
    elif fmt == "json":
        response = StreamingHttpResponse(services.export_json(queryset, scope), content_type="application/json")
    else:
        response = HttpResponse(services.export_pdf(queryset, scope), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response  # type: ignore[return-value]


def pack_response(params: dict[str, str], *, title: str, base: str) -> FileResponse:
    queryset, _ = services.select_artifacts(params)
    handle = services.pack_file()
    services.evidence_pack(queryset, title=title, base_url=base, handle=handle)
    handle.seek(0)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    return FileResponse(handle, as_attachment=True, filename=f"provenance-evidence-{stamp}.zip",
                        content_type="application/zip")


def _error(request: HttpRequest, err: ProvenanceError) -> HttpResponse:
    return render(request, "compliance/error.html", {"error": err}, status=400)


@role_required(Role.VIEWER)
def export(request: HttpRequest) -> HttpResponse:
    """Viewer: the artifacts the query parameters select (the API's artifact filters, ``top_level``,
    ``policy_name``) as ``?format=csv`` (default), ``json`` or ``pdf``."""
    try:
        return export_response(request.GET.dict(), request.GET.get("format", "csv"))
    except services.ExportError as err:
        return _error(request, err)


@role_required(Role.VIEWER)
def pack(request: HttpRequest) -> HttpResponse:
    """Viewer: the evidence pack (zip) of the artifacts the query parameters select."""
    params = request.GET.dict()
    selection = ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "format") or "the whole fleet"
    try:
        return pack_response(params, title=f"Provenance evidence pack: {selection}", base=base_url(request))
    except ProvenanceError as err:
        return _error(request, err)


@role_required(Role.VIEWER)
def export_schema(request: HttpRequest) -> JsonResponse:
    """Viewer: the JSON Schema the JSON export validates against."""
    return JsonResponse(exports.EXPORT_SCHEMA, json_dumps_params={"indent": 2})


@role_required(Role.VIEWER)
def report(request: HttpRequest) -> HttpResponse:
    """Viewer: the compliance report of a scope (a source, a policy, or everything) and period; ``?format=pdf``."""
    form = services.ReportForm(request.GET or None)
    if request.GET and not form.is_valid():
        return render(request, "compliance/report.html", _report_context(form, None), status=400)
    data = form.cleaned_data if request.GET else {}
    result = services.build_report(data)
    if request.GET.get("format") == "pdf":
        response = HttpResponse(services.report_pdf(result), content_type="application/pdf")
        response["Content-Disposition"] = 'attachment; filename="provenance-compliance-report.pdf"'
        return response
    return render(request, "compliance/report.html", _report_context(form, result))


def _report_context(form: services.ReportForm, result: services.Report | None) -> dict[str, object]:
    # The report needs no signing key; a deployment without PROVENANCE_FERNET_KEY is told why VSAs are off.
    try:
        key, key_error = services.keyring().current(), ""
    except ProvenanceError as err:
        key, key_error = None, err.message
    return {"form": form, "report": result, "sources": Source.objects.only("id", "name")[:500],
            "policies": Policy.objects.only("id", "name")[:500], "signing_key": key, "signing_key_error": key_error,
            "bars": [(label, n, t, round(100 * n / t) if t else 0) for label, n, t in result.coverage]
            if result else []}


@role_required(Role.VIEWER)
def signing_key(request: HttpRequest) -> HttpResponse:
    """Viewer: the dashboard's public signing key (PEM; ``?version=N`` for an older one)."""
    version = request.GET.get("version", "")
    try:
        pem = services.signing_public_pem(int(version) if version.isdigit() else None)
    except ProvenanceError as err:
        return _error(request, err)
    response = HttpResponse(pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="provenance-signing.pub"'
    return response


@role_required(Role.ADMIN)
@require_POST
def signing_key_rotate(request: HttpRequest) -> HttpResponse:
    """Admin: a new signing key signs from now on; the old ones stay published."""
    services.rotate_signing_key()
    return redirect("compliance")


@role_required(Role.VIEWER)
def artifact_vsa(request: HttpRequest, digest: str) -> HttpResponse:
    """Viewer: the artifact's signed VSAs, one DSSE envelope per line (JSON Lines), one per policy."""
    try:
        artifact = artifact_services.find_artifact(digest, place=request.GET.get("place"))
        envelopes = services.artifact_vsas(artifact, base_url=base_url(request))
    except ProvenanceError as err:
        return _error(request, err)
    body = b"".join(envelope + b"\n" for _, envelope in envelopes)
    response = HttpResponse(body, content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="{digest.replace(":", "-")}.vsa.intoto.jsonl"'
    return response


@role_required(Role.VIEWER, write=Role.OPERATOR)
@require_POST
def artifact_vsa_push(request: HttpRequest, digest: str) -> HttpResponse:
    """Operator: attach the artifact's VSAs to the image in its registry (cosign's ``.att``)."""
    try:
        artifact = artifact_services.find_artifact(digest, place=request.GET.get("place"))
        pushed = services.push_vsas(artifact, base_url=base_url(request))
    except ProvenanceError as err:
        return _error(request, err)
    if request.htmx:
        return HttpResponse(f"Pushed {len(pushed)} verification summaries.")
    return redirect("artifact-place", pk=artifact.pk)
