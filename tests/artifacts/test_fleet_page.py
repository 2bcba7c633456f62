"""The fleet page filters as the API does (same parameters), pages by keyset with a visible total, live with htmx
and plain without it; and its query count does not grow with the fleet."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from provenance.artifacts.models import Artifact, Evidence, Tag
from provenance.policies.models import ArtifactTrust
from provenance.sources.models import Source
from tests.factories import UserFactory, make_sigstore, trust_root_for

pytestmark = pytest.mark.django_db

SIGNER = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
NOW = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def user_client(client):
    client.force_login(UserFactory())
    return client


def make_source(name: str, location: str) -> Source:
    root = trust_root_for(make_sigstore())
    return Source.objects.create(name=name, kind=Source.Kind.IMAGE, location=location, trust_root=root)


def fill(source: Source, n: int, *, repository: str = "acme/bulk", start: int = 0) -> list[Artifact]:
    """``n`` top-level artifacts with a tag, a verified signature and a policy verdict each (bulk inserts)."""
    rows = Artifact.objects.bulk_create(
        Artifact(source=source, repository=f"{repository}{i % 7}", digest=f"sha256:{i:064x}", status="verified",
                 checked_at=NOW - dt.timedelta(minutes=i)) for i in range(start, start + n))
    Tag.objects.bulk_create(Tag(artifact=a, name=f"v{i}") for i, a in enumerate(rows))
    Evidence.objects.bulk_create(
        Evidence(artifact=a, kind="signature", format="cosign-sig", location="x", digest=a.digest,
                 evidence_key=a.digest[7:], covers_digest=a.digest, outcome="verified", valid=True, identity=SIGNER,
                 issuer=ISSUER) for a in rows)
    ArtifactTrust.objects.bulk_create(ArtifactTrust(artifact=a, status="trusted") for a in rows)
    return rows


def rows_of(html: str) -> list[str]:
    """The digests the fleet table lists, in order."""
    table = html.split('id="artifact-table"')[1]
    return re.findall(r'title="(sha256:[0-9a-f]+)"', table)


def total_of(html: str) -> int:
    match = re.search(r'id="fleet-total"><b>(\d+)</b>', html)
    assert match, "no total on the page"
    return int(match.group(1))


@pytest.fixture
def fleet():
    ghcr = make_source("ghcr", "ghcr.io/acme/app:v1")
    mirror = make_source("mirror", "registry.example/mirror/app:v1")
    app = Artifact.objects.create(source=ghcr, repository="acme/app", digest="sha256:" + "a1" * 32,
                                  status="verified", checked_at=NOW)
    Tag.objects.create(artifact=app, name="v1.2.0")
    Evidence.objects.create(artifact=app, kind="signature", format="cosign-sig", location="x", digest=app.digest,
                            evidence_key="1", covers_digest=app.digest, outcome="verified", identity=SIGNER,
                            issuer=ISSUER)
    ArtifactTrust.objects.create(artifact=app, status="trusted")
    forged = Artifact.objects.create(source=ghcr, repository="acme/tool", digest="sha256:" + "b2" * 32,
                                     status="failed", status_reason="signed by someone else",
                                     checked_at=NOW - dt.timedelta(days=3))
    ArtifactTrust.objects.create(artifact=forged, status="untrusted")
    for key, outcome, kind, predicate in (("p1", "verified", "attestation", "https://slsa.dev/provenance/v1"),
                                          ("p2", "failed", "attestation", "https://spdx.dev/Document")):
        Evidence.objects.create(artifact=forged, kind=kind, format="cosign-att", location="x", digest=forged.digest,
                                evidence_key=key, covers_digest=forged.digest, outcome=outcome,
                                predicate_type=predicate)
    copy = Artifact.objects.create(source=mirror, repository="mirror/app", digest=app.digest, status="unsigned",
                                   checked_at=NOW - dt.timedelta(days=1))
    # a platform of an index is not a row of the fleet page
    Artifact.objects.create(source=ghcr, repository="acme/app", digest="sha256:" + "c3" * 32, parent=app,
                            platform="linux/arm64", status="verified")
    return {"app": app, "forged": forged, "copy": copy, "ghcr": ghcr, "mirror": mirror}


@pytest.mark.parametrize(("query", "expected"), [
    ("", {"app", "forged", "copy"}),
    ("repository_prefix=acme/", {"app", "forged"}),
    ("tag=v1.2.0", {"app"}),
    ("digest_prefix=sha256:b2b2", {"forged"}),
    (f"signer={SIGNER}", {"app"}),
    (f"issuer={ISSUER}&status=verified", {"app"}),
    ("status=failed", {"forged"}),
    ("policy=untrusted", {"forged"}),
    ("policy=pending", {"copy"}),
    ("checked_since=2026-10-31T00:00:00Z", {"app", "copy"}),
    ("predicate_type=https://slsa.dev/provenance/v1", {"forged"}),
    ("predicate_type=https://spdx.dev/Document", set()),
    ("repository_prefix=&tag=&status=", {"app", "forged", "copy"}),  # a plain form's empty fields: no filter
])
def test_filters_are_the_apis(fleet, user_client, query, expected):
    html = user_client.get(f"/?{query}").content.decode()
    digests = {name: fleet[name].digest for name in expected}
    listed = rows_of(html)
    assert sorted(listed) == sorted(digests.values()) and total_of(html) == len(expected)
    api_query = "&".join(p for p in query.split("&") if not p.endswith("="))
    api = user_client.get(f"/api/v1/artifacts/?{api_query}&top_level=true").json()["results"]
    assert sorted(r["digest"] for r in api if r["platform"] == "") == sorted(listed)


def test_filter_by_source_tells_places_of_one_digest_apart(fleet, user_client):
    html = user_client.get(f"/?source={fleet['mirror'].pk}").content.decode()
    assert rows_of(html) == [fleet["app"].digest] and total_of(html) == 1
    table = html.split('id="artifact-table"')[1]
    assert "registry.example" in table and f'href="/artifacts/{fleet["copy"].pk}/"' in table
    assert "○ unsigned" in table and "✔ verified" not in table


def test_the_form_keeps_its_values_and_sorts(fleet, user_client):
    html = user_client.get("/?repository_prefix=acme/&ordering=-checked_at").content.decode()
    assert 'name="repository_prefix" value="acme/"' in html
    assert '<option value="-checked_at" selected>' in html
    # the export links hold the same filters (not the order): an export of exactly this list
    assert 'href="/compliance/export/?top_level=true&amp;repository_prefix=acme%2F&amp;format=csv"' in html
    assert "the matching artifacts (repository prefix: acme/)" in html
    assert rows_of(html) == [fleet["app"].digest, fleet["forged"].digest]
    assert rows_of(user_client.get("/?repository_prefix=acme/&ordering=checked_at").content.decode()) == [
        fleet["forged"].digest, fleet["app"].digest]


def test_htmx_gets_the_table_alone(fleet, user_client):
    html = user_client.get("/?status=failed", HTTP_HX_REQUEST="true").content.decode()
    assert html.lstrip().startswith('<div id="artifact-table">') and "<html" not in html
    assert rows_of(html) == [fleet["forged"].digest]


def test_a_bad_filter_says_which_and_lists_nothing(fleet, user_client):
    response = user_client.get("/?status=nonsense&checked_since=yesterday")
    html = response.content.decode()
    assert response.status_code == 200 and rows_of(html) == []
    errors = html.split('id="filter-errors"')[1].split("</ul>")[0]
    assert "status" in errors and "checked_since" in errors
    assert "invalid cursor" in user_client.get("/?cursor=%%%").content.decode()
    # an error message quoting the input: a "%" in it is text (the page and the API alike)
    quoted = user_client.get("/?image=a%25sb c")
    assert quoted.status_code == 200 and "image" in quoted.content.decode().split('id="filter-errors"')[1]
    api = user_client.get("/api/v1/artifacts/?image=a%25sb c")
    assert api.status_code == 400 and "%s" in str(api.json())


def test_pages_past_500_with_a_total_and_no_row_twice(user_client):
    source = make_source("bulk", "ghcr.io/acme/bulk:v1")
    made = fill(source, 620)
    url, seen, pages = "/?ordering=-checked_at", [], 0
    while url:
        html = user_client.get(url).content.decode()
        assert total_of(html) == 620
        seen += rows_of(html)
        pages += 1
        match = re.search(r'<a rel="next" href="([^"]+)"', html)
        url = match.group(1).replace("&amp;", "&") if match else ""
    assert pages == 7 and len(seen) == len(set(seen)) == 620
    assert seen == [a.digest for a in made]  # newest checked first, exactly as made
    # and back again
    html = user_client.get(re.sub("&amp;", "&", re.search(r'rel="next" href="([^"]+)"', user_client.get(
        "/?ordering=-checked_at").content.decode()).group(1))).content.decode()
    previous = re.search(r'<a rel="prev" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert rows_of(user_client.get(previous).content.decode()) == [a.digest for a in made[:100]]


# -- the query count does not grow with the fleet ---------------------------------------------------------------


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(captured)


def test_query_count_per_page_is_the_same_at_10_and_1000_artifacts(user_client):
    source = make_source("counted", "ghcr.io/acme/counted:v1")
    fill(source, 10)
    first = Artifact.objects.order_by("pk").first()
    assert first is not None
    urls = ["/", "/?status=verified&repository_prefix=acme/&signer=" + SIGNER, "/?ordering=-checked_at&tag=v3",
            f"/artifacts/{first.pk}/", f"/sources/{source.pk}/", "/coverage/", "/charts/verdicts/",
            "/api/v1/artifacts/", f"/api/v1/digests/{first.digest}/",
            f"/api/v1/artifacts/?signer={SIGNER}&status=verified"]
    user_client.get("/")  # session and permission caches warm
    small = {url: _queries(user_client, url) for url in urls}
    fill(source, 990, start=10)
    large = {url: _queries(user_client, url) for url in urls}
    assert large == small


def test_source_page_refreshes_its_table_when_the_scan_ends(user_client):
    from provenance.sources.models import Scan

    source = make_source("scanned", "ghcr.io/acme/scanned:v1")
    scan = Scan.objects.create(source=source, state=Scan.State.RUNNING, total=2)
    running = user_client.get(f"/sources/{source.pk}/", HTTP_HX_REQUEST="true")
    assert running.status_code == 200 and 'id="source-artifacts"' not in running.content.decode()
    fill(source, 130)
    Scan.objects.filter(pk=scan.pk).update(state=Scan.State.DONE, done=2)
    done = user_client.get(f"/sources/{source.pk}/", HTTP_HX_REQUEST="true")
    html = done.content.decode()
    assert done.status_code == 286  # polling stops, and the table comes along out of band
    assert '<div id="source-artifacts" hx-swap-oob="true">' in html and "130 images" in html
    assert html.count('href="/artifacts/') == 100 and f'href="/?source={source.pk}"' in html
    page = user_client.get(f"/sources/{source.pk}/").content.decode()
    assert page.count('id="source-artifacts"') == 1 and "hx-swap-oob" not in page


def test_add_source_form_speaks_the_users_words(user_client):
    html = user_client.get("/sources/new/").content.decode()
    for label in ("What to watch", "Expected signer", "The registry speaks plain HTTP (no TLS)",
                  "Registry password or token", "Only tags matching"):
        assert label in html
    assert "anyone on the way can change them" in html  # what plain HTTP means
    for field_name in ("Is insecure", "Tag pattern", "Expected identity regexp", "Ca certificates"):
        assert field_name not in html


def test_a_large_filtered_total_is_bounded_and_said_so(user_client, monkeypatch):
    from provenance.artifacts import views

    fill(make_source("many", "ghcr.io/acme/many:v1"), 30)
    monkeypatch.setattr(views, "COUNT_LIMIT", 20)
    bounded = user_client.get(f"/?signer={SIGNER}").content.decode()
    assert "<b>more than 20</b> images" in bounded and len(rows_of(bounded)) == 30
    assert total_of(user_client.get("/").content.decode()) == 30  # unfiltered: the exact sum of the counts
    assert total_of(user_client.get(f"/?signer={SIGNER}&tag=v3").content.decode()) == 1
