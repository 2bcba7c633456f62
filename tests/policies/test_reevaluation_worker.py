"""A policy edit re-evaluates the fleet in the background, on a real Celery worker, and leaves history."""

from __future__ import annotations

import time

import pytest

from provenance.policies import services
from provenance.policies.models import ArtifactTrust, Reevaluation, TrustEvent
from tests.policies.fleet import API_WORKFLOW, APP_WORKFLOW, INTRUDER, issue_policy, make_fleet

pytestmark = [pytest.mark.integration]


def _wait_for(job: Reevaluation, worker, timeout: float = 60) -> Reevaluation:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.is_finished:
            return job
        time.sleep(0.2)
    pytest.fail(f"re-evaluation #{job.pk} still {job.state} after {timeout}s:\n{worker.log()[-4000:]}")


def test_policy_edit_reevaluates_in_the_background_and_records_history(celery_worker):
    fleet = make_fleet()
    app = fleet.image("myorg/app", signers=(APP_WORKFLOW,))
    api = fleet.image("myorg/api", signers=(API_WORKFLOW,))
    intruder = fleet.image("myorg/tool", signers=(INTRUDER,))
    elsewhere = fleet.image("otherorg/app", signers=(APP_WORKFLOW,))

    policy = services.save_policy(issue_policy())
    first = _wait_for(Reevaluation.objects.get(), celery_worker)
    assert (first.state, first.cause, first.error) == ("done", "policy", "")
    # only the artifacts the policy's globs match were re-evaluated
    assert (first.total, first.changed) == (3, 3)
    assert not ArtifactTrust.objects.filter(artifact=elsewhere).exists()
    statuses = dict(ArtifactTrust.objects.values_list("artifact_id", "status"))
    assert statuses == {app.pk: "trusted", api.pk: "trusted", intruder.pk: "untrusted"}

    # Tighten the policy to the app workflow only: the api image flips, the others stay.
    tightened = issue_policy().replace('subjectRegExp: "https://github.com/myorg/.*"',
                                       f'subject: "{APP_WORKFLOW}"')
    services.save_policy(tightened, policy=policy)
    second = _wait_for(Reevaluation.objects.exclude(pk=first.pk).get(), celery_worker)
    assert (second.state, second.changed, second.detail) == ("done", 1, "policy require-sigstore-signatures "
                                                                        "edited (version 2)")
    assert ArtifactTrust.objects.get(artifact=api).status == "untrusted"
    history = list(TrustEvent.objects.filter(artifact=api).values_list("previous_status", "status", "cause",
                                                                        "detail"))
    assert history == [
        ("trusted", "untrusted", "policy", "policy require-sigstore-signatures edited (version 2)"),
        ("pending", "trusted", "policy", "policy require-sigstore-signatures imported"),
    ]
    assert TrustEvent.objects.filter(artifact=app).count() == 1  # unchanged status: no new history
    assert "someone-else" in TrustEvent.objects.get(artifact=intruder).reason

    # Running the same job again (a redelivered message) finds it claimed and does nothing.
    from provenance.policies.tasks import reevaluate

    reevaluate.delay(second.pk)
    time.sleep(1)
    assert TrustEvent.objects.count() == 4
