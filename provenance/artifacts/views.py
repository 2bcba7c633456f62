from __future__ import annotations

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

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
def artifact_place(request: HttpRequest, pk: int) -> HttpResponse:
    """One place (registry, repository, digest): its verdict, evidence and graph; the digest's other places."""
    artifact = services.find_place(pk)
    page = presentation.describe_artifact(artifact)
    context = {
        "artifact": artifact,
        "place_name": services.place_name(artifact),
        "page": page,
        "signatures": page.of_kind("signature"),
        "attestations": page.of_kind("attestation"),
        "sboms": page.of_kind("sbom"),
        "children": artifact.children.all(),
        "elsewhere": services.other_places(artifact),
    }
    return render(request, "artifacts/detail.html", context)


@role_required(Role.VIEWER)
def artifact_digest(request: HttpRequest, digest: str) -> HttpResponse:
    """Every place a digest is found, each with its own verdict; straight to the place when there is one."""
    places = services.find_places(digest)
    if len(places) == 1:
        return redirect("artifact-place", pk=places[0].pk)
    context = {"digest": places[0].digest, "places": places, "limit": services.MAX_PLACES}
    return render(request, "artifacts/digest.html", context)
