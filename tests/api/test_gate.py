"""The CI gate, ``GET /api/v1/check/``: answers from verdicts the real scan stored for the demo fleet."""

from __future__ import annotations

import time

import pytest

from provenance.artifacts.models import Artifact
from provenance.policies import services as policy_services
from provenance.policies.models import ArtifactTrust, Cause
from provenance.sources import services as source_services
from provenance.sources.models import Scan, Source
from tests.factories import UserFactory, run_scan_now

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

CHECK = "/api/v1/check/"

STATIC_FAIL_SIGNED = """apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: freeze-signed
spec:
  images:
    - glob: "**gate/fleet:signed"
  authorities:
    - name: frozen
      static:
        action: fail
"""


def check(api, image, **params):
    return api.get(CHECK, {"image": image, **params})


def test_signed_image_is_allowed_with_every_policy_listed(api, gate_fleet):
    response = check(api, gate_fleet.ref("signed"))
    assert response.status_code == 200
    body = response.json()
    assert body["allowed"] is True and body["pending"] is False
    assert (body["status"], body["digest"], body["resolved"]) == ("trusted", str(gate_fleet.images["signed"].digest),
                                                                  "digest")
    assert body["verified_at"] and body["evaluated_at"] and body["recomputed"] is False
    assert {(p["name"], p["mode"], p["result"]) for p in body["policies"]} == {
        ("release-signature", "enforce", "pass"), ("slsa-provenance", "warn", "pass")}
    assert body["warnings"] == []


@pytest.mark.parametrize(("tag", "status", "code"), [
    ("wrong-identity", "untrusted", "identity_mismatch"),
    ("tampered", "untrusted", "signature_invalid"),
    ("copied-signature", "untrusted", "digest_mismatch"),
    ("unsigned", "unsigned", "no_signature"),
])
def test_images_the_enforced_policy_refuses_are_denied_with_its_reasons(api, gate_fleet, tag, status, code):
    body = check(api, gate_fleet.ref(tag)).json()
    assert body["allowed"] is False and body["pending"] is False
    assert body["status"] == status, body
    [release] = [p for p in body["policies"] if p["name"] == "release-signature"]
    assert release["result"] == "fail" and release["reasons"], body
    assert body["code"] == code, body


def test_warn_mode_failure_allows_and_is_listed(api, gate_fleet):
    body = check(api, gate_fleet.ref("multiarch")).json()  # signed index and platforms, no SLSA provenance
    assert body["allowed"] is True and body["status"] == "warn"
    assert {(p["name"], p["result"]) for p in body["policies"]} == {("release-signature", "pass"),
                                                                   ("slsa-provenance", "fail")}
    assert body["warnings"] and body["warnings"][0].startswith("slsa-provenance (warn mode)")
    assert sorted(p["platform"] for p in body["platforms"]) == ["linux/amd64", "linux/arm64"]


def test_policy_filter_answers_under_that_policy_only(api, gate_fleet):
    signed = gate_fleet.ref("signed")
    # An enforced policy freezing the "signed" tag, added after the stored verdict: honoured at once, recomputed
    # from stored evidence (the background re-evaluation has not run).
    policy_services.save_policy(STATIC_FAIL_SIGNED)
    body = check(api, signed).json()
    assert body["allowed"] is False and body["recomputed"] is True
    assert "freeze-signed" in body["reason"]
    assert ArtifactTrust.objects.get(artifact__digest=body["digest"]).status == "trusted"  # nothing written
    under = check(api, signed, policy="release-signature").json()
    assert under["allowed"] is True and [p["name"] for p in under["policies"]] == ["release-signature"]
    frozen = check(api, signed, policy="freeze-signed").json()
    assert frozen["allowed"] is False and frozen["code"] == "policy_failed"
    assert "static action fail" in frozen["reason"]
    # A policy that does not cover the image does not allow it; a policy that does not exist is an error.
    elsewhere = check(api, gate_fleet.ref("unsigned"), policy="freeze-signed").json()
    assert elsewhere["allowed"] is False and elsewhere["code"] == "policy_not_applicable"
    missing = check(api, signed, policy="no-such-policy")
    assert missing.status_code == 404 and missing.json()["error"] == "policy_not_found"
    # Under the warn-mode policy a failure is reported, never a denial.
    warn = check(api, gate_fleet.ref("multiarch"), policy="slsa-provenance").json()
    assert warn["allowed"] is True and warn["status"] == "warn"


def test_deleted_policy_no_longer_decides(api, gate_fleet):
    wrong = gate_fleet.ref("wrong-identity")
    assert check(api, wrong).json()["allowed"] is False
    policy_services.delete_policy(policy_services.Policy.objects.get(name="release-signature"))
    body = check(api, wrong).json()
    # Only the warn-mode policy is left: it refuses the image but never denies.
    assert body["recomputed"] is True and body["allowed"] is True and body["status"] == "warn"


def test_trust_root_reevaluation_pending_recomputes(api, gate_fleet):
    policy_services.start_reevaluation(cause=Cause.TRUST_ROOT, detail="trust root changed")
    body = check(api, gate_fleet.ref("signed")).json()
    assert body["recomputed"] is True and body["allowed"] is True


def test_tag_is_resolved_from_stored_tags(api, gate_fleet):
    body = check(api, gate_fleet.tag_ref("signed")).json()
    assert body["resolved"] == "stored_tag" and body["allowed"] is True
    assert body["digest"] == str(gate_fleet.images["signed"].digest)
    assert body["reference"] == f"{gate_fleet.tag_ref('signed')}@{body['digest']}"
    assert check(api, gate_fleet.tag_ref("wrong-identity")).json()["allowed"] is False


def test_tag_not_stored_is_resolved_by_the_registry(api, gate_fleet):
    signed = gate_fleet.images["signed"]
    with gate_fleet.registry.client() as client:
        manifest = client.get_manifest("gate/fleet", signed.digest)
        client.push_manifest("gate/fleet", "release-2", manifest.data, manifest.media_type)
    body = check(api, gate_fleet.tag_ref("release-2")).json()
    assert body["resolved"] == "registry" and body["digest"] == str(signed.digest) and body["allowed"] is True
    missing = check(api, gate_fleet.tag_ref("never-pushed"))
    assert missing.status_code == 404 and missing.json()["error"] == "image_not_found"


def test_same_digest_in_another_repository_is_not_answered_from_this_one(api, gate_fleet):
    copy = gate_fleet.ref("signed", repository="gate/copy")  # byte-identical, never scanned there
    response = check(api, copy)
    assert response.status_code == 202
    body = response.json()
    assert body["pending"] is True and body["allowed"] is False and body["status"] == "unknown"
    # No source covers gate/copy: it is scanned with the defaults, the public-good trust root, to which the test
    # Sigstore's certificates do not chain. Nothing is trusted by accident of a missing configuration.
    scan = Scan.objects.select_related("source__trust_root").get(pk=body["scan"])
    assert scan.source.trust_root.name == "sigstore-public-good"
    run_scan_now(scan.source)
    body = check(api, copy).json()
    assert (body["allowed"], body["status"], body["code"]) == (False, "untrusted", "chain_untrusted")


def test_unknown_digest_queues_a_scan_and_is_pending_until_scanned(api, gate_fleet):
    reference = gate_fleet.push_unscanned("gate-unknown")
    response = check(api, reference)
    assert response.status_code == 202
    body = response.json()
    assert body["pending"] is True and body["allowed"] is False and body["code"] == "not_scanned"
    scan = Scan.objects.select_related("source").get(pk=body["scan"])
    assert scan.state == Scan.State.PENDING
    # The source is for exactly this digest, with the settings of the source that scans its repository.
    source = scan.source
    assert (source.kind, source.location) == (Source.Kind.IMAGE, reference)
    assert source.is_insecure and source.trust_root == gate_fleet.source.trust_root
    assert (source.expected_identity, source.expected_issuer) == (gate_fleet.source.expected_identity,
                                                                 gate_fleet.source.expected_issuer)
    # Asking again reuses the queued scan.
    assert check(api, reference).json()["scan"] == scan.pk
    assert Source.objects.filter(location=reference).count() == 1
    # Once scanned (in-process here; test_wait_* uses a worker), the gate answers from the stored verdict.
    run_scan_now(source)
    done = check(api, reference)
    assert done.status_code == 200
    assert done.json()["pending"] is False and done.json()["status"] == "unsigned" and done.json()["allowed"] is False


def test_digest_the_registry_does_not_have_is_not_found_and_creates_nothing(api, gate_fleet):
    reference = f"{gate_fleet.host}/gate/fleet@sha256:{'0' * 64}"
    response = check(api, reference)
    assert response.status_code == 404 and response.json()["error"] == "image_not_found"
    assert not Source.objects.filter(location=reference).exists()


def test_text_form_fails_curl_unless_allowed(api, gate_fleet):
    allowed = check(api, gate_fleet.ref("signed"), format="text")
    assert allowed.status_code == 200 and allowed["Content-Type"].startswith("text/plain")
    assert allowed.content.decode().startswith(f"allowed {gate_fleet.ref('signed')}: trusted")
    denied = check(api, gate_fleet.ref("wrong-identity"), format="text")
    assert denied.status_code == 403
    text = denied.content.decode()
    assert text.startswith("denied ") and "policy release-signature (enforce): fail:" in text
    pending = check(api, gate_fleet.push_unscanned("gate-text"), format="text")
    assert pending.status_code == 409 and pending.content.decode().startswith("pending ")
    bad = check(api, "Not A Reference", format="text")
    assert bad.status_code == 400 and bad.content.decode().startswith("error image_reference_invalid: ")
    by_header = api.get(CHECK, {"image": gate_fleet.ref("unsigned")}, HTTP_ACCEPT="text/plain")
    assert by_header.status_code == 403 and by_header.content.decode().startswith("denied ")


@pytest.mark.parametrize("image", ["", "UPPER/case:tag", "registry.example/app@sha256:abc",
                                   "registry.example/app:" + "t" * 200, "a" * 600])
def test_malformed_reference_is_a_400(api, image):
    response = check(api, image)
    assert response.status_code == 400
    assert response.json()["error"] == "image_reference_invalid"


def test_wait_is_bounded(api):
    response = check(api, "registry.example/app:1", wait="61")
    assert response.status_code == 400 and response.json()["error"] == "wait_invalid"


def test_anonymous_is_refused(client):
    assert client.get(CHECK, {"image": "registry.example/app:1"}).status_code in {401, 403}


def test_basic_auth_user_gets_an_answer(client, gate_fleet):
    import base64

    UserFactory(username="ci")
    token = base64.b64encode(b"ci:test-password").decode()
    response = client.get(CHECK, {"image": gate_fleet.ref("signed")}, HTTP_AUTHORIZATION=f"Basic {token}")
    assert response.status_code == 200 and response.json()["allowed"] is True


def test_artifact_from_an_oci_layout_is_never_answered_for_a_registry(api, gate_fleet):
    """The same repository name and digest stored from a layout (no registry) is another place."""
    signed = Artifact.objects.get(source=gate_fleet.source, digest=str(gate_fleet.images["signed"].digest))
    layout = Source.objects.create(name="layout", kind=Source.Kind.LAYOUT, location="/nonexistent/layout",
                                   trust_root=gate_fleet.source.trust_root)
    copy = Artifact.objects.create(source=layout, repository="gate/copy", digest=signed.digest, status="verified")
    ArtifactTrust.objects.create(artifact=copy, status="trusted", code="trusted", reason="layout copy",
                                 details={"status": "trusted", "policies": []}, evaluated_at=signed.checked_at)
    body = check(api, gate_fleet.ref("signed", repository="gate/copy")).json()
    assert body["pending"] is True and body["allowed"] is False


@pytest.mark.django_db(transaction=True)
def test_wait_returns_the_verdict_once_a_worker_stored_it(celery_worker, api, pushed_fleet, request):
    gate_fleet = request.getfixturevalue("gate_fleet")
    # gate/copy is registered as a source but was never scanned: the digest is unknown there until the worker
    # scans it (with that source's trust root and expected signer) and stores the verdict.
    source_services.create_source(
        name="gate-copy", kind=Source.Kind.REPOSITORY, location=f"{gate_fleet.host}/gate/copy",
        trust_root=gate_fleet.source.trust_root, expected_identity=gate_fleet.source.expected_identity,
        expected_issuer=gate_fleet.source.expected_issuer, is_insecure=True)
    reference = gate_fleet.ref("signed", repository="gate/copy")
    started = time.monotonic()
    response = check(api, reference, wait="60")
    assert response.status_code == 200, (response.json(), celery_worker.log()[-3000:])
    body = response.json()
    assert body["pending"] is False and body["allowed"] is True and body["status"] == "trusted", body
    assert time.monotonic() - started < 60
    assert "scan_source" in celery_worker.log()
    # The verdict is stored as soon as the image is judged; the scan row finishes a moment later.
    deadline = time.monotonic() + 20
    while Scan.objects.get(source__location=reference).state != Scan.State.DONE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert Scan.objects.get(source__location=reference).state == Scan.State.DONE


def test_registry_is_asked_with_the_credentials_of_a_source_for_that_repository_only(api, basic_auth_registry):
    from provenance.trust.models import TrustRoot
    from tests.plugins.registry import make_image, push_image

    with basic_auth_registry.authed_client() as client:
        digest = push_image(client, "gate/private", make_image("gate-private"), "1.0")
        push_image(client, "gate/elsewhere", make_image("gate-elsewhere"), "1.0")
    root = TrustRoot.objects.create(name="unused-root", document="{}")
    source_services.create_source(
        name="private", kind=Source.Kind.REPOSITORY, location=f"{basic_auth_registry.host}/gate/private",
        trust_root=root, is_insecure=True, username=basic_auth_registry.username,
        password=basic_auth_registry.password)
    response = check(api, f"{basic_auth_registry.host}/gate/private:1.0")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["resolved"] == "registry" and body["digest"] == str(digest) and body["pending"] is True
    queued = Scan.objects.select_related("source").get(pk=body["scan"]).source
    assert queued.has_credentials and queued.username == basic_auth_registry.username
    # Another repository on the same registry: no source covers it, so no credentials are sent, and the registry
    # refuses the anonymous request.
    refused = check(api, f"{basic_auth_registry.host}/gate/elsewhere:1.0")
    assert refused.status_code == 502 and refused.json()["error"] == "authentication_failed", refused.json()
