"""Policies see every image by its full name: the user's example policy (glob ``ghcr.io/myorg/**``, with the test
registry's host standing in for ghcr.io) covers an image whether it came from an image source or from a
repository source of the same repository; an OCI layout goes by ``oci-layout/<name>``."""

from __future__ import annotations

from pathlib import Path

import pytest

from provenance.artifacts.models import Artifact
from provenance.core.testsigstore import GITHUB_ACTIONS_ISSUER
from provenance.policies import services as policy_services
from provenance.policies.models import ArtifactTrust, Policy
from provenance.sources import services
from provenance.sources.demo import load_demo
from provenance.sources.models import Source
from tests.factories import make_sigstore, run_scan_now, trust_root_for
from tests.interop.test_cosign_interop import push_cosign_layer
from tests.plugins.registry import RegistryServer, make_image, push_image

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

RELEASE = "https://github.com/myorg/app/.github/workflows/release.yml@refs/heads/main"


def _issue_policy(host: str) -> str:
    text = (Path(__file__).parent / "issue_policy.yaml").read_text()
    assert '"ghcr.io/myorg/**"' in text
    return text.replace('"ghcr.io/myorg/**"', f'"{host}/myorg/**"')


def test_the_example_policy_covers_image_and_repository_sources_alike(registry: RegistryServer) -> None:
    sigstore = make_sigstore()
    root = trust_root_for(sigstore)
    image = make_image()
    with registry.client() as client:
        push_image(client, "myorg/app", image, "v1")
        push_cosign_layer(client, "myorg/app", image.digest, ".sig", sigstore.cosign_signature_layer(
            str(image.digest), f"{registry.host}/myorg/app", identity=RELEASE, issuer=GITHUB_ACTIONS_ISSUER))
    by_image = services.create_source(name="by-image", kind=Source.Kind.IMAGE, location=f"{registry.host}/myorg/app:v1",
                                      trust_root=root, is_insecure=True)
    by_repository = services.create_source(name="by-repo", kind=Source.Kind.REPOSITORY,
                                           location=f"{registry.host}/myorg/app", trust_root=root, is_insecure=True)
    policy_services.save_policy(_issue_policy(registry.host))

    for source in (by_image, by_repository):
        run_scan_now(source)

    verdicts = {}
    for source in (by_image, by_repository):
        artifact = Artifact.objects.get(source=source, digest=str(image.digest))
        trust = ArtifactTrust.objects.get(artifact=artifact)
        verdicts[source.name] = (artifact.full_name, [p["policy"] for p in trust.details["policies"]],
                                 trust.status, trust.code)
    assert verdicts["by-image"] == verdicts["by-repo"], verdicts
    name, policies, status, code = verdicts["by-image"]
    assert name == f"{registry.host}/myorg/app" and policies == ["require-sigstore-signatures"]
    assert code != "no_policy" and status in ("trusted", "untrusted", "warn"), verdicts


def test_an_oci_layout_is_matched_by_its_documented_name(tmp_path: Path) -> None:
    demo = load_demo(tmp_path)
    assert services.claim_scan(demo.scan.pk)
    services.run_scan(demo.scan.pk)

    artifact = Artifact.objects.filter(source=demo.source, parent__isnull=True).first()
    assert artifact is not None and artifact.full_name == "oci-layout/demo-fleet"
    assert Policy.objects.filter(name="demo-release-signature").exists()
    statuses = set(ArtifactTrust.objects.filter(artifact__source=demo.source).values_list("status", flat=True))
    assert "trusted" in statuses and "no_policy" not in statuses
