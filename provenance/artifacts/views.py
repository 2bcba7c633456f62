from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.db.models import Count
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from rest_framework import exceptions
from rest_framework.request import Request

from provenance.accounts.decorators import role_required
from provenance.accounts.roles import Role
from provenance.api.filters import ArtifactFilter
from provenance.api.pagination import KeysetPagination
from provenance.artifacts import charts, presentation, services
from provenance.artifacts.models import Artifact, TrustStatus
from provenance.policies.models import Policy, Status
from provenance.sources.models import Source

# The fleet page's sort orders (the API's ``ordering`` values); the first is the default.
ORDERINGS = (("repository", "repository"), ("-checked_at", "newest checked"), ("checked_at", "oldest checked"),
             ("status", "signature status"), ("digest", "digest"))
PAGE_SIZE = 100
COUNT_LIMIT = 10_000  # a filtered total is counted exactly up to here ("more than 10,000" beyond)
# What the search form offers as examples (placeholders, and the predicate types it suggests).
EXAMPLES = {
    "signer": "https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main",
    "issuer": "https://token.actions.githubusercontent.com",
    "predicate_types": ("https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2",
                        "https://spdx.dev/Document", "https://cyclonedx.org/bom",
                        "https://cosign.sigstore.dev/attestation/vuln/v1"),
}


@role_required(Role.VIEWER)
def dashboard(request: HttpRequest) -> HttpResponse:
    """The fleet: top-level artifacts filtered with the API's filters (same parameter names), keyset pages with
    a total; the table alone for htmx (live filtering), the whole page otherwise (a plain GET form)."""
    counts = dict(Artifact.objects.filter(parent__isnull=True).values_list("status").annotate(n=Count("pk"))
                  .order_by())
    listing = fleet_page(request, page_size=PAGE_SIZE, default_ordering=ORDERINGS[0][0],
                         unfiltered_total=sum(counts.values()))
    context = {
        "listing": listing,
        "artifacts": listing.rows,
        "query": request.GET,
        "counts": [(s, label, counts.get(s, 0)) for s, label in TrustStatus.choices],
        "status": request.GET.get("status", ""),
        "statuses": TrustStatus.choices,
        "verdicts": Status.choices,
        "orderings": ORDERINGS,
        "examples": EXAMPLES,
        "has_policies": Policy.objects.filter(is_enabled=True).exists(),
        "sources": Source.objects.order_by("name")[:50],
        "source_choices": Source.objects.order_by("name").values_list("pk", "name")[:500],
    }
    template = "artifacts/dashboard.html#artifact-table" if request.htmx else "artifacts/dashboard.html"
    return render(request, template, context)


@role_required(Role.VIEWER)
def verdict_chart(request: HttpRequest) -> HttpResponse:
    """Verdicts per source as a picture: the fleet page loads it after itself (htmx), or links to it."""
    context = {"verdict_chart": charts.verdict_chart()}
    template = "artifacts/charts.html#verdict-chart" if request.htmx else "artifacts/charts.html"
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


# --------------------------------------------------------------------------------------------------------------
# The fleet page: the API's filters and keyset pages, for a page request


@dataclass(frozen=True)
class FleetPage:
    rows: list[Artifact]
    total: int
    errors: dict[str, list[str]]
    next_query: str | None
    previous_query: str | None
    ordering: str
    filter_query: str = ""  # the filters alone, urlencoded (for exports of the same list)
    count_limit: int | None = None  # the bound the total was counted to (None: exact)

    @property
    def is_total_bounded(self) -> bool:
        return self.count_limit is not None and self.total > self.count_limit

    @property
    def is_filtered(self) -> bool:
        return bool(self.filter_query)

    @property
    def filter_words(self) -> str:
        """The filters as ``name: value`` pairs, to say what an export of this list holds."""
        return " · ".join(f"{k.replace('_', ' ')}: {v}" for k, v in QueryDict(self.filter_query).items())


def fleet_page(request: HttpRequest, *, page_size: int, default_ordering: str, unfiltered_total: int) -> FleetPage:
    """One page of the fleet's top-level artifacts, filtered exactly as ``GET /api/v1/artifacts/`` filters
    (:class:`~provenance.api.filters.ArtifactFilter`, the same parameter names), with the total of the filtered
    list (exact up to ``COUNT_LIMIT``) and the query strings of the next and previous keyset pages. A bad
    parameter gives ``errors`` and no rows; a constant number of queries whatever the fleet's size."""
    params = request.GET.copy()
    if not params.get("ordering"):
        params["ordering"] = default_ordering
    params = _without_empty(params)
    base = (Artifact.objects.filter(parent__isnull=True).select_related("source", "trust")
            .prefetch_related("tags", "children"))
    filterset = ArtifactFilter(params, queryset=base, request=request)
    ordering = params.get("ordering", default_ordering)
    filters = params.copy()
    for name in ("ordering", "cursor", "limit"):
        filters.pop(name, None)
    filter_query = filters.urlencode()
    if not filterset.is_valid():
        errors = {k: [str(e) for e in v] for k, v in filterset.errors.items()}
        return FleetPage([], 0, errors, None, None, ordering, filter_query)
    filtered = filterset.qs
    bound: int | None = None
    if filter_query:  # counted up to a bound: an EXISTS filter matching the whole fleet costs no more than that
        bound = COUNT_LIMIT
        total = filtered.order_by().values("pk")[: bound + 1].count()
    else:
        total = unfiltered_total
    pager = KeysetPagination()
    pager.page_size = page_size
    try:
        rows = pager.paginate_queryset(filtered, Request(request))
    except exceptions.ParseError as err:
        return FleetPage([], total, {"cursor": [str(err.detail)]}, None, None, ordering, filter_query)
    return FleetPage(rows, total, {}, _query_of(pager.get_next_link()), _query_of(pager.get_previous_link()),
                     ordering, filter_query, bound)


def _without_empty(params: QueryDict) -> QueryDict:
    """The parameters a plain form submits, without its empty fields (an empty choice is no filter)."""
    kept = QueryDict(mutable=True)
    for key, values in params.lists():
        for value in values:
            if value.strip():
                kept.appendlist(key, value.strip())
    return kept


def _query_of(link: str | None) -> str | None:
    """``?query`` of an absolute link (pages link relatively: the same under any host and proxy)."""
    if link is None:
        return None
    query = urlsplit(link).query
    return f"?{query}" if query else "?"
