"""Policies evaluated against a fleet signed by the test Sigstore, from stored evidence."""

from __future__ import annotations

import pytest

from provenance.policies import services
from provenance.policies.models import ArtifactTrust, Cause, Policy, TrustEvent
from tests.policies.fleet import (
    API_WORKFLOW,
    APP_WORKFLOW,
    INTRUDER,
    RUNNER,
    issue_policy,
    make_fleet,
    workflow,
)

pytestmark = pytest.mark.django_db


def _status(artifact) -> tuple[str, str, str]:
    trust = ArtifactTrust.objects.get(artifact=artifact)
    return trust.status, trust.code, trust.reason


def _policy(name: str, body: str, *, images: str = "ghcr.io/myorg/**", mode: str = "enforce") -> str:
    return (f"apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: {name}\n"
            f"spec:\n  mode: {mode}\n  images:\n    - glob: \"{images}\"\n  authorities:\n{body}")


KEYLESS_MYORG = """    - keyless:
        url: https://fulcio.sigstore.dev
        identities:
          - issuer: https://token.actions.githubusercontent.com
            subjectRegExp: "^https://github\\\\.com/myorg/[^/]+/\\\\.github/workflows/release\\\\.yml@refs/heads/main$"
"""


@pytest.fixture
def fleet():
    return make_fleet()


def test_issue_policy_over_a_fleet_with_matching_and_non_matching_identities_and_build_types(fleet):
    # The policy from the issue, imported as written.
    services.save_policy(issue_policy())
    images = {
        # authority 0: a signature by a myorg workflow (the source expects only myorg/app; the policy any myorg)
        "app": fleet.image("myorg/app", signers=(APP_WORKFLOW,), build_type="https://example.com/other"),
        "api": fleet.image("myorg/api", signers=(API_WORKFLOW,)),
        # a signature by someone else: authority 0 refuses; no attestation for authority 1
        "intruder": fleet.image("myorg/tool", signers=(INTRUDER,)),
        # no signature; authority 1: SLSA provenance by a myorg workflow, built by the GitHub runner: passes
        "provenance-only": fleet.image("myorg/worker", build_type=RUNNER, attester=API_WORKFLOW),
        # no signature; provenance with another build type: Rego denies
        "wrong-build": fleet.image("myorg/batch", build_type="https://example.com/other"),
        # no signature; provenance with the right build type but attested by someone else: signer refused
        "intruder-provenance": fleet.image("myorg/cron", build_type=RUNNER, attester=INTRUDER),
        "unsigned": fleet.image("myorg/nothing"),
        # not covered by the policy's glob
        "elsewhere": fleet.image("otherorg/app", signers=(APP_WORKFLOW,)),
        # a signature edited after signing
        "tampered": fleet.image("myorg/edited", signers=(APP_WORKFLOW,), tampered=True),
    }
    summary = services.evaluate_artifacts([a.pk for a in images.values()], cause=Cause.EVIDENCE, detail="scan #1")
    assert summary.evaluated == len(images)

    assert _status(images["app"])[:2] == ("trusted", "trusted")
    assert "via authority-0" in _status(images["app"])[2]
    assert _status(images["api"])[0] == "trusted"
    assert _status(images["provenance-only"])[0] == "trusted"
    assert "via authority-1" in _status(images["provenance-only"])[2]

    status, code, reason = _status(images["intruder"])
    assert (status, code) == ("untrusted", "identity_mismatch")
    assert "someone-else" in reason and "attestation 'slsa-provenance': no https://slsa.dev/provenance/v1" in reason

    status, code, reason = _status(images["wrong-build"])
    assert status == "untrusted" and "rego_denied" in str(ArtifactTrust.objects.get(artifact=images["wrong-build"])
                                                          .details)
    assert "data.sigstore.allow is false" in reason

    status, _, reason = _status(images["intruder-provenance"])
    assert status == "untrusted" and "someone-else" in reason

    assert _status(images["unsigned"])[:2] == ("unsigned", "no_signature")
    assert _status(images["elsewhere"])[:2] == ("untrusted", "no_policy")
    status, code, reason = _status(images["tampered"])
    assert status == "untrusted" and code == "signature_invalid" and "does not verify" in reason

    # history: one event per artifact, from pending, with the cause
    events = TrustEvent.objects.filter(artifact=images["app"])
    assert [(e.previous_status, e.status, e.cause, e.detail) for e in events] == [
        ("pending", "trusted", "evidence", "scan #1")]
    # evaluating again changes nothing and writes no history
    again = services.evaluate_artifacts([a.pk for a in images.values()], cause=Cause.SCHEDULE)
    assert again.changed == 0 and TrustEvent.objects.count() == len(images)


def test_rego_allow_and_deny_inside_a_keyless_authority(fleet):
    body = KEYLESS_MYORG + """      attestations:
        - name: built-by-runner
          predicateType: slsaprovenance1
          policy:
            type: rego
            data: |
              package sigstore
              default isCompliant = false
              isCompliant {
                input.predicate.buildDefinition.buildType == "https://github.com/actions/runner"
              }
"""
    services.save_policy(_policy("provenance-required", body))
    good = fleet.image("myorg/app", signers=(APP_WORKFLOW,), build_type=RUNNER)
    bad = fleet.image("myorg/app", signers=(APP_WORKFLOW,), build_type="https://example.com/evil-builder", tag="v2")
    signature_only = fleet.image("myorg/app", signers=(APP_WORKFLOW,), tag="v3")
    services.evaluate_artifacts([good.pk, bad.pk, signature_only.pk], cause=Cause.EVIDENCE)
    assert _status(good)[0] == "trusted"
    status, code, reason = _status(bad)
    assert (status, code) == ("untrusted", "rego_denied") and "data.sigstore.isCompliant is false" in reason
    # attestations replace the signature requirement of their authority (as in policy-controller)
    assert _status(signature_only)[:2] == ("untrusted", "attestation_missing")


def test_warn_mode_reports_warn_instead_of_untrusted(fleet):
    services.save_policy(_policy("watch-only", KEYLESS_MYORG, mode="warn"))
    intruder = fleet.image("myorg/app", signers=(INTRUDER,))
    fine = fleet.image("myorg/app", signers=(APP_WORKFLOW,), tag="v2")
    services.evaluate_artifacts([intruder.pk, fine.pk], cause=Cause.EVIDENCE)
    status, code, reason = _status(intruder)
    assert (status, code) == ("warn", "identity_mismatch") and reason.startswith("warn mode:")
    assert _status(fine)[0] == "trusted"


def test_warn_policy_does_not_hide_an_enforce_policy_failure(fleet):
    services.save_policy(_policy("watch-only", KEYLESS_MYORG, mode="warn"))
    services.save_policy(_policy("only-api", f"""    - keyless:
        url: https://fulcio.sigstore.dev
        identities:
          - issuer: https://token.actions.githubusercontent.com
            subject: "{API_WORKFLOW}"
"""))
    app = fleet.image("myorg/app", signers=(APP_WORKFLOW,))
    services.evaluate_artifacts([app.pk], cause=Cause.EVIDENCE)
    status, _, reason = _status(app)
    assert status == "untrusted" and "only-api" in reason


def test_several_authorities_are_ored(fleet):
    body = f"""    - name: app-team
      keyless:
        url: https://fulcio.sigstore.dev
        identities:
          - issuer: https://token.actions.githubusercontent.com
            subject: "{APP_WORKFLOW}"
    - name: api-team
      keyless:
        url: https://fulcio.sigstore.dev
        identities:
          - issuer: https://token.actions.githubusercontent.com
            subject: "{API_WORKFLOW}"
"""
    services.save_policy(_policy("two-teams", body))
    by_app = fleet.image("myorg/app", signers=(APP_WORKFLOW,))
    by_api = fleet.image("myorg/api", signers=(API_WORKFLOW,))
    by_both_and_intruder = fleet.image("myorg/x", signers=(INTRUDER, API_WORKFLOW))
    by_other = fleet.image("myorg/y", signers=(workflow("myorg/y"),))
    services.evaluate_artifacts([a.pk for a in (by_app, by_api, by_both_and_intruder, by_other)],
                                cause=Cause.EVIDENCE)
    assert ArtifactTrust.objects.get(artifact=by_app).details["policies"][0]["matched"] == "app-team"
    assert ArtifactTrust.objects.get(artifact=by_api).details["policies"][0]["matched"] == "api-team"
    assert _status(by_both_and_intruder)[0] == "trusted"
    status, _, reason = _status(by_other)
    assert status == "untrusted" and "app-team:" in reason and "api-team:" in reason


def test_regexp_identities_match_as_policy_controller_does(fleet):
    body = """    - keyless:
        url: https://fulcio.sigstore.dev
        identities:
          - issuerRegExp: "^https://token\\\\.actions\\\\.githubusercontent\\\\.com$"
            subjectRegExp: "^https://github\\\\.com/myorg/(app|api)/"
"""
    services.save_policy(_policy("regexp", body))
    app = fleet.image("myorg/app", signers=(APP_WORKFLOW,))
    other = fleet.image("myorg/web", signers=(workflow("myorg/web"),))
    services.evaluate_artifacts([app.pk, other.pk], cause=Cause.EVIDENCE)
    assert _status(app)[0] == "trusted"
    status, code, reason = _status(other)
    assert (status, code) == ("untrusted", "identity_mismatch") and "myorg/web" in reason


def test_key_authority_reverifies_the_stored_layer_with_the_policy_key(fleet):
    body = """    - key:
        data: |
{}""".format("".join(f"          {line}\n" for line in fleet.public_key_pem.splitlines()))
    services.save_policy(_policy("by-key", body))
    key_signed = fleet.image("myorg/app", key_signed=True)
    keyless = fleet.image("myorg/app", signers=(APP_WORKFLOW,), tag="v2")
    services.evaluate_artifacts([key_signed.pk, keyless.pk], cause=Cause.EVIDENCE)
    # the scan could not verify it (no key configured on the source); the policy's key does
    assert key_signed.evidence.get().outcome != "verified"
    assert _status(key_signed)[:2] == ("trusted", "trusted")
    assert _status(keyless)[:2] == ("untrusted", "not_key_signed")


def test_unlogged_key_signatures_pass_only_an_authority_that_opts_in_with_ignore_tlog(fleet):
    key = "".join(f"          {line}\n" for line in fleet.public_key_pem.splitlines())
    strict = services.save_policy(_policy("by-key", f"    - key:\n        data: |\n{key}"))
    unlogged = fleet.image("myorg/app", key_signed=True, unlogged=True)
    accepted_by_source = fleet.image("myorg/app", key_signed=True, unlogged=True, source_keys=True, tag="v2")
    assert accepted_by_source.evidence.get().tlog == "not_logged"  # the source's opt-in verified it
    services.evaluate_artifacts([unlogged.pk, accepted_by_source.pk], cause=Cause.EVIDENCE)
    assert _status(unlogged)[:2] == ("untrusted", "tlog_missing")
    assert _status(accepted_by_source)[:2] == ("untrusted", "tlog_missing")  # the policy did not opt in

    relaxed = strict.source.replace("    - key:", "    - ignoreTlog: true\n      key:", 1)
    parsed = services.parse(relaxed)
    assert parsed.authorities[0].ignore_tlog and any("INSECURE" in str(w) for w in parsed.warnings)
    services.save_policy(relaxed, policy=strict)
    services.evaluate_artifacts([unlogged.pk, accepted_by_source.pk], cause=Cause.POLICY)
    assert _status(unlogged)[:2] == _status(accepted_by_source)[:2] == ("trusted", "trusted")


def test_named_key_authority_and_missing_key_is_an_error(fleet):
    body = """    - key:
        secretRef:
          name: release-key
"""
    services.save_policy(_policy("named-key", body))
    key_signed = fleet.image("myorg/app", key_signed=True)
    services.evaluate_artifacts([key_signed.pk], cause=Cause.EVIDENCE)
    assert _status(key_signed)[:2] == ("error", "key_missing")
    # registering the key re-evaluates in the background; here we evaluate in-process
    from provenance.trust import services as trust_services

    trust_services.add_public_key(name="release-key", pem=fleet.public_key_pem.encode())
    services.public_key_changed("release-key")
    services.evaluate_artifacts([key_signed.pk], cause=Cause.POLICY, detail="key registered")
    assert _status(key_signed)[0] == "trusted"
    assert list(TrustEvent.objects.filter(artifact=key_signed).values_list("previous_status", "status")) == [
        ("error", "trusted"), ("pending", "error")]


def test_trust_root_ref_must_name_the_root_that_issued_the_certificate(fleet):
    from provenance.trust import services as trust_services
    from tests.factories import make_sigstore

    other = make_sigstore("another-sigstore")
    trust_services.register(name="another-sigstore", document=other.trusted_root_json())
    body = """    - keyless:
        url: https://fulcio.example
        trustRootRef: %s
        identities:
          - issuer: https://token.actions.githubusercontent.com
            subject: "%s"
"""
    app = fleet.image("myorg/app", signers=(APP_WORKFLOW,))
    services.save_policy(_policy("other-root", body % ("another-sigstore", APP_WORKFLOW)))
    services.evaluate_artifacts([app.pk], cause=Cause.EVIDENCE)
    status, code, reason = _status(app)
    assert status == "untrusted" and code == "chain_untrusted" and "does not chain" in reason
    services.save_policy(_policy("other-root", body % (fleet.root.name, APP_WORKFLOW)),
                         policy=Policy.objects.get(name="other-root"))
    services.evaluate_artifacts([app.pk], cause=Cause.POLICY)
    assert _status(app)[0] == "trusted"


def test_index_status_follows_its_own_signature_and_its_platforms(fleet):
    services.save_policy(_policy("myorg", KEYLESS_MYORG))
    # `cosign sign` without --recursive: platforms have no signature of their own, the index pins them
    signed_index = fleet.index("myorg/multi", signers=(APP_WORKFLOW,),
                               platforms={"linux/amd64": {}, "linux/arm64": {}})
    # --recursive, but one platform signed by an intruder: a real finding
    mixed = fleet.index("myorg/mixed", signers=(APP_WORKFLOW,),
                        platforms={"linux/amd64": {"signers": (APP_WORKFLOW,)},
                                   "linux/arm64": {"signers": (INTRUDER,)}})
    # platforms signed, index not: policy-controller checks the index digest
    unsigned_index = fleet.index("myorg/loose", platforms={"linux/amd64": {"signers": (APP_WORKFLOW,)}})
    services.evaluate_artifacts([signed_index.pk, mixed.pk, unsigned_index.pk], cause=Cause.EVIDENCE)

    trust = ArtifactTrust.objects.get(artifact=signed_index)
    assert trust.status == "trusted"
    assert [(p["platform"], p["status"]) for p in trust.details["platforms"]] == [
        ("linux/amd64", "trusted"), ("linux/arm64", "trusted")]
    assert "covered by the index signature" in trust.details["platforms"][0]["note"]
    amd64 = signed_index.children.get(platform="linux/amd64")
    assert _status(amd64)[0] == "unsigned"  # deployed by its own digest, nothing vouches for it

    status, code, reason = _status(mixed)
    assert (status, code) == ("untrusted", "identity_mismatch") and reason.startswith("platform linux/arm64:")
    assert _status(unsigned_index)[:2] == ("unsigned", "no_signature")


def test_evaluating_a_platform_re_evaluates_its_index(fleet):
    services.save_policy(_policy("myorg", KEYLESS_MYORG))
    index = fleet.index("myorg/multi", signers=(APP_WORKFLOW,), platforms={"linux/amd64": {}})
    platform = index.children.get()
    services.evaluate_artifacts([platform.pk], cause=Cause.EVIDENCE)
    assert _status(index)[0] == "trusted"


def test_unsupported_evidence_only_is_an_error_not_untrusted(fleet):
    from provenance.artifacts.models import Evidence

    services.save_policy(_policy("myorg", KEYLESS_MYORG))
    notation = fleet.image("myorg/notary")
    Evidence.objects.create(artifact=notation, kind="signature", format="notation", location="referrers",
                            digest="sha256:" + "1" * 64, evidence_key="1" * 64, covers_digest=notation.digest,
                            outcome="unsupported",
                            checks=[{"stage": "unsupported", "code": "notation_unsupported", "ok": False,
                                     "message": "Provenance does not verify notation evidence", "hint": ""}])
    services.evaluate_artifacts([notation.pk], cause=Cause.EVIDENCE)
    assert _status(notation)[:2] == ("error", "could_not_check")


def test_disabled_and_deleted_policies_no_longer_apply(fleet):
    policy = services.save_policy(_policy("myorg", KEYLESS_MYORG))
    app = fleet.image("myorg/app", signers=(APP_WORKFLOW,))
    services.evaluate_artifacts([app.pk], cause=Cause.EVIDENCE)
    assert _status(app)[0] == "trusted"
    services.save_policy(policy.source, policy=policy, enabled=False)
    services.evaluate_artifacts([app.pk], cause=Cause.POLICY)
    assert _status(app)[:2] == ("untrusted", "no_policy")


def test_a_stored_policy_that_no_longer_parses_makes_its_images_error_not_silently_skipped(fleet):
    policy = services.save_policy(_policy("myorg", KEYLESS_MYORG))
    app = fleet.image("myorg/app", signers=(APP_WORKFLOW,))
    outside = fleet.image("other/app", signers=(APP_WORKFLOW,))
    services.evaluate_artifacts([app.pk, outside.pk], cause=Cause.EVIDENCE)
    assert _status(app)[0] == "trusted" and _status(outside)[:2] == ("untrusted", "no_policy")

    # A regexp this version refuses (as if a later Provenance tightened the parser): the globs are still readable.
    refused = policy.source.replace('subjectRegExp: "^', 'subjectRegExp: "(^', 1)
    assert refused != policy.source
    Policy.objects.filter(pk=policy.pk).update(source=refused)
    services.evaluate_artifacts([app.pk, outside.pk], cause=Cause.POLICY)
    status, code, reason = _status(app)
    assert (status, code) == ("error", "policy_unreadable") and "myorg" in reason and "no longer parses" in reason
    assert _status(outside)[:2] == ("untrusted", "no_policy")  # not covered by the policy's globs

    # Not even YAML: nothing tells which images it covered, so it covers every image.
    Policy.objects.filter(pk=policy.pk).update(source="spec: [unclosed")
    services.evaluate_artifacts([app.pk, outside.pk], cause=Cause.POLICY)
    assert _status(app)[:2] == _status(outside)[:2] == ("error", "policy_unreadable")


def _bundle_image(fleet, repository: str, raw_for) -> object:
    """An image whose one signature is a Sigstore bundle over its manifest (as a referrer holds it)."""
    import datetime as dt
    import os

    from provenance.artifacts import services as artifact_services
    from provenance.artifacts.models import Artifact
    from provenance.core import verify
    from provenance.core.discovery import FoundEvidence
    from provenance.core.types import Digest, IdentityPolicy, SignedLayer

    manifest = os.urandom(64)
    digest = Digest.of(manifest)
    artifact = Artifact.objects.create(source=fleet.source, repository=repository, digest=str(digest),
                                       media_type="application/vnd.oci.image.manifest.v1+json", status="verified",
                                       checked_at=dt.datetime.now(dt.UTC))
    raw = raw_for(manifest)
    layer = SignedLayer("application/vnd.dev.sigstore.bundle.v0.3+json", raw, {})
    found = FoundEvidence(kind="signature", format="sigstore-bundle", location="referrers", covers=digest,
                          level="image", digest=layer.digest, layer=layer)
    expected = IdentityPolicy(issuer=fleet.source.expected_issuer, identity=fleet.source.expected_identity)
    artifact_services.store_evidence(artifact, verify.verify_evidence(found, trust_root=fleet.core_root,
                                                                      identity=expected))
    return artifact


def test_key_authorities_and_trust_root_refs_reverify_bundle_evidence_too(fleet):
    from provenance.core.testsigstore import GITHUB_ACTIONS_ISSUER
    from provenance.trust import services as trust_services
    from tests.factories import make_sigstore

    key = "".join(f"          {line}\n" for line in fleet.public_key_pem.splitlines())
    services.save_policy(_policy("by-key", f"    - key:\n        data: |\n{key}", images="ghcr.io/myorg/keyed"))
    key_bundle = _bundle_image(fleet, "myorg/keyed",
                               lambda manifest: fleet.sigstore.sign_blob_bundle_with_key(manifest, fleet.key))
    other = make_sigstore("bundle-other-root")
    trust_services.register(name="bundle-other-root", document=other.trusted_root_json())
    keyless = f"""    - keyless:
        trustRootRef: bundle-other-root
        identities:
          - issuer: {GITHUB_ACTIONS_ISSUER}
            subject: "{APP_WORKFLOW}"
"""
    services.save_policy(_policy("other-root", keyless, images="ghcr.io/myorg/elsewhere"))
    elsewhere = _bundle_image(fleet, "myorg/elsewhere", lambda manifest: other.sign_blob_bundle(
        manifest, identity=APP_WORKFLOW, issuer=GITHUB_ACTIONS_ISSUER))

    # the scan could verify neither: no key on the source, and the other root is not the source's
    assert key_bundle.evidence.get().outcome != "verified" and elsewhere.evidence.get().outcome != "verified"
    services.evaluate_artifacts([key_bundle.pk, elsewhere.pk], cause=Cause.EVIDENCE)

    assert _status(key_bundle)[:2] == ("trusted", "trusted")
    assert _status(elsewhere)[:2] == ("trusted", "trusted")
