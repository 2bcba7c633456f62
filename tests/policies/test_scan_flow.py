"""The real path: the demo fleet (an OCI layout signed by the test Sigstore) scanned, then evaluated by policy."""

from __future__ import annotations

import pytest

from provenance.artifacts.models import Artifact
from provenance.core.demo import DEMO_IDENTITY, DEMO_ISSUER
from provenance.policies import services
from provenance.policies.models import ArtifactTrust, Cause, Policy
from provenance.sources import services as source_services
from provenance.sources.demo import load_demo

pytestmark = pytest.mark.django_db

DEMO_POLICY = f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: demo
spec:
  images:
    - glob: "oci-layout/demo-fleet*"
  authorities:
    - name: release-workflow
      keyless:
        url: https://fulcio.example
        identities:
          - issuer: {DEMO_ISSUER}
            subject: {DEMO_IDENTITY}
"""


def test_scanned_demo_fleet_gets_policy_verdicts_from_stored_evidence(tmp_path):
    demo = load_demo(tmp_path)
    Policy.objects.all().delete()  # this test brings its own policy instead of the demo's two
    assert source_services.claim_scan(demo.scan.pk)
    source_services.run_scan(demo.scan.pk)
    services.save_policy(DEMO_POLICY)
    ids = list(Artifact.objects.filter(source=demo.source).values_list("pk", flat=True))
    summary = services.evaluate_artifacts(ids, cause=Cause.EVIDENCE, detail=f"scan #{demo.scan.pk}")
    assert summary.evaluated == len(ids)
    expected = {"signed": "trusted", "unsigned": "unsigned", "wrong-identity": "untrusted", "tampered": "untrusted",
                "copied-signature": "untrusted", "multiarch": "trusted"}
    for image in demo.images:
        trust = ArtifactTrust.objects.get(artifact__source=demo.source, artifact__digest=str(image.digest))
        assert trust.status == expected[image.tag], (image.tag, trust.reason)
    copied = next(i for i in demo.images if i.tag == "copied-signature")
    assert ArtifactTrust.objects.get(artifact__digest=str(copied.digest)).code == "digest_mismatch"

    # A dry run of a policy requiring SLSA provenance built by the GitHub runner: only "signed" has it.
    draft = DEMO_POLICY + """      attestations:
        - name: provenance
          predicateType: https://slsa.dev/provenance/v1
          policy:
            type: rego
            data: |
              package sigstore
              default isCompliant = false
              isCompliant {
                input.predicate.buildDefinition.buildType == "https://github.com/actions/runner"
              }
"""
    report = services.dry_run(draft)
    flipped = {(f.repository, f.before, f.after) for f in report.flips}
    assert report.total == len(ids)
    assert all(after != "trusted" for _, _, after in flipped)
    signed = next(i for i in demo.images if i.tag == "signed")
    assert str(signed.digest) not in {f.digest for f in report.flips}
    multiarch = next(i for i in demo.images if i.tag == "multiarch")
    assert str(multiarch.digest) in {f.digest for f in report.flips}
