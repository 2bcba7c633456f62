"""Policy pages: import with dry-run preview, refusal of bad input (nothing saved), trust panel, coverage."""

from __future__ import annotations

import pytest
from django.urls import reverse

from provenance.policies import services
from provenance.policies.models import Cause, Policy, Reevaluation
from tests.factories import UserFactory
from tests.policies.fleet import APP_WORKFLOW, INTRUDER, issue_policy, make_fleet

pytestmark = pytest.mark.django_db


@pytest.fixture
def user_client(client):
    client.force_login(UserFactory())
    return client


def test_dry_run_preview_shows_what_would_flip_without_saving(user_client, django_capture_on_commit_callbacks):
    fleet = make_fleet()
    fleet.image("myorg/app", signers=(APP_WORKFLOW,))
    fleet.image("myorg/tool", signers=(INTRUDER,))
    response = user_client.post(reverse("policy-new"), {"source": issue_policy(), "is_enabled": "on",
                                                         "action": "preview"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Dry run: require-sigstore-signatures" in page and "<b>2</b> would change status" in page
    assert "someone-else" in page and "not anchored" in page
    assert not Policy.objects.exists() and not Reevaluation.objects.exists()

    # htmx: only the dry-run fragment
    response = user_client.post(reverse("policy-new"), {"source": issue_policy(), "is_enabled": "on",
                                                         "action": "preview"}, HTTP_HX_REQUEST="true")
    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<section id="dry-run"') and "<html" not in fragment

    with django_capture_on_commit_callbacks() as callbacks:
        response = user_client.post(reverse("policy-new"), {"source": issue_policy(), "is_enabled": "on",
                                                             "action": "save"})
    policy = Policy.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("policy-detail", args=[policy.pk])
    assert Reevaluation.objects.get().cause == "policy" and len(callbacks) == 1  # the worker is nudged on commit


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda s: s.replace("kind: ClusterImagePolicy", "kind: ConfigMap"), "line 2: kind: not a ClusterImagePolicy"),
    (lambda s: s.replace("default allow = false", "default allow = = false"), "line 23: spec.authorities[1]"),
    (lambda s: s.replace("myorg/.*", "myorg/(.*"), "line 12: spec.authorities[0].keyless.identities[0]"),
])
def test_bad_input_is_refused_with_its_line_and_nothing_is_saved(user_client, edit, needle):
    for action in ("save", "preview"):
        response = user_client.post(reverse("policy-new"), {"source": edit(issue_policy()), "action": action},
                                    HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        assert needle in response.content.decode() and "Nothing was saved" in response.content.decode()
    assert not Policy.objects.exists() and not Reevaluation.objects.exists()


def test_evidence_text_is_escaped_on_the_trust_panel(user_client):
    fleet = make_fleet()
    evil = '<script>alert("x")</script>'
    artifact = fleet.image("myorg/app", signers=(f"https://github.com/myorg/{evil}",))
    services.save_policy(issue_policy().replace('subjectRegExp: "https://github.com/myorg/.*"',
                                                'subject: "https://github.com/myorg/app"'))
    services.evaluate_artifacts([artifact.pk], cause=Cause.EVIDENCE, detail=evil)
    page = user_client.get(reverse("artifact-place", args=[artifact.pk])).content.decode()
    assert 'id="policy-trust"' in page and "✘ untrusted" in page
    assert evil not in page and "&lt;script&gt;" in page
    timeline = user_client.get(reverse("artifact-trust", args=[artifact.digest]), follow=True).content.decode()
    assert "Policy change" not in timeline and "New evidence" in timeline and evil not in timeline


def test_index_panel_shows_platforms_and_the_rule(user_client):
    fleet = make_fleet()
    services.save_policy(issue_policy())
    index = fleet.index("myorg/multi", signers=(APP_WORKFLOW,), platforms={"linux/amd64": {}})
    services.evaluate_artifacts([index.pk], cause=Cause.EVIDENCE)
    page = user_client.get(reverse("artifact-place", args=[index.pk])).content.decode()
    assert 'id="index-rule"' in page and "worst of its own status" in page
    assert "covered by the index signature" in page


def test_policy_pages_list_export_and_delete(user_client, django_capture_on_commit_callbacks):
    policy = services.save_policy(issue_policy())
    listing = user_client.get(reverse("policy-list")).content.decode()
    assert "require-sigstore-signatures" in listing and "ghcr.io/myorg/**" in listing
    detail = user_client.get(reverse("policy-detail", args=[policy.pk])).content.decode()
    assert "policy-controller refuses such an authority" in detail
    exported = user_client.get(reverse("policy-export", args=[policy.pk]))
    assert exported.content.decode() == issue_policy() and exported["Content-Type"].startswith("application/yaml")
    normalized = user_client.get(reverse("policy-export", args=[policy.pk]) + "?normalized=1").content.decode()
    assert services.parse(normalized) == services.parse(issue_policy())
    jobs = user_client.get(reverse("policy-jobs"), HTTP_HX_REQUEST="true")
    assert jobs.status_code == 200  # a pending job: keep polling
    with django_capture_on_commit_callbacks():
        user_client.post(reverse("policy-delete", args=[policy.pk]))
    assert not Policy.objects.exists()
    assert Reevaluation.objects.filter(detail="policy require-sigstore-signatures deleted").exists()


def test_job_polling_stops_when_every_job_is_finished(user_client):
    Reevaluation.objects.create(cause=Cause.SCHEDULE, state=Reevaluation.State.DONE)
    assert user_client.get(reverse("policy-jobs"), HTTP_HX_REQUEST="true").status_code == 286


def test_coverage_per_source(user_client):
    fleet = make_fleet()
    services.save_policy(issue_policy())
    fleet.image("myorg/app", signers=(APP_WORKFLOW,), build_type="https://github.com/actions/runner",
                sbom_by=APP_WORKFLOW)
    fleet.image("myorg/tool", signers=(INTRUDER,))
    fleet.image("myorg/none")
    fleet.image("myorg/edited", signers=(APP_WORKFLOW,), tampered=True)
    (row,) = [c for c in services.coverage() if c.source == fleet.source]
    assert (row.images, row.signed, row.provenance, row.sbom, row.unknown_signers) == (4, 2, 1, 1, 1)
    assert row.shares["signed"] == 50
    page = user_client.get(reverse("coverage")).content.decode()
    assert "policy-fleet" in page and "someone-else" in page


def test_pages_need_login(client):
    assert client.get(reverse("policy-list")).status_code == 302
    assert client.get(reverse("coverage")).status_code == 302
