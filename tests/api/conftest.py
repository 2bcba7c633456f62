"""The stored state the gate and admission tests answer from, built by the real pipeline.

The demo fleet (signed by the test Sigstore) is pushed once per session to a real registry, in two repositories
(``gate/fleet`` and ``gate/copy``: the same digests in two places). Each test scans ``gate/fleet`` (a repository
source, every tag) in-process under two policies, as a user would set them up: the release workflow must sign
(enforced) and should attest SLSA provenance (warn mode).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provenance.core.demo import DEMO_IDENTITY, DEMO_ISSUER, DemoImage, build_demo_fleet
from provenance.core.ocilayout import OciLayout, push_layout
from provenance.policies import services as policy_services
from provenance.sources import services as source_services
from provenance.sources.models import Scan, Source
from tests.factories import UserFactory, make_sigstore, trust_root_for
from tests.plugins.registry import RegistryServer, make_image, push_image

FIXTURES = Path(__file__).parent / "admission"

RELEASE_POLICY = f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: release-signature
spec:
  images:
    - glob: "**gate/**"
  authorities:
    - name: release-workflow
      keyless:
        identities:
          - issuer: "{DEMO_ISSUER}"
            subject: "{DEMO_IDENTITY}"
"""

SLSA_POLICY = f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: slsa-provenance
spec:
  mode: warn
  images:
    - glob: "**gate/**"
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
"""


@dataclass
class PushedFleet:
    registry: RegistryServer
    images: dict[str, DemoImage]


@pytest.fixture(scope="session")
def pushed_fleet(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> PushedFleet:
    path = tmp_path_factory.mktemp("gate-fleet") / "layout"
    images = build_demo_fleet(path, make_sigstore())
    with registry.client() as client:
        for repository in ("gate/fleet", "gate/copy"):
            push_layout(OciLayout(path), client, repository)
    return PushedFleet(registry, {image.tag: image for image in images})


@dataclass
class GateFleet:
    registry: RegistryServer
    images: dict[str, DemoImage]
    source: Source
    scan: Scan

    @property
    def host(self) -> str:
        return self.registry.host

    def ref(self, tag: str, repository: str = "gate/fleet") -> str:
        """The digest reference of a demo image."""
        return f"{self.host}/{repository}@{self.images[tag].digest}"

    def tag_ref(self, tag: str) -> str:
        return f"{self.host}/gate/fleet:{tag}"

    def push_unscanned(self, seed: str) -> str:
        """A new image in ``gate/fleet`` that no scan has seen (unsigned); returns its digest reference."""
        with self.registry.client() as client:
            digest = push_image(client, "gate/fleet", make_image(seed))
        return f"{self.host}/gate/fleet@{digest}"


@pytest.fixture
def gate_fleet(pushed_fleet: PushedFleet) -> GateFleet:
    """Policies stored, then ``gate/fleet`` scanned here and now: tags, evidence and verdicts as a scan stores them."""
    root = trust_root_for(make_sigstore())
    policy_services.save_policy(RELEASE_POLICY)
    policy_services.save_policy(SLSA_POLICY)
    source = source_services.create_source(
        name="gate-fleet", kind=Source.Kind.REPOSITORY, location=f"{pushed_fleet.registry.host}/gate/fleet",
        trust_root=root, expected_identity=DEMO_IDENTITY, expected_issuer=DEMO_ISSUER, is_insecure=True,
    )
    scan = source_services.scan_here(source)
    assert scan.state == Scan.State.DONE, (scan.error_code, scan.error)
    return GateFleet(pushed_fleet.registry, pushed_fleet.images, source, scan)


@pytest.fixture
def api(client: Any) -> Any:
    client.force_login(UserFactory())
    return client


def load_review(name: str, **values: str) -> dict[str, Any]:
    """An AdmissionReview fixture with its ``{{placeholders}}`` (image references, flags) filled in."""
    import json

    text = (FIXTURES / name).read_text()

    def fill(match: re.Match[str]) -> str:
        return values[match.group(1).replace("-", "_")]

    return json.loads(re.sub(r"\{\{([a-z_-]+)\}\}", fill, text))
