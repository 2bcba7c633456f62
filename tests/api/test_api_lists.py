"""The API's lists: filters (django-filter), lookups by image reference, the policy verdict in each row without a
query per row, keyset cursors that never skip or repeat a row, per-scope throttles, the root and the docs page."""

from __future__ import annotations

import datetime as dt
import os
import re

import pytest
from django.contrib.staticfiles import finders
from django.core.cache import cache
from django.test import Client

from provenance.accounts import services as account_services
from provenance.accounts.models import ApiToken, AuditEvent
from provenance.api.throttling import AnonThrottle, TokenWriteThrottle, UserThrottle
from provenance.artifacts import services as artifact_services
from provenance.artifacts.models import Artifact, Tag
from provenance.core.testsigstore import GITHUB_ACTIONS_ISSUER
from provenance.core.types import Digest
from provenance.policies import services as policy_services
from provenance.policies.models import Cause
from provenance.sources.models import Scan, Source
from tests.factories import user_with_role
from tests.policies.fleet import APP_WORKFLOW, INTRUDER, Fleet, issue_policy, make_fleet

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> Client:
    client = Client()
    client.force_login(user_with_role("viewer"))
    return client


@pytest.fixture
def fleet() -> Fleet:
    return make_fleet()


def _digests(response: object) -> list[str]:
    assert response.status_code == 200, response.content  # type: ignore[attr-defined]
    return [row["digest"] for row in response.json()["results"]]  # type: ignore[attr-defined]


def _walk(client: Client, url: str) -> tuple[list[str], list[dict]]:
    """Follow ``next`` to the end: every row's digest, and every page's body."""
    seen: list[str] = []
    pages: list[dict] = []
    while url:
        body = client.get(url).json()
        pages.append(body)
        seen += [row.get("digest") or row.get("id") for row in body["results"]]
        url = body["next"]
        assert len(pages) < 50
    return seen, pages


# -- the policy verdict in the list, in a constant number of queries -----------------------------------------------


def test_the_artifact_list_carries_each_verdict_without_a_query_per_row(api, fleet, django_assert_max_num_queries):
    policy_services.save_policy(issue_policy())
    trusted = fleet.image("myorg/app", signers=(APP_WORKFLOW,))
    untrusted = fleet.image("myorg/tool", signers=(INTRUDER,))
    never = fleet.image("myorg/new")
    policy_services.evaluate_artifacts([trusted.pk, untrusted.pk], cause=Cause.EVIDENCE)

    rows = {row["digest"]: row for row in api.get("/api/v1/artifacts/").json()["results"]}

    assert rows[trusted.digest]["policy"]["status"] == "trusted" and rows[trusted.digest]["policy"]["evaluated_at"]
    assert rows[untrusted.digest]["policy"]["status"] == "untrusted" and rows[untrusted.digest]["policy"]["code"]
    assert rows[never.digest]["policy"] == {"status": "pending", "code": "", "evaluated_at": None}
    assert rows[trusted.digest]["tags"] == ["v1"] and rows[trusted.digest]["source"] == fleet.source.name

    def queries_for_the_list() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            assert api.get("/api/v1/artifacts/?ordering=-checked_at").status_code == 200
        return len(captured)

    few = queries_for_the_list()
    for i in range(30):
        artifact = fleet.image(f"myorg/more{i}", tag=f"t{i}")
        Tag.objects.create(artifact=artifact, name=f"also{i}")
    policy_services.evaluate_artifacts(Artifact.objects.values_list("pk", flat=True), cause=Cause.EVIDENCE)
    with django_assert_max_num_queries(few):
        body = api.get("/api/v1/artifacts/?ordering=-checked_at").json()
    assert len(body["results"]) == 33 and all(row["policy"]["status"] != "pending" for row in body["results"])
    # the filters that join or look through evidence stay constant too
    with django_assert_max_num_queries(few + 2):
        filtered = api.get(f"/api/v1/artifacts/?signer={APP_WORKFLOW}&issuer={GITHUB_ACTIONS_ISSUER}"
                           f"&image=ghcr.io/myorg/app:v1&source={fleet.source.pk}&policy=trusted")
    assert _digests(filtered) == [trusted.digest]


# -- lookups by image reference ------------------------------------------------------------------------------------


def test_finds_an_artifact_by_image_reference_from_stored_tags_and_digests(api, fleet):
    app = fleet.image("myorg/app", tag="v1")
    moved = fleet.image("myorg/app", tag="v2")
    other = Source.objects.create(name="elsewhere", location="registry.example/myorg/app:v1",
                                  trust_root=fleet.root)
    elsewhere = Artifact.objects.create(source=other, repository="myorg/app", digest=str(Digest.of(b"x")))
    Tag.objects.create(artifact=elsewhere, name="v1")

    assert _digests(api.get("/api/v1/artifacts/?image=ghcr.io/myorg/app:v1")) == [app.digest]
    assert _digests(api.get("/api/v1/artifacts/?image=GHCR.io/myorg/app:v2")) == [moved.digest]
    assert _digests(api.get(f"/api/v1/artifacts/?image=ghcr.io/myorg/app@{moved.digest}")) == [moved.digest]
    assert _digests(api.get(f"/api/v1/artifacts/?image=ghcr.io/myorg/app:v1@{moved.digest}")) == [moved.digest]
    assert _digests(api.get("/api/v1/artifacts/?image=registry.example/myorg/app:v1")) == [elsewhere.digest]
    # the digest must be in that repository of that registry; a tag nobody stored finds nothing (no registry call)
    assert _digests(api.get(f"/api/v1/artifacts/?image=ghcr.io/myorg/other@{app.digest}")) == []
    assert _digests(api.get(f"/api/v1/artifacts/?image=docker.io/myorg/app@{app.digest}")) == []
    assert _digests(api.get("/api/v1/artifacts/?image=ghcr.io/myorg/app:v9")) == []
    assert _digests(api.get("/api/v1/artifacts/?image=ghcr.io/myorg/app")) == []  # :latest, never stored

    bad = api.get("/api/v1/artifacts/?image=ghcr.io/Not A Ref")
    assert bad.status_code == 400 and "not an image reference" in bad.json()["image"][0]
    short = api.get("/api/v1/artifacts/?image=ghcr.io/app@sha256:abc")
    assert short.status_code == 400 and "digest" in short.json()["image"][0]


# -- filters -------------------------------------------------------------------------------------------------------


def test_artifact_filters(api, fleet):
    signed = fleet.image("myorg/app", signers=(APP_WORKFLOW,), tag="v1")
    forged = fleet.image("myorg/app-tools", signers=(INTRUDER,), tag="v2")  # not verified: wrong identity
    old = fleet.image("other/thing", tag="v3")
    Artifact.objects.filter(pk=old.pk).update(status="unsigned", checked_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    Artifact.objects.filter(pk=forged.pk).update(status="failed")
    policy_services.save_policy(issue_policy())
    policy_services.evaluate_artifacts([signed.pk], cause=Cause.EVIDENCE)
    get = lambda query: set(_digests(api.get(f"/api/v1/artifacts/?{query}")))  # noqa: E731

    assert get("status=unsigned") == {old.digest}
    assert get("status=failed") == {forged.digest}
    assert get("policy=trusted") == {signed.digest}
    assert get("policy=pending") == {forged.digest, old.digest}
    assert get("repository=myorg/app") == {signed.digest}
    assert get("repository_prefix=myorg/") == {signed.digest, forged.digest}
    assert get(f"digest_prefix={signed.digest[:12]}") == {signed.digest}
    assert get(f"digest={old.digest}") == {old.digest}
    assert get("tag=v2") == {forged.digest}
    assert get(f"source={fleet.source.pk}") == {signed.digest, forged.digest, old.digest}
    assert get(f"signer={APP_WORKFLOW}") == {signed.digest}
    assert get(f"signer={INTRUDER}") == set()  # only verified evidence names a signer
    assert get(f"issuer={GITHUB_ACTIONS_ISSUER}") == {signed.digest}
    assert get("checked_since=2021-01-01T00:00:00Z") == {signed.digest, forged.digest}
    assert _digests(api.get("/api/v1/artifacts/?ordering=repository")) == [signed.digest, forged.digest, old.digest]
    assert _digests(api.get("/api/v1/artifacts/?ordering=-repository"))[0] == old.digest
    assert _digests(api.get("/api/v1/artifacts/"))[-1] == old.digest  # newest checked first

    for query in ("status=nonsense", "policy=nonsense", "source=999999", "source=x", "checked_since=yesterday",
                  "ordering=evidence_fingerprint", "tag=" + "x" * 200):
        response = api.get(f"/api/v1/artifacts/?{query}")
        assert response.status_code == 400, (query, response.content)
        assert query.split("=")[0] in response.json()


def test_scan_source_policy_and_audit_filters(api, fleet):
    other = Source.objects.create(name="second", location="ghcr.io/myorg/api:v1", trust_root=fleet.root)
    done = Scan.objects.create(source=fleet.source, state=Scan.State.DONE)
    Scan.objects.create(source=other, state=Scan.State.FAILED)
    policy_services.save_policy(issue_policy())
    account_services.record("source.create", other)
    account_services.record("source.scan", other)
    account_services.record("policy.create", other)

    scans = api.get(f"/api/v1/scans/?state=done&source={fleet.source.pk}").json()["results"]
    assert [s["id"] for s in scans] == [done.pk]
    assert [s["name"] for s in api.get("/api/v1/sources/?name_prefix=sec").json()["results"]] == ["second"]
    assert api.get("/api/v1/sources/?kind=layout").json()["count"] == 0
    assert api.get("/api/v1/policies/?mode=enforce&is_enabled=true").json()["count"] == 1
    assert api.get("/api/v1/policies/?mode=warn").json()["count"] == 0

    actions = [e["action"] for e in api.get("/api/v1/audit/?action=source.").json()["results"]]
    assert sorted(actions) == ["source.create", "source.scan"]
    assert api.get("/api/v1/audit/?actor=nobody-at-all").json()["results"] == []
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert api.get("/api/v1/audit/", {"since": future}).json()["results"] == []
    assert api.get("/api/v1/audit/?since=not-a-time").status_code == 400
    assert api.get("/api/v1/scans/?state=exploded").status_code == 400


# -- cursor pagination ---------------------------------------------------------------------------------------------


def test_the_cursor_walks_every_row_once_forward_and_back_across_ties_and_nulls(api, fleet):
    same = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    made = []
    for i in range(9):
        artifact = Artifact.objects.create(source=fleet.source, repository=f"myorg/r{i % 3}",
                                           digest=str(Digest.of(os.urandom(8))))
        # three share a time, three were never checked (NULL), three differ
        checked = same if i % 3 == 0 else (None if i % 3 == 1 else same + dt.timedelta(minutes=i))
        Artifact.objects.filter(pk=artifact.pk).update(checked_at=checked)
        made.append(artifact.pk)
    rows = list(Artifact.objects.filter(pk__in=made))
    newest_first = sorted(rows, key=lambda a: (a.checked_at is None, -(a.checked_at or same).timestamp(), -a.pk))

    seen, pages = _walk(api, "/api/v1/artifacts/?limit=2")
    assert seen == [a.digest for a in newest_first]
    assert all(set(page) == {"next", "previous", "results"} for page in pages)
    assert pages[0]["previous"] is None and pages[-1]["next"] is None and pages[1]["previous"]
    assert pages[0]["next"].startswith("http://testserver/api/v1/artifacts/?")

    # back from the last page, previous by previous: the same pages in reverse
    url, back = pages[-1]["previous"], []
    while url:
        body = api.get(url).json()
        back = [r["digest"] for r in body["results"]] + back
        url = body["previous"]
    assert back == seen[: len(seen) - len(pages[-1]["results"])]

    # another order, each key ascending: still every row once
    by_repo, _ = _walk(api, "/api/v1/artifacts/?limit=4&ordering=repository,checked_at")
    expected = sorted(rows, key=lambda a: (a.repository, a.checked_at is None, a.checked_at or same, a.pk))
    assert by_repo == [a.digest for a in expected]

    # a row added meanwhile does not shift the pages after the cursor
    second = api.get(pages[0]["next"]).json()
    Artifact.objects.create(source=fleet.source, repository="myorg/late", digest=str(Digest.of(b"late")),
                            checked_at=dt.datetime.now(dt.UTC))
    assert api.get(pages[0]["next"]).json()["results"] == second["results"]


def test_a_forged_or_foreign_cursor_is_a_400(api, fleet):
    fleet.image("myorg/a", tag="a")
    fleet.image("myorg/b", tag="b")
    next_url = api.get("/api/v1/artifacts/?limit=1").json()["next"]
    cursor = re.search(r"cursor=([^&]+)", next_url).group(1)

    for url in (f"/api/v1/artifacts/?cursor={cursor}&ordering=repository", "/api/v1/artifacts/?cursor=%%%",
                "/api/v1/artifacts/?cursor=eyJvIjoiLWNoZWNrZWRfYXQsLWlkIiwidiI6WzEsMl0sInIiOmZhbHNlfQ",
                "/api/v1/artifacts/?cursor=" + "A" * 3000, f"/api/v1/scans/?cursor={cursor}"):
        response = api.get(url)
        assert response.status_code == 400, (url, response.content)
        assert response.json()["error"] == "invalid_cursor"
    assert api.get("/api/v1/artifacts/?limit=0").json()["results"]  # a bad limit falls back to a bounded one
    assert len(api.get("/api/v1/artifacts/?limit=100000").json()["results"]) == 2


def test_scans_audit_and_tag_history_are_cursor_paged(api, fleet):
    scans = [Scan.objects.create(source=fleet.source) for _ in range(5)]
    for i in range(5):
        artifact_services.record_tag(fleet.source, "myorg/app", f"t{i % 2}", Digest.of(os.urandom(4)))
    for i in range(5):
        account_services.record("source.scan", fleet.source, {"n": i})

    seen, pages = _walk(api, "/api/v1/scans/?limit=2")
    assert seen == [s.pk for s in reversed(scans)] and len(pages) == 3 and "count" not in pages[0]
    audit, _ = _walk(api, "/api/v1/audit/?limit=2&action=source.scan")
    assert audit == list(AuditEvent.objects.filter(action="source.scan").order_by("-at", "-pk")
                         .values_list("pk", flat=True))
    history = f"/api/v1/sources/{fleet.source.pk}/tag-history/?limit=2"
    events, pages = _walk(api, history)
    assert len(events) == 5 and len(pages) == 3
    tags = [e["tag"] for page in pages for e in page["results"]]
    assert tags == ["t0", "t1", "t0", "t1", "t0"]
    only = api.get(history.replace("limit=2", "tag=t1")).json()["results"]
    assert [e["tag"] for e in only] == ["t1", "t1"]
    assert api.get("/api/v1/sources/999999/tag-history/").status_code == 404


# -- throttling ----------------------------------------------------------------------------------------------------


@pytest.fixture
def tight(monkeypatch):
    """Small budgets for this test only (the cache holds the counts: cleared before and after)."""
    cache.clear()
    monkeypatch.setattr(UserThrottle, "rate", "3/minute", raising=False)
    monkeypatch.setattr(AnonThrottle, "rate", "2/minute", raising=False)
    monkeypatch.setattr(TokenWriteThrottle, "rate", "2/hour", raising=False)
    yield
    cache.clear()


def _throttled(response: object) -> bool:
    return (response.status_code == 429 and response.json()["error"] == "throttled"  # type: ignore[attr-defined]
            and int(response["Retry-After"]) > 0 and "detail" in response.json())  # type: ignore[index,attr-defined]


def test_each_scope_has_its_budget_and_a_throttled_answer_says_when_to_retry(tight, monkeypatch):
    viewer = Client()
    viewer.force_login(user_with_role("viewer"))
    assert [viewer.get("/api/v1/scans/").status_code for _ in range(3)] == [200, 200, 200]
    assert _throttled(viewer.get("/api/v1/scans/"))

    anonymous = Client()
    assert [anonymous.get("/api/v1/scans/").status_code for _ in range(2)] == [401, 401]
    assert _throttled(anonymous.get("/api/v1/scans/"))
    assert _throttled(anonymous.get("/api/v1/scans/", HTTP_AUTHORIZATION="Bearer prv_guess"))

    cache.clear()
    monkeypatch.setattr(UserThrottle, "rate", "100/minute", raising=False)
    admin = user_with_role("admin")
    secret = account_services.create_token(admin, name="automation", scope=ApiToken.Scope.WRITE).secret
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    token = Client()
    made = [token.post("/api/v1/tokens/", {"name": f"t{i}"}, content_type="application/json", **bearer).status_code
            for i in range(2)]
    assert made == [201, 201]
    assert _throttled(token.post("/api/v1/tokens/", {"name": "t3"}, content_type="application/json", **bearer))
    assert token.get("/api/v1/tokens/", **bearer).status_code == 200  # reads are not token writes
    assert ApiToken.objects.filter(user=admin).count() == 3


# -- the root, the schema and the docs page ------------------------------------------------------------------------


def test_the_api_root_lists_every_resource_with_links_that_work(api):
    root = api.get("/api/v1/")
    assert root.status_code == 200
    links = root.json()
    assert {"artifacts", "sources", "scans", "trust-roots", "policies", "public-keys", "tokens", "audit",
            "policy-coverage", "schema", "docs"} <= set(links)
    assert {"check", "admission"} <= set(links)
    for name, url in links.items():
        assert url.startswith("http://testserver/"), name
        response = api.get(url.removeprefix("http://testserver"))
        # the gate needs ?image= (400 names it), the admission webhook takes only POST
        expected = {"check": 400, "admission": 405}.get(name, 200)
        assert response.status_code == expected, (name, url, response.status_code)


def test_the_docs_page_is_served_from_vendored_files_for_viewers_only(api):
    page = api.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    # The start-up script is a file (no inline script under the CSP); it names the schema.
    assert "/api/schema/" in api.get("/api/docs/?script=").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/static/drf_spectacular_sidecar/") or a == "/api/docs/?script="
                          for a in assets if not a.startswith("data:")), assets
    assert "https://" not in html.replace("https://swagger.io", "")
    for asset in assets:
        if asset.startswith("/static/"):
            assert finders.find(asset.removeprefix("/static/")), asset

    assert Client().get("/api/docs/").status_code == 302
    norole = Client()
    norole.force_login(user_with_role(None))
    assert norole.get("/api/docs/").status_code == 403


def test_the_schema_documents_filters_cursors_the_token_secret_and_errors(api):
    schema = api.get("/api/schema/?format=json").json()
    artifacts = schema["paths"]["/api/v1/artifacts/"]["get"]
    names = {p["name"] for p in artifacts["parameters"]}
    assert {"image", "status", "policy", "repository", "repository_prefix", "digest_prefix", "tag", "source",
            "signer", "issuer", "checked_since", "ordering", "cursor", "limit"} <= names
    assert {"200", "401", "403", "429"} <= set(artifacts["responses"])
    token = schema["paths"]["/api/v1/tokens/"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    created = schema["components"]["schemas"][token["$ref"].rsplit("/", 1)[1]]
    assert "token" in created["properties"]
    assert schema["components"]["securitySchemes"]["tokenAuth"]["scheme"] == "bearer"
