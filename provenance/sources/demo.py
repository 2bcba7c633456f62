"""Load the demo: the test Sigstore's trust root, the demo fleet as an OCI layout source, and a demo admin."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured

from provenance.core.demo import DEMO_IDENTITY, DEMO_ISSUER, DemoImage, build_demo_fleet
from provenance.core.testsigstore import TestSigstore
from provenance.policies import services as policy_services
from provenance.policies.models import Policy
from provenance.sources import services
from provenance.sources.models import Scan, Source
from provenance.trust import services as trust_services
from provenance.trust.models import TrustRoot

DEMO_ROOT_NAME = "provenance-demo"
DEMO_SOURCE_NAME = "demo-fleet"
DEMO_USERNAME = "admin"
# Two policy-controller ClusterImagePolicies for the demo fleet: the release workflow must sign (enforced), and
# should also attest SLSA provenance built by GitHub Actions (warn only: the multi-arch image has none).
DEMO_POLICIES = (
    f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: demo-release-signature
spec:
  images:
    - glob: "oci-layout/{DEMO_SOURCE_NAME}"
  authorities:
    - name: release-workflow
      keyless:
        identities:
          - issuer: "{DEMO_ISSUER}"
            subject: "{DEMO_IDENTITY}"
""",
    f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: demo-slsa-provenance
spec:
  mode: warn
  images:
    - glob: "oci-layout/{DEMO_SOURCE_NAME}"
  authorities:
    - name: release-workflow-provenance
      keyless:
        identities:
          - issuer: "{DEMO_ISSUER}"
            subject: "{DEMO_IDENTITY}"
      attestations:
        - name: slsa-provenance
          predicateType: https://slsa.dev/provenance/v1
          policy:
            type: rego
            data: |
              package sigstore
              default allow = false
              allow {{
                input.predicate.buildDefinition.buildType == "https://github.com/actions/runner"
              }}
""",
)


@dataclass(frozen=True, slots=True)
class Demo:
    source: Source
    scan: Scan
    images: list[DemoImage]
    username: str
    password: str


def load_demo(data_dir: Path) -> Demo:
    """Create (once) the demo Sigstore and fleet under ``data_dir/demo`` and register them; start a scan.

    The admin's password is new on every call and returned so that the caller can print it. Refuses to run
    outside demo, debug or test mode: the test Sigstore's keys lie on disk unencrypted.
    """
    if not (settings.DEMO or settings.DEBUG or settings.TESTING):
        raise ImproperlyConfigured("the demo uses an insecure test Sigstore: set PROVENANCE_DEMO=1 to load it")
    base = data_dir / "demo"
    sigstore_dir, layout_dir = base / "sigstore", base / "demo-fleet"
    if (sigstore_dir / "state.json").exists() or any(sigstore_dir.glob("*")):
        sigstore = TestSigstore.load(sigstore_dir)
    else:
        sigstore = TestSigstore.create(name=DEMO_ROOT_NAME)
        sigstore.save(sigstore_dir)
    images_file = base / "images.txt"
    if not (layout_dir / "index.json").exists() or not images_file.exists():
        images = build_demo_fleet(layout_dir, sigstore)
        images_file.write_text("".join(f"{i.tag}\t{i.digest}\t{i.expected_status}\t{i.description}\n"
                                       for i in images))
    else:
        from provenance.core.types import Digest

        images = []
        for line in images_file.read_text().splitlines():
            tag, digest, expected, description = line.split("\t")
            images.append(DemoImage(tag, Digest.parse(digest), expected, description))
    trust_services.ensure_builtin_roots()
    root = trust_services.register(
        name=DEMO_ROOT_NAME,
        document=sigstore.trusted_root_json(),
        kind=TrustRoot.Kind.PRIVATE,
        description="The demo's private test Sigstore (test tooling: never trust it for real images)",
    )
    source = services.create_source(
        name=DEMO_SOURCE_NAME,
        kind=Source.Kind.LAYOUT,
        location=str(layout_dir),
        trust_root=root,
        expected_identity=DEMO_IDENTITY,
        expected_issuer=DEMO_ISSUER,
    )
    for document in DEMO_POLICIES:
        name = document.split("name: ", 1)[1].split("\n", 1)[0]
        if not Policy.objects.filter(name=name).exists():
            policy_services.save_policy(document)
    password = secrets.token_urlsafe(12)
    user, _ = get_user_model().objects.get_or_create(username=DEMO_USERNAME)
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    scan = services.start_scan(source)
    return Demo(source, scan, images, DEMO_USERNAME, password)
