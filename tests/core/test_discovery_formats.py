"""Discovery of every format in use: Sigstore bundles from the project's test Sigstore as OCI referrers, Notation
signatures, BuildKit in-index attestations, referrers in an OCI layout; and bad input, each recorded."""

from __future__ import annotations

import json

import pytest

from provenance.core.discovery import Discovery, discover, evidence_fingerprint
from provenance.core.errors import TransientError
from provenance.core.ocilayout import OciLayout
from provenance.core.testsigstore import BUNDLE_MEDIA_TYPES, in_toto_statement
from provenance.core.types import Digest, MediaType
from tests.factories import make_sigstore
from tests.plugins.registry import (
    RegistryServer,
    SampleImage,
    Scripted,
    ScriptedServer,
    add_to_fallback_index,
    make_image,
    make_index,
    push_image,
    push_referrer,
    unique_repository,
)

IDENTITY = "https://github.com/provenance-test/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
SLSA_V1 = "https://slsa.dev/provenance/v1"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
NOTATION = "application/vnd.cncf.notary.signature"


def kinds(found: Discovery) -> list[tuple[str, str, str, str, str]]:
    return sorted((str(e.covers), e.level, e.kind, e.format, e.predicate_type) for e in found.evidence)


def attach_bundle(client, repo: str, image: SampleImage, bundle: bytes, version: str,
                  annotations: dict[str, str] | None = None) -> Digest:
    media_type = BUNDLE_MEDIA_TYPES[version]
    return push_referrer(client, repo, image.digest, subject_size=len(image.manifest), artifact_type=media_type,
                         layers=[(media_type, bundle, {})], annotations=annotations).digest


@pytest.mark.integration
@pytest.mark.parametrize("version", ["0.1", "0.2", "0.3"])
def test_sigstore_bundles_attached_as_referrers_are_found(registry: RegistryServer, version: str) -> None:
    sigstore = make_sigstore()
    repo, image = unique_repository("bundles"), make_image()
    statement = in_toto_statement(repo, image.digest.hex, SLSA_V1, {"buildDefinition": {}})
    message = sigstore.sign_blob_bundle(image.digest.hex.encode(), identity=IDENTITY, issuer=ISSUER, version=version)
    attestation = sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=ISSUER, version=version)
    cosign3_signature = sigstore.sign_dsse_bundle(in_toto_statement(repo, image.digest.hex, COSIGN_SIGN, {}),
                                                  identity=IDENTITY, issuer=ISSUER, version=version)
    with registry.client() as client:
        push_image(client, repo, image, "v1")
        attach_bundle(client, repo, image, message, version, {"dev.sigstore.bundle.content": "message-signature"})
        attach_bundle(client, repo, image, attestation, version)
        attach_bundle(client, repo, image, cosign3_signature, version)
        found = discover(client, repo, "v1")

    assert found.problems == []
    digest = str(image.digest)
    assert kinds(found) == sorted([
        (digest, "image", "signature", "sigstore-bundle", ""),
        (digest, "image", "signature", "sigstore-bundle", COSIGN_SIGN),
        (digest, "image", "attestation", "sigstore-bundle", SLSA_V1),
    ])
    payloads = {e.layer.payload for e in found.evidence if e.layer is not None}
    assert payloads == {message, attestation, cosign3_signature}
    assert {e.layer.media_type for e in found.evidence if e.layer} == {BUNDLE_MEDIA_TYPES[version]}
    [signed] = [e for e in found.evidence if e.layer and e.layer.payload == message]
    assert signed.layer is not None and signed.layer.annotations["dev.sigstore.bundle.content"] == "message-signature"


@pytest.mark.integration
def test_bundle_on_a_platform_manifest_is_attributed_to_that_platform(registry: RegistryServer) -> None:
    sigstore = make_sigstore()
    repo, amd64, arm64 = unique_repository("multi"), make_image(), make_image()
    with registry.client() as client:
        push_image(client, repo, amd64)
        push_image(client, repo, arm64)
        index = client.push_manifest(repo, "v1", make_index((amd64, "linux/amd64"), (arm64, "linux/arm64")),
                                     MediaType.OCI_INDEX)
        statement = in_toto_statement(repo, arm64.digest.hex, SLSA_V1, {})
        attach_bundle(client, repo, arm64, sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=ISSUER),
                      "0.3")
        found = discover(client, repo, "v1")

    assert found.root.digest == index
    assert kinds(found) == [(str(arm64.digest), "platform", "attestation", "sigstore-bundle", SLSA_V1)]


@pytest.mark.integration
def test_notation_signatures_are_recognised(registry: RegistryServer) -> None:
    repo, image = unique_repository("notation"), make_image()
    jws = json.dumps({"payload": "e30", "protected": "e30", "signature": "c2ln", "header": {"x5c": []}}).encode()
    cose = b"\xd2\x84COSE-signature-bytes"
    with registry.client() as client:
        push_image(client, repo, image, "v1")
        push_referrer(client, repo, image.digest, subject_size=len(image.manifest), artifact_type=NOTATION,
                      layers=[("application/jose+json", jws, {})],
                      annotations={"io.cncf.notary.x509chain.thumbprint#S256": '["abc"]'})
        # The older form: no artifactType, the notary type as config media type.
        push_referrer(client, repo, image.digest, subject_size=len(image.manifest), artifact_type="",
                      config_media_type=NOTATION, layers=[("application/cose", cose, {})])
        found = discover(client, repo, "v1")

    assert found.problems == []
    assert kinds(found) == [(str(image.digest), "image", "signature", "notation", "")] * 2
    by_type = {e.layer.media_type: e.layer for e in found.evidence if e.layer}
    assert by_type["application/jose+json"].payload == jws
    assert by_type["application/jose+json"].annotations["io.cncf.notary.x509chain.thumbprint#S256"] == '["abc"]'
    assert by_type["application/cose"].payload == cose


def buildkit_index(client, repo: str, platforms: list[tuple[SampleImage, str]]) -> tuple[Digest, dict[Digest, bytes]]:
    """An index as ``docker buildx build --provenance --sbom`` pushes it: one attestation manifest per platform."""
    entries = []
    statements: dict[Digest, bytes] = {}
    for image, platform in platforms:
        push_image(client, repo, image)
        os_name, _, arch = platform.partition("/")
        entries.append(image.descriptor(os=os_name, architecture=arch))
        provenance = in_toto_statement("app", image.digest.hex, "https://slsa.dev/provenance/v0.2", {"builder": {}})
        sbom = in_toto_statement("app", image.digest.hex, "https://spdx.dev/Document", {"spdxVersion": "SPDX-2.3"})
        layers = []
        for statement, predicate in ((provenance, "https://slsa.dev/provenance/v0.2"),
                                     (sbom, "https://spdx.dev/Document")):
            client.push_blob(repo, statement)
            layers.append({"mediaType": "application/vnd.in-toto+json", "digest": str(Digest.of(statement)),
                           "size": len(statement), "annotations": {"in-toto.io/predicate-type": predicate}})
        config = b'{"architecture":"unknown","os":"unknown"}'
        client.push_blob(repo, config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": str(Digest.of(config)), "size": len(config)},
                               "layers": layers}).encode()
        attestation = client.push_manifest(repo, Digest.of(manifest), manifest, MediaType.OCI_MANIFEST)
        entries.append({"mediaType": MediaType.OCI_MANIFEST, "digest": str(attestation), "size": len(manifest),
                        "platform": {"os": "unknown", "architecture": "unknown"},
                        "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                        "vnd.docker.reference.digest": str(image.digest)}})
        statements[image.digest] = provenance
    index = json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": entries}).encode()
    return client.push_manifest(repo, "v1", index, MediaType.OCI_INDEX), statements


@pytest.mark.integration
def test_buildkit_in_index_provenance_and_sbom_are_unsigned_evidence_per_platform(registry: RegistryServer) -> None:
    repo, amd64, arm64 = unique_repository("buildkit"), make_image(), make_image()
    with registry.client() as client:
        index, statements = buildkit_index(client, repo, [(amd64, "linux/amd64"), (arm64, "linux/arm64")])
        found = discover(client, repo, "v1")

    assert found.problems == []
    assert [c.digest for c in found.root.children] == [amd64.digest, arm64.digest]  # attestations are not platforms
    expected = []
    for image in (amd64, arm64):
        for predicate in ("https://slsa.dev/provenance/v0.2", "https://spdx.dev/Document"):
            expected.append((str(image.digest), "platform", "attestation", "buildkit-attestation", predicate))
    assert kinds(found) == sorted(expected)
    provenance = [e for e in found.evidence if e.covers == amd64.digest and "slsa" in e.predicate_type]
    assert provenance[0].layer is not None and provenance[0].layer.payload == statements[amd64.digest]
    assert str(index) in provenance[0].location


@pytest.mark.integration
def test_referrers_are_judged_by_their_own_manifest_not_the_fallback_index(registry: RegistryServer) -> None:
    sigstore = make_sigstore()
    repo, image, other = unique_repository("liar"), make_image(), make_image()
    with registry.client() as client:
        push_image(client, repo, image, "v1")
        push_image(client, repo, other, "other")
        bundle = sigstore.sign_dsse_bundle(in_toto_statement(repo, image.digest.hex, SLSA_V1, {}),
                                           identity=IDENTITY, issuer=ISSUER)
        # The index claims an SBOM type; the manifest is a Sigstore bundle: the manifest wins.
        push_referrer(client, repo, image.digest, subject_size=len(image.manifest),
                      artifact_type=BUNDLE_MEDIA_TYPES["0.3"], layers=[(BUNDLE_MEDIA_TYPES["0.3"], bundle, {})],
                      index_artifact_type="application/spdx+json")
        # A referrer of another image, listed in this image's fallback index: not evidence about this image.
        foreign = push_referrer(client, repo, other.digest, subject_size=len(other.manifest),
                                artifact_type=BUNDLE_MEDIA_TYPES["0.3"],
                                layers=[(BUNDLE_MEDIA_TYPES["0.3"], bundle, {})])
        add_to_fallback_index(client, repo, image.digest, {"mediaType": MediaType.OCI_MANIFEST,
                                                           "digest": str(foreign.digest),
                                                           "size": len(foreign.manifest)})
        # Something Provenance does not know: recorded as such.
        push_referrer(client, repo, image.digest, subject_size=len(image.manifest),
                      artifact_type="application/vnd.example.scan+json",
                      layers=[("application/json", b'{"findings": []}', {})])
        found = discover(client, repo, "v1")

    assert kinds(found) == sorted([(str(image.digest), "image", "attestation", "sigstore-bundle", SLSA_V1),
                                   (str(image.digest), "image", "attestation", "oci-referrer", "")])
    assert [p.code for p in found.problems] == ["referrer_subject_mismatch"]
    assert str(other.digest) in found.problems[0].message


def test_referrers_in_an_oci_layout_are_found(tmp_path) -> None:
    sigstore = make_sigstore()
    layout = OciLayout.init(tmp_path / "layout")
    image = make_image()
    layout.write_blob(image.config)
    layout.write_blob(image.layer)
    layout.write_manifest(image.manifest, MediaType.OCI_MANIFEST, tag="v1")
    bundle = sigstore.sign_dsse_bundle(in_toto_statement("app", image.digest.hex, SLSA_V1, {}),
                                       identity=IDENTITY, issuer=ISSUER)
    layout.write_blob(bundle)
    layout.write_blob(b"{}")
    referrer = json.dumps({
        "schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "artifactType": BUNDLE_MEDIA_TYPES["0.3"],
        "config": {"mediaType": MediaType.OCI_EMPTY, "digest": str(Digest.of(b"{}")), "size": 2},
        "layers": [{"mediaType": BUNDLE_MEDIA_TYPES["0.3"], "digest": str(Digest.of(bundle)), "size": len(bundle)}],
        "subject": image.descriptor(),
    }).encode()
    layout.add_referrer(referrer)

    found = discover(layout, "layout", "v1")
    assert kinds(found) == [(str(image.digest), "image", "attestation", "sigstore-bundle", SLSA_V1)]
    assert layout.list_tags() == ["v1"]  # a referrer is not an image
    nodes = [(n.digest, n.level) for n in found.nodes]
    assert evidence_fingerprint(layout, "layout", nodes) == found.fingerprint


# --------------------------------------------------------------------------------------------------------------
# Bad input: each recorded with a reason, the rest still found


def scripted_image(server: ScriptedServer, image: SampleImage, tag: str = "v1") -> None:
    server.add("GET", f"/v2/app/manifests/{tag}", Scripted(200, image.manifest, {"Content-Type": image.media_type}))


def scripted_manifest(server: ScriptedServer, path: str, layers: list[dict]) -> bytes:
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
                           "config": {"mediaType": MediaType.OCI_EMPTY, "digest": str(Digest.of(b"{}")), "size": 2},
                           "layers": layers}).encode()
    server.add("GET", path, Scripted(200, manifest, {"Content-Type": MediaType.OCI_MANIFEST}))
    return manifest


def test_unreadable_evidence_is_recorded_and_the_rest_is_found(fake_registry: ScriptedServer) -> None:
    sigstore = make_sigstore()
    image = make_image()
    prefix = image.digest.tag_prefix
    scripted_image(fake_registry, image)
    good = sigstore.cosign_signature_layer(str(image.digest), "app", identity=IDENTITY, issuer=ISSUER)
    forged = b'{"critical": "not what was hashed"}'
    deep = b'{"a":' * 100 + b"1" + b"}" * 100  # deeper than our limit of 64, within json's recursion limit
    huge = b"x" * 64
    sig_layers = [
        {"mediaType": MediaType.COSIGN_SIMPLESIGNING, "digest": str(good.digest), "size": len(good.payload),
         "annotations": good.annotations},
        {"mediaType": MediaType.COSIGN_SIMPLESIGNING, "digest": str(Digest.of(b"expected")), "size": 8},
        {"mediaType": MediaType.COSIGN_SIMPLESIGNING, "digest": str(Digest.of(huge)), "size": 2 * 1024 * 1024},
    ]
    scripted_manifest(fake_registry, f"/v2/app/manifests/{prefix}.sig", sig_layers)
    fake_registry.add("GET", f"/v2/app/blobs/{good.digest}", Scripted(500), Scripted(200, good.payload))
    fake_registry.add("GET", f"/v2/app/blobs/{Digest.of(b'expected')}", Scripted(200, forged))
    # A referrer whose bundle is nested 100 deep, and one that is not JSON at all.
    bundle_type = BUNDLE_MEDIA_TYPES["0.3"]
    fallback = []
    for blob in (deep, b"{not json"):
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "artifactType": bundle_type,
                               "config": {"mediaType": MediaType.OCI_EMPTY, "digest": str(Digest.of(b"{}")),
                                          "size": 2},
                               "layers": [{"mediaType": bundle_type, "digest": str(Digest.of(blob)),
                                           "size": len(blob)}],
                               "subject": image.descriptor()}).encode()
        digest = Digest.of(manifest)
        path = f"/v2/app/manifests/{digest}"
        fake_registry.add("GET", path, Scripted(200, manifest, {"Content-Type": MediaType.OCI_MANIFEST}))
        fake_registry.add("GET", f"/v2/app/blobs/{Digest.of(blob)}", Scripted(200, blob))
        fallback.append({"mediaType": MediaType.OCI_MANIFEST, "digest": str(digest), "size": len(manifest)})
    index = json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": fallback}).encode()
    fake_registry.add("GET", f"/v2/app/manifests/{prefix}", Scripted(200, index,
                                                                     {"Content-Type": MediaType.OCI_INDEX}))
    with fake_registry.client() as client:
        found = discover(client, "app", "v1")

    by_code = sorted((e.kind, e.format, e.problem.code if e.problem else "ok") for e in found.evidence)
    assert by_code == sorted([
        ("signature", "cosign-sig", "ok"),  # 500 then 200: retried
        ("signature", "cosign-sig", "digest_mismatch"),
        ("signature", "cosign-sig", "too_large"),
        ("attestation", "sigstore-bundle", "malformed_bundle"),
        ("attestation", "sigstore-bundle", "malformed_bundle"),
    ])
    messages = " ".join(e.problem.message for e in found.evidence if e.problem)
    assert "nested deeper than" in messages and "not valid JSON" in messages and "hashes to" in messages
    assert found.problems == []  # unreadable evidence is evidence (shown as malformed), not a lookup problem


def test_a_platform_manifest_that_cannot_be_fetched_is_a_problem(fake_registry: ScriptedServer) -> None:
    amd64, arm64 = make_image(), make_image()
    index = make_index((amd64, "linux/amd64"), (arm64, "linux/arm64"))
    fake_registry.add("GET", "/v2/app/manifests/v1", Scripted(200, index, {"Content-Type": MediaType.OCI_INDEX}))
    fake_registry.add("GET", f"/v2/app/manifests/{amd64.digest}", Scripted(200, amd64.manifest,
                                                                          {"Content-Type": MediaType.OCI_MANIFEST}))
    fake_registry.add("GET", f"/v2/app/manifests/{arm64.digest}", Scripted(200, b'{"tampered": true}',
                                                                          {"Content-Type": MediaType.OCI_MANIFEST}))
    with fake_registry.client() as client:
        found = discover(client, "app", "v1")

    assert [c.digest for c in found.root.children] == [amd64.digest]
    [problem] = found.problems
    assert problem.code == "digest_mismatch"
    assert str(arm64.digest) in problem.message and "linux/arm64" in problem.message
    assert found.fingerprint == ""  # a scan with problems is never skipped as "unchanged" next time


def test_a_hanging_registry_is_a_transient_error_not_an_empty_result(fake_registry: ScriptedServer) -> None:
    image = make_image()
    scripted_image(fake_registry, image)
    fake_registry.add("GET", f"/v2/app/manifests/{image.digest.tag_prefix}.sig", Scripted(404, delay=3))
    with fake_registry.client(timeout=0.5, retries=1) as client, pytest.raises(TransientError) as caught:
        discover(client, "app", "v1")
    assert "timed out" in caught.value.message
