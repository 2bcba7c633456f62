"""The policy API: the same services as the pages, errors as {"error", "detail"}."""

from __future__ import annotations

import pytest

from provenance.policies import services
from provenance.policies.models import Cause, Policy
from tests.factories import UserFactory
from tests.policies.fleet import APP_WORKFLOW, INTRUDER, issue_policy, make_fleet

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client):
    client.force_login(UserFactory())
    return client


def test_create_list_export_and_dry_run(api):
    fleet = make_fleet()
    trusted = fleet.image("myorg/app", signers=(APP_WORKFLOW,))
    fleet.image("myorg/tool", signers=(INTRUDER,))
    report = api.post("/api/v1/policies/dry-run/", {"source": issue_policy()}, content_type="application/json")
    assert report.status_code == 200, report.content
    body = report.json()
    assert body["flip_count"] == 2 and body["after"] == {"trusted": 1, "untrusted": 1}
    assert {f["after"] for f in body["flips"]} == {"trusted", "untrusted"}
    assert not Policy.objects.exists()

    created = api.post("/api/v1/policies/", {"source": issue_policy()}, content_type="application/json")
    assert created.status_code == 201, created.content
    assert created.json()["name"] == "require-sigstore-signatures" and len(created.json()["warnings"]) == 3
    pk = created.json()["id"]
    assert api.get("/api/v1/policies/").json()["count"] == 1
    assert api.get(f"/api/v1/policies/{pk}/export/").content.decode() == issue_policy()

    services.evaluate_artifacts([trusted.pk], cause=Cause.EVIDENCE)
    verdict = api.get(f"/api/v1/policies/verdicts/{trusted.digest}/").json()
    assert verdict["status"] == "trusted" and verdict["history"][0]["cause"] == "evidence"
    coverage = api.get("/api/v1/policies/coverage/").json()
    assert coverage[0]["images"] == 2


def test_bad_policy_is_a_400_with_the_line(api):
    response = api.post("/api/v1/policies/", {"source": issue_policy().replace("myorg/.*", "myorg/(.*")},
                        content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "policy_invalid" and response.json()["detail"].startswith("line 12:")
    rego = api.post("/api/v1/policies/dry-run/", {"source": issue_policy().replace("allow {", "allow {{")},
                    content_type="application/json")
    assert rego.status_code == 400 and rego.json()["error"] == "rego_invalid"
    assert not Policy.objects.exists()


def test_update_makes_a_new_version(api):
    policy = services.save_policy(issue_policy())
    response = api.patch(f"/api/v1/policies/{policy.pk}/", {"source": issue_policy().replace("enforce", "warn")
                         if "enforce" in issue_policy() else issue_policy() + "  mode: warn\n"},
                         content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 2 and response.json()["mode"] == "warn"
