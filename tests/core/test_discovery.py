"""Discovery against a real registry (distribution 2.8) holding evidence written by the real cosign binary."""

from __future__ import annotations

import base64
import json
import time

import pytest

from provenance.core.discovery import (
    Discovery,
    FoundEvidence,
    Level,
    discover,
    evidence_fingerprint,
)
from provenance.core.types import Digest, MediaType
from tests.plugins.registry import (
    CosignCli,
    RegistryServer,
    Scripted,
    ScriptedServer,
    make_image,
    make_index,
    push_image,
    unique_repository,
)

pytestmark = pytest.mark.integration

SLSA_V1 = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"
CYCLONEDX = "https://cyclonedx.org/bom"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"

SLSA_PREDICATE = {
    "buildDefinition": {"buildType": "https://example.test/build/v1", "externalParameters": {"ref": "main"}},
    "runDetails": {"builder": {"id": "https://example.test/builder"}},
}
SPDX_DOCUMENT = {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "app", "dataLicense": "CC0-1.0",
                 "documentNamespace": "https://example.test/spdx/app", "packages": []}
CYCLONEDX_BOM = {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": []}


def summary(found: Discovery) -> list[tuple[str, str, str, str, str]]:
    """(covers, level, kind, format, predicate type) of every piece of evidence, readable in assertions."""
    return sorted((str(e.covers), e.level, e.kind, e.format, e.predicate_type) for e in found.evidence)


def statement_of(evidence: FoundEvidence) -> dict:
    assert evidence.layer is not None
    envelope = json.loads(evidence.layer.payload)
    return json.loads(base64.b64decode(envelope["payload"]))


def test_finds_legacy_signature_and_attestations_written_by_cosign(registry: RegistryServer,
                                                                  cosign_cli: CosignCli) -> None:
    repo = unique_repository("cosign")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
        reference = f"{registry.host}/{repo}@{digest}"
        cosign_cli.sign(reference)
        cosign_cli.attest(reference, SLSA_PREDICATE, "slsaprovenance1")
        cosign_cli.attest(reference, SPDX_DOCUMENT, "spdxjson")
        cosign_cli.attest(reference, CYCLONEDX_BOM, "cyclonedx")
        found = discover(client, repo, "v1")

    assert found.problems == []
    assert found.root.digest == digest and found.root.level == Level.IMAGE
    assert summary(found) == sorted([
        (str(digest), "image", "signature", "cosign-sig", ""),
        (str(digest), "image", "attestation", "cosign-att", SLSA_V1),
        (str(digest), "image", "attestation", "cosign-att", SPDX),
        (str(digest), "image", "attestation", "cosign-att", CYCLONEDX),
    ])
    [signature] = [e for e in found.evidence if e.kind == "signature"]
    assert signature.location == f"{repo}:{digest.tag_prefix}.sig"
    assert signature.layer is not None and signature.layer.media_type == MediaType.COSIGN_SIMPLESIGNING
    assert json.loads(signature.layer.payload)["critical"]["image"]["docker-manifest-digest"] == str(digest)
    for attestation in (e for e in found.evidence if e.kind == "attestation"):
        assert attestation.location == f"{repo}:{digest.tag_prefix}.att"
        statement = statement_of(attestation)
        assert statement["predicateType"] == attestation.predicate_type
        assert statement["subject"][0]["digest"]["sha256"] == digest.hex


def test_finds_new_bundle_format_attestation_through_the_referrers_tag(registry: RegistryServer,
                                                                        cosign_cli: CosignCli) -> None:
    repo = unique_repository("bundle")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
        cosign_cli.attest(f"{registry.host}/{repo}@{digest}", SLSA_PREDICATE, "slsaprovenance1",
                          "--new-bundle-format")
        fallback = json.loads(client.get_manifest(repo, digest.tag_prefix).data)
        found = discover(client, repo, "v1")

    # cosign lists the referrer under the config media type: filtering on artifactType would miss it.
    [entry] = fallback["manifests"]
    assert entry["artifactType"] == MediaType.OCI_EMPTY
    assert client.referrers(repo, digest) is None  # distribution 2.8 has no referrers API
    assert found.problems == []
    [bundle] = found.evidence
    assert (bundle.kind, bundle.format, bundle.level, bundle.covers) == ("attestation", "sigstore-bundle", "image",
                                                                         digest)
    assert bundle.predicate_type == SLSA_V1
    assert bundle.location == f"{repo}@{entry['digest']}"
    assert bundle.manifest == Digest.parse(entry["digest"])
    assert bundle.layer is not None and bundle.layer.media_type == BUNDLE_V03
    assert json.loads(bundle.layer.payload)["mediaType"] == BUNDLE_V03
    assert bundle.layer.annotations["dev.sigstore.bundle.content"] == "dsse-envelope"
    assert bundle.layer.annotations["dev.sigstore.bundle.predicateType"] == SLSA_V1


def test_finds_sbom_attachment(registry: RegistryServer, cosign_cli: CosignCli) -> None:
    repo = unique_repository("sbom")
    sbom = json.dumps(SPDX_DOCUMENT).encode()
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
        cosign_cli.attach_sbom(f"{registry.host}/{repo}@{digest}", sbom)
        found = discover(client, repo, "v1")

    [attached] = found.evidence
    assert (attached.kind, attached.format, attached.level, attached.covers) == ("sbom", "cosign-sbom", "image",
                                                                                 digest)
    assert attached.location == f"{repo}:{digest.tag_prefix}.sbom"
    assert attached.layer is not None
    assert (attached.layer.media_type, attached.layer.payload) == ("text/spdx+json", sbom)


@pytest.mark.parametrize("recursive", [False, True], ids=["index-only", "recursive"])
def test_multi_arch_index_signature_is_attributed_to_the_level_it_covers(
    registry: RegistryServer, cosign_cli: CosignCli, recursive: bool
) -> None:
    repo = unique_repository("multi")
    amd64, arm64 = make_image(), make_image()
    with registry.client() as client:
        push_image(client, repo, amd64)
        push_image(client, repo, arm64)
        index = client.push_manifest(repo, "v1", make_index((amd64, "linux/amd64"), (arm64, "linux/arm64")),
                                     MediaType.OCI_INDEX)
        cosign_cli.sign(f"{registry.host}/{repo}@{index}", *(["--recursive"] if recursive else []))
        found = discover(client, repo, "v1")

    assert found.problems == []
    assert (found.root.digest, found.root.level) == (index, Level.INDEX)
    assert [(c.digest, c.level, c.platform) for c in found.root.children] == [
        (amd64.digest, Level.PLATFORM, "linux/amd64"), (arm64.digest, Level.PLATFORM, "linux/arm64")]
    expected = [(str(index), "index", "signature", "cosign-sig", "")]
    if recursive:
        expected += [(str(amd64.digest), "platform", "signature", "cosign-sig", ""),
                     (str(arm64.digest), "platform", "signature", "cosign-sig", "")]
    assert summary(found) == sorted(expected)
    for evidence in found.evidence:
        assert evidence.layer is not None
        assert json.loads(evidence.layer.payload)["critical"]["image"]["docker-manifest-digest"] == str(
            evidence.covers)


def test_finds_signatures_in_a_separate_signature_repository(registry: RegistryServer,
                                                             cosign_cli: CosignCli) -> None:
    repo, signatures = unique_repository("app"), unique_repository("signatures")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
        env = {"COSIGN_REPOSITORY": f"{registry.host}/{signatures}"}
        cosign_cli.sign(f"{registry.host}/{repo}@{digest}", env=env)
        cosign_cli.attest(f"{registry.host}/{repo}@{digest}", SLSA_PREDICATE, "slsaprovenance1", env=env)
        beside = discover(client, repo, "v1")
        elsewhere = discover(client, repo, "v1", signature_repository=signatures)

    assert beside.evidence == []
    assert summary(elsewhere) == sorted([(str(digest), "image", "signature", "cosign-sig", ""),
                                         (str(digest), "image", "attestation", "cosign-att", SLSA_V1)])
    assert all(e.location.startswith(f"{signatures}:") for e in elsewhere.evidence)


def test_fingerprint_is_stable_until_evidence_changes(registry: RegistryServer, cosign_cli: CosignCli) -> None:
    repo = unique_repository("fp")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
        reference = f"{registry.host}/{repo}@{digest}"
        cosign_cli.sign(reference)
        first = discover(client, repo, "v1")
        nodes = [(n.digest, n.level) for n in first.nodes]
        cheap = evidence_fingerprint(client, repo, nodes)
        again = discover(client, repo, "v1")
        cosign_cli.attest(reference, SLSA_PREDICATE, "slsaprovenance1", "--new-bundle-format")
        after_bundle = evidence_fingerprint(client, repo, nodes)
        cosign_cli.attest(reference, SLSA_PREDICATE, "slsaprovenance1")
        after_att = evidence_fingerprint(client, repo, nodes)
        latest = discover(client, repo, "v1")

    assert first.fingerprint == cheap == again.fingerprint
    assert len({cheap, after_bundle, after_att}) == 3
    assert latest.fingerprint == after_att


def test_one_images_requests_overlap(fake_registry: ScriptedServer) -> None:
    image = make_image()
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(200, image.manifest,
                                                              {"Content-Type": MediaType.OCI_MANIFEST}))
    missing = Scripted(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', delay=0.4)
    for suffix in (".sig", ".att", ".sbom", ""):
        fake_registry.add("GET", f"/v2/app/manifests/{image.digest.tag_prefix}{suffix}", missing)
    fake_registry.add("GET", f"/v2/app/referrers/{image.digest}", missing)
    with fake_registry.client() as client:
        started = time.monotonic()
        found = discover(client, "app", "v1")
        overlapped = time.monotonic() - started
        started = time.monotonic()
        discover(client, "app", "v1", concurrency=1)
        serial = time.monotonic() - started

    assert found.evidence == [] and found.problems == []
    # Five 0.4 s lookups: about 0.4 s together; one by one at least four of them (the client now knows that this
    # registry has no referrers API).
    assert overlapped < 1.0 and serial >= 1.6
