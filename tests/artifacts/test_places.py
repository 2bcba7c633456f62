"""An artifact is a place (registry, repository, digest): the same digest in two places is two pages, two API
resources, two verdicts; the digest alone lists its places and never answers "whichever was checked last"."""

from __future__ import annotations

import datetime as dt

import pytest
from django.http import Http404
from django.urls import reverse

from provenance.artifacts import services
from provenance.artifacts.models import Artifact, Tag
from provenance.sources.models import Source
from tests.factories import UserFactory, make_sigstore, trust_root_for

pytestmark = pytest.mark.django_db

DIGEST = "sha256:" + "5e" * 32
NOW = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def user_client(client):
    client.force_login(UserFactory())
    return client


@pytest.fixture
def two_places():
    root = trust_root_for(make_sigstore())
    ghcr = Source.objects.create(name="ghcr", kind=Source.Kind.IMAGE, location="ghcr.io/acme/app:v1", trust_root=root)
    mirror = Source.objects.create(name="mirror", kind=Source.Kind.IMAGE, location="registry.example/mirror/app:v1",
                                   trust_root=root)
    good = Artifact.objects.create(source=ghcr, repository="acme/app", digest=DIGEST, status="verified",
                                   checked_at=NOW - dt.timedelta(hours=1))
    # the untrusted copy was checked last: nothing may pick it for the other place
    bad = Artifact.objects.create(source=mirror, repository="mirror/app", digest=DIGEST, status="failed",
                                  status_code="identity_mismatch", status_reason="signed by someone else",
                                  checked_at=NOW)
    Tag.objects.create(artifact=good, name="v1")
    return good, bad


def test_each_place_has_its_own_page_with_its_own_verdict(two_places, user_client):
    good, bad = two_places
    good_page = user_client.get(reverse("artifact-place", args=[good.pk])).content.decode()
    bad_page = user_client.get(reverse("artifact-place", args=[bad.pk])).content.decode()
    assert "ghcr.io/acme/app@" + DIGEST in good_page and "✔ verified" in good_page.split('id="also-in"')[0]
    assert "registry.example/mirror/app@" + DIGEST in bad_page and "signed by someone else" in bad_page
    assert "✔ verified" not in bad_page.split('id="also-in"')[0]
    # each names the other under "also in", with that place's verdict
    also = good_page.split('id="also-in"')[1]
    assert f'href="/artifacts/{bad.pk}/"' in also and "✘ failed" in also
    assert f'href="/artifacts/{good.pk}/"' in bad_page.split('id="also-in"')[1]


def test_the_digest_view_lists_every_place_side_by_side(two_places, user_client):
    good, bad = two_places
    response = user_client.get(f"/artifacts/{DIGEST}/")
    assert response.status_code == 200
    table = response.content.decode().split('id="digest-places"')[1]
    assert f'href="/artifacts/{good.pk}/"' in table and f'href="/artifacts/{bad.pk}/"' in table
    assert "✔ verified" in table and "✘ failed" in table and "signed by someone else" in table


def test_the_digest_view_goes_straight_to_a_single_place(two_places, user_client):
    good, bad = two_places
    bad.delete()
    response = user_client.get(f"/artifacts/{DIGEST}/")
    assert response.status_code == 302 and response["Location"] == f"/artifacts/{good.pk}/"
    trust = user_client.get(reverse("artifact-trust", args=[DIGEST]))
    assert trust.status_code == 302 and trust["Location"] == f"/artifacts/{good.pk}/trust/"


def test_unknown_or_malformed_digests_and_places_are_404(user_client):
    assert user_client.get(f"/artifacts/{DIGEST}/").status_code == 404
    assert user_client.get("/artifacts/sha256:nothex/").status_code == 404
    assert user_client.get("/artifacts/999999/").status_code == 404


def test_find_artifact_refuses_to_choose_between_places(two_places):
    good, bad = two_places
    with pytest.raises(services.DigestInSeveralPlacesError) as caught:
        services.find_artifact(DIGEST)
    assert caught.value.code == "digest_in_several_places" and "ghcr.io/acme/app" in caught.value.message
    assert services.find_artifact(DIGEST, place=good.pk) == good
    assert services.find_artifact(DIGEST, place=str(bad.pk)) == bad
    with pytest.raises(Http404):  # a place of another digest
        other = Artifact.objects.create(source=good.source, repository="acme/other", digest="sha256:" + "7" * 64)
        services.find_artifact(DIGEST, place=other.pk)
    with pytest.raises(Http404):
        services.find_artifact(DIGEST, place="abc")


def test_api_serves_one_resource_per_place_and_lists_a_shared_digest(two_places, user_client):
    good, bad = two_places
    one = user_client.get(f"/api/v1/artifacts/{bad.pk}/").json()
    assert (one["id"], one["status"], one["registry"], one["name"]) == (
        bad.pk, "failed", "registry.example", "registry.example/mirror/app")
    assert one["url"] == f"http://testserver/api/v1/artifacts/{bad.pk}/"
    several = user_client.get(f"/api/v1/artifacts/{DIGEST}/")
    assert several.status_code == 300 and several.json()["error"] == "digest_in_several_places"
    assert {(p["id"], p["status"]) for p in several.json()["places"]} == {(good.pk, "verified"), (bad.pk, "failed")}
    listed = user_client.get(f"/api/v1/digests/{DIGEST}/").json()
    assert listed["digest"] == DIGEST and [p["name"] for p in listed["places"]] == [
        "ghcr.io/acme/app", "registry.example/mirror/app"]
    verdict = user_client.get(f"/api/v1/policies/verdicts/{DIGEST}/")
    assert verdict.status_code == 400 and verdict.json()["error"] == "digest_in_several_places"
    assert user_client.get(f"/api/v1/policies/verdicts/{DIGEST}/?place={good.pk}").json()["repository"] == "acme/app"
    bad.delete()
    alone = user_client.get(f"/api/v1/artifacts/{DIGEST}/")  # one place: the resource itself, as before
    assert alone.status_code == 200 and alone.json()["id"] == good.pk and "evidence" in alone.json()
    assert user_client.get(f"/api/v1/digests/{'sha256:' + '0' * 64}/").status_code == 404


def test_vsa_of_a_shared_digest_needs_its_place(two_places, user_client):
    response = user_client.get(reverse("artifact-vsa", args=[DIGEST]))
    assert response.status_code == 400 and "found in 2 places" in response.content.decode()
    api = user_client.get(f"/api/v1/artifacts/{DIGEST}/vsa/")
    assert api.status_code == 400
