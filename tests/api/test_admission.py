"""The admission webhook, ``POST /api/v1/admission/``: AdmissionReview documents as the API server sends them
(``tests/api/admission/*.json``), answered from the verdicts the real scan stored for the demo fleet."""

from __future__ import annotations

import json

import pytest

from provenance.policies import gate
from provenance.sources.models import Scan, Source
from tests.api.conftest import load_review

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

ADMISSION = "/api/v1/admission/"


def review(api, document):
    response = api.post(ADMISSION, data=json.dumps(document), content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["apiVersion"], body["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert body["response"]["uid"] == document["request"]["uid"]
    return body["response"]


def test_deployment_with_one_refused_container_is_denied_naming_it(api, gate_fleet):
    document = load_review("deployment-two-containers.json", signed=gate_fleet.ref("signed"),
                           wrong_identity=gate_fleet.ref("wrong-identity"))
    answer = review(api, document)
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    message = answer["status"]["message"]
    assert message.startswith("Provenance denied Deployment shop-web: ")
    assert f"containers[log-shipper] {gate_fleet.ref('wrong-identity')}: untrusted:" in message
    assert "someone-else/fork" in message  # who signed it instead
    assert "containers[web]" not in message


def test_deployment_with_trusted_containers_is_allowed(api, gate_fleet):
    document = load_review("deployment-two-containers.json", signed=gate_fleet.ref("signed"),
                           wrong_identity=gate_fleet.tag_ref("signed"))
    answer = review(api, document)
    assert answer == {"uid": document["request"]["uid"], "allowed": True}


def test_pod_init_container_is_checked(api, gate_fleet):
    document = load_review("pod-init-container.json", init=gate_fleet.ref("unsigned"), main=gate_fleet.ref("signed"))
    answer = review(api, document)
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert message.startswith("Provenance denied Pod shop-db-migrate-7c9d5f8b6-: ")
    assert "initContainers[migrate]" in message and "unsigned:" in message and "containers[db-proxy]" not in message


def test_cronjob_pod_template_is_checked(api, gate_fleet):
    allowed = review(api, load_review("cronjob.json", image=gate_fleet.ref("signed")))
    assert allowed["allowed"] is True
    denied = review(api, load_review("cronjob.json", image=gate_fleet.ref("tampered")))
    assert denied["allowed"] is False and "containers[report]" in denied["status"]["message"]


def test_ephemeral_debug_container_is_checked(api, gate_fleet):
    document = load_review("pod-ephemeral-container.json", main=gate_fleet.ref("signed"),
                           debug=gate_fleet.ref("copied-signature"))
    answer = review(api, document)
    assert answer["allowed"] is False
    assert "ephemeralContainers[debugger-r4b2m]" in answer["status"]["message"]


def test_warn_mode_failure_is_allowed_with_a_warning(api, gate_fleet):
    answer = review(api, load_review("statefulset.json", image=gate_fleet.ref("multiarch")))
    assert answer["allowed"] is True and "status" not in answer
    [warning] = answer["warnings"]
    assert warning.startswith(f"{gate_fleet.ref('multiarch')}: slsa-provenance (warn mode): ")
    assert len(warning) <= gate.MAX_WARNING_CHARS


def test_unknown_image_is_denied_by_default_and_a_scan_is_queued(api, gate_fleet, settings):
    assert settings.PROVENANCE_ADMISSION_UNKNOWN == "deny"
    image = gate_fleet.push_unscanned("admission-unknown-deny")
    answer = review(api, load_review("daemonset.json", image=image, dry_run="false"))
    assert answer["allowed"] is False
    assert "unknown: Provenance has not verified this image yet (scan #" in answer["status"]["message"]
    assert Scan.objects.filter(source__location=image, state=Scan.State.PENDING).count() == 1


def test_unknown_image_is_allowed_with_a_warning_when_configured(api, gate_fleet, settings):
    settings.PROVENANCE_ADMISSION_UNKNOWN = "allow"
    image = gate_fleet.push_unscanned("admission-unknown-allow")
    answer = review(api, load_review("daemonset.json", image=image, dry_run="false"))
    assert answer["allowed"] is True
    [warning] = answer["warnings"]
    assert "admitted unverified (PROVENANCE_ADMISSION_UNKNOWN=allow)" in warning
    assert Scan.objects.filter(source__location=image).count() == 1
    # A known, refused image is still refused: "allow" is for images not seen yet only.
    refused = review(api, load_review("daemonset.json", image=gate_fleet.ref("unsigned"), dry_run="false"))
    assert refused["allowed"] is False


def test_dry_run_queues_nothing(api, gate_fleet):
    image = gate_fleet.push_unscanned("admission-dry-run")
    answer = review(api, load_review("daemonset.json", image=image, dry_run="true"))
    assert answer["allowed"] is False and "no scan queued (dry run)" in answer["status"]["message"]
    assert not Source.objects.filter(location=image).exists()


def test_tag_is_resolved_by_default(api, gate_fleet, settings):
    assert settings.PROVENANCE_ADMISSION_TAGS == "resolve"
    assert review(api, load_review("job-tag-only.json", image=gate_fleet.tag_ref("signed")))["allowed"] is True
    denied = review(api, load_review("job-tag-only.json", image=gate_fleet.tag_ref("wrong-identity")))
    assert denied["allowed"] is False


def test_tag_is_denied_when_digests_are_required(api, gate_fleet, settings):
    settings.PROVENANCE_ADMISSION_TAGS = "deny"
    denied = review(api, load_review("job-tag-only.json", image=gate_fleet.tag_ref("signed")))
    assert denied["allowed"] is False
    assert "a tag without a digest is not admitted (PROVENANCE_ADMISSION_TAGS=deny)" in denied["status"]["message"]
    pinned = f"{gate_fleet.tag_ref('signed')}@{gate_fleet.images['signed'].digest}"
    assert review(api, load_review("job-tag-only.json", image=pinned))["allowed"] is True


def test_delete_is_not_judged(api):
    document = load_review("pod-delete.json")
    assert review(api, document) == {"uid": document["request"]["uid"], "allowed": True}


def test_other_kinds_are_allowed_with_a_warning(api):
    document = load_review("cronjob.json", image="registry.example/app:1")
    document["request"]["kind"] = {"group": "", "version": "v1", "kind": "ConfigMap"}
    answer = review(api, document)
    assert answer["allowed"] is True and answer["warnings"] == ["Provenance does not check ConfigMap objects"]


def test_replicaset_and_replication_controller_templates():
    template = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "r.example/a:1"}],
                                               "initContainers": [{"name": "i", "image": "r.example/i:1"}]}}}}
    for kind in ({"group": "apps", "kind": "ReplicaSet"}, {"group": "", "kind": "ReplicationController"}):
        assert gate.pod_images(kind, template) == [("initContainers[i]", "r.example/i:1"),
                                                   ("containers[a]", "r.example/a:1")]


def test_malformed_image_reference_is_denied(api, gate_fleet):
    answer = review(api, load_review("cronjob.json", image="Not A Reference"))
    assert answer["allowed"] is False and "not an image reference" in answer["status"]["message"]


@pytest.mark.parametrize("mutate", [
    lambda d: d["request"].pop("uid"),
    lambda d: d.update(apiVersion="admission.k8s.io/v1beta1"),
    lambda d: d.update(request=[]),
    lambda d: d["request"].update(operation="PATCH"),
    lambda d: d["request"]["object"]["spec"].update(containers="web"),
    lambda d: d["request"]["object"].pop("spec"),
])
def test_malformed_review_is_a_400(api, mutate):
    document = load_review("pod-init-container.json", init="r.example/a:1", main="r.example/b:1")
    mutate(document)
    response = api.post(ADMISSION, data=json.dumps(document), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "admission_review_invalid"


def test_review_fixture_without_uid_and_non_json_are_400(api):
    fixture = load_review("malformed-no-uid.json")
    response = api.post(ADMISSION, data=json.dumps(fixture), content_type="application/json")
    assert response.status_code == 400 and response.json()["error"] == "admission_review_invalid"
    garbage = api.post(ADMISSION, data="{not json", content_type="application/json")
    assert garbage.status_code == 400 and garbage.json()["error"] == "parse_error"


def test_bad_setting_is_a_configuration_error(api, settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.PROVENANCE_ADMISSION_UNKNOWN = "maybe"
    with pytest.raises(ImproperlyConfigured, match="PROVENANCE_ADMISSION_UNKNOWN must be one of allow, deny"):
        gate.review_admission(load_review("pod-delete.json"))


def test_anonymous_is_refused(client):
    response = client.post(ADMISSION, data=json.dumps(load_review("pod-delete.json")),
                           content_type="application/json")
    assert response.status_code in {401, 403}
