from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from provenance.accounts.decorators import role_required
from provenance.accounts.roles import Role
from provenance.core.errors import ProvenanceError
from provenance.core.verify import CommitStatus
from provenance.gitsources import services
from provenance.gitsources.forms import GitSourceForm
from provenance.gitsources.models import Commit, GitSource


@role_required(Role.VIEWER)
def git_source_list(request: HttpRequest) -> HttpResponse:
    return render(request, "gitsources/list.html", {"sources": GitSource.objects.select_related("trust_root")})


@role_required(Role.OPERATOR)
def git_source_new(request: HttpRequest) -> HttpResponse:
    form = GitSourceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            source = services.create_git_source(**form.cleaned_data)
        except ProvenanceError as err:
            form.add_error("location", err.message)
        else:
            services.start_fetch(source)
            return redirect("git-source-detail", pk=source.pk)
    return render(request, "gitsources/new.html", {"form": form})


@role_required(Role.VIEWER)
def git_source_detail(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(GitSource.objects.select_related("trust_root"), pk=pk)
    fetch = source.fetches.first()
    commits = source.commits.all()
    status = request.GET.get("status", "")
    signer = request.GET.get("signer", "").strip()
    ref = request.GET.get("ref", "").strip()
    if status:
        commits = commits.filter(status=status)
    if signer:
        commits = commits.filter(signer_identity__icontains=signer)
    if ref:
        commits = commits.filter(refs__contains=[ref])
    page = Paginator(commits.defer("raw", "checks"), 50).get_page(request.GET.get("page"))
    context = {"source": source, "fetch": fetch, "page": page, "refs": source.refs.all(),
               "statuses": [s.value for s in CommitStatus], "status": status, "signer": signer, "ref": ref}
    if request.htmx and request.GET.get("progress"):
        response = render(request, "gitsources/detail.html#fetch-progress", context)
        if fetch is None or fetch.is_finished:
            response.status_code = 286  # htmx: stop polling
        return response
    return render(request, "gitsources/detail.html", context)


@role_required(Role.OPERATOR)
@require_POST
def git_source_fetch(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(GitSource, pk=pk)
    services.start_fetch(source)
    return redirect("git-source-detail", pk=source.pk)


@role_required(Role.VIEWER)
def git_commit_detail(request: HttpRequest, pk: int) -> HttpResponse:
    commit = get_object_or_404(Commit.objects.select_related("source"), pk=pk)
    return render(request, "gitsources/commit.html", {"commit": commit, "source": commit.source})
