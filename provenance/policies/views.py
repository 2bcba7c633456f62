from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from provenance.accounts.decorators import role_required
from provenance.accounts.roles import Role
from provenance.artifacts import charts
from provenance.artifacts import services as artifact_services
from provenance.core.policy import PolicyError, dump_policy
from provenance.policies import services
from provenance.policies.forms import EXAMPLE, PolicyForm
from provenance.policies.models import Policy


@role_required(Role.VIEWER)
def policy_list(request: HttpRequest) -> HttpResponse:
    context = {"policies": Policy.objects.all(), "jobs": services.recent_jobs(5)}
    return render(request, "policies/list.html", context)


@role_required(Role.OPERATOR)
def policy_new(request: HttpRequest) -> HttpResponse:
    return _edit(request, None)


@role_required(Role.VIEWER, write=Role.OPERATOR)
def policy_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _edit(request, get_object_or_404(Policy, pk=pk))


def _edit(request: HttpRequest, policy: Policy | None) -> HttpResponse:
    initial = {"source": policy.source if policy else EXAMPLE, "is_enabled": policy.is_enabled if policy else True}
    form = PolicyForm(request.POST or None, initial=initial)
    report = None
    if request.method == "POST" and form.is_valid():
        source, enabled = form.cleaned_data["source"], form.cleaned_data["is_enabled"]
        if request.POST.get("action") == "save":
            try:
                saved = services.save_policy(source, policy=policy, enabled=enabled)
            except PolicyError as err:
                form.add_error("source", err.message)
            else:
                return redirect("policy-detail", pk=saved.pk)
        else:
            report = services.dry_run(source, replacing=policy, enabled=enabled)
    context = {"form": form, "policy": policy, "report": report, "jobs": services.recent_jobs(3)}
    if request.htmx and request.method == "POST":
        return render(request, "policies/edit.html#dry-run", context)
    return render(request, "policies/edit.html", context)


@role_required(Role.VIEWER)
def policy_export(request: HttpRequest, pk: int) -> HttpResponse:
    """The policy as imported (comments kept), or normalized with ``?normalized=1``."""
    policy = get_object_or_404(Policy, pk=pk)
    text = dump_policy(services.parse(policy.source)) if request.GET.get("normalized") else policy.source
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{policy.name}.yaml"'
    return response


@role_required(Role.OPERATOR)
@require_POST
def policy_delete(request: HttpRequest, pk: int) -> HttpResponse:
    services.delete_policy(get_object_or_404(Policy, pk=pk))
    return redirect("policy-list")


@role_required(Role.VIEWER)
def job_status(request: HttpRequest) -> HttpResponse:
    jobs = services.recent_jobs(10)
    context = {"jobs": jobs}
    if request.htmx:
        response = render(request, "policies/_jobs.html#reevaluations", context)
        if all(job.is_finished for job in jobs):
            response.status_code = 286  # htmx: stop polling
        return response
    return render(request, "policies/jobs.html", context)


@role_required(Role.VIEWER)
def coverage(request: HttpRequest) -> HttpResponse:
    rows = services.coverage()
    context = {"coverage": rows, "unknown": services.unknown_signers(limit=30),
               "coverage_chart": charts.coverage_chart(rows), "verdict_chart": charts.verdict_chart()}
    return render(request, "policies/coverage.html", context)


@role_required(Role.VIEWER)
def place_trust(request: HttpRequest, pk: int) -> HttpResponse:
    artifact = artifact_services.find_place(pk)
    context = {"artifact": artifact, "timeline_limit": 200}
    if request.htmx:
        return render(request, "policies/_trust_panel.html", context)
    return render(request, "policies/trust.html", context)


@role_required(Role.VIEWER)
def artifact_trust(request: HttpRequest, digest: str) -> HttpResponse:
    """The old address by digest: the place's verdict history when the digest sits in one place, else the list
    of its places (each has its own verdict)."""
    places = artifact_services.find_places(digest)
    if len(places) == 1:
        return redirect("artifact-place-trust", pk=places[0].pk)
    return redirect("artifact-detail", digest=places[0].digest)
