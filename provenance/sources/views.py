from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from provenance.accounts.decorators import role_required
from provenance.accounts.roles import Role
from provenance.core.errors import ProvenanceError
from provenance.sources import services
from provenance.sources.forms import SourceForm
from provenance.sources.models import Source


@role_required(Role.OPERATOR)
def source_new(request: HttpRequest) -> HttpResponse:
    form = SourceForm(request.POST or None, initial={"kind": Source.Kind.IMAGE})
    if request.method == "POST" and form.is_valid():
        try:
            source = services.create_source(**form.cleaned_data)
        except ProvenanceError as err:
            form.add_error("location", err.message)
        else:
            services.start_scan(source)
            return redirect("source-detail", pk=source.pk)
    return render(request, "sources/new.html", {"form": form})


@role_required(Role.VIEWER)
def source_detail(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(Source.objects.select_related("trust_root"), pk=pk)
    scan = source.scans.first()
    context = {
        "source": source,
        "scan": scan,
        "artifacts": source.artifacts.filter(parent__isnull=True).prefetch_related("tags"),
        "tag_events": source.tag_events.all()[:50],
    }
    if request.htmx:
        response = render(request, "sources/detail.html#scan-progress", context)
        if scan is None or scan.is_finished:
            response.status_code = 286  # htmx: stop polling
        return response
    return render(request, "sources/detail.html", context)


@role_required(Role.OPERATOR)
@require_POST
def source_scan(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(Source, pk=pk)
    services.start_scan(source)
    return redirect("source-detail", pk=source.pk)
