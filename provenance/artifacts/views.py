from __future__ import annotations

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from provenance.accounts.decorators import role_required
from provenance.accounts.roles import Role
from provenance.artifacts import presentation, services
from provenance.artifacts.models import Artifact, TrustStatus
from provenance.policies.models import Policy
from provenance.sources.models import Source


@role_required(Role.VIEWER)
def dashboard(request: HttpRequest) -> HttpResponse:
    artifacts = (
        Artifact.objects.filter(parent__isnull=True)
        .select_related("source", "trust")
        .prefetch_related("tags", "children")
        .order_by("repository", "digest")
    )
    status = request.GET.get("status", "")
    if status in TrustStatus.values:
        artifacts = artifacts.filter(status=status)
    counts = dict(Artifact.objects.filter(parent__isnull=True).values_list("status").annotate(n=Count("pk")))
    context = {
        "artifacts": artifacts[:500],
        "counts": [(s, label, counts.get(s, 0)) for s, label in TrustStatus.choices],
        "status": status,
        "has_policies": Policy.objects.filter(is_enabled=True).exists(),
        "sources": Source.objects.prefetch_related("scans")[:50],
    }
    template = "artifacts/dashboard.html#artifact-table" if request.htmx else "artifacts/dashboard.html"
    return render(request, template, context)


@role_required(Role.VIEWER)
def artifact_detail(request: HttpRequest, digest: str) -> HttpResponse:
    artifact = services.find_artifact(digest)
    page = presentation.describe_artifact(artifact)
    context = {
        "artifact": artifact,
        "page": page,
        "signatures": page.of_kind("signature"),
        "attestations": page.of_kind("attestation"),
        "sboms": page.of_kind("sbom"),
        "children": artifact.children.all(),
    }
    return render(request, "artifacts/detail.html", context)
