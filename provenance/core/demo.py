"""The demo fleet: a handful of images, signed (or not) by the test Sigstore, written as an OCI image layout.

Test and demo tooling only: everything here is signed by :mod:`provenance.core.testsigstore`, whose keys sit
unencrypted on disk. It exists so that the demo and the tests show every verdict without a network.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from provenance.core.ocilayout import OciLayout
from provenance.core.testsigstore import TestSigstore, in_toto_statement
from provenance.core.types import Digest, MediaType, SignedLayer

DEMO_ISSUER = "https://token.actions.githubusercontent.com"
DEMO_IDENTITY = "https://github.com/provenance-demo/app/.github/workflows/release.yml@refs/heads/main"
INTRUDER_IDENTITY = "https://github.com/someone-else/fork/.github/workflows/release.yml@refs/heads/main"
SLSA_V1 = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"


@dataclass(frozen=True, slots=True)
class DemoImage:
    tag: str
    digest: Digest
    expected_status: str  # what a correct verifier concludes: verified, failed, unsigned
    description: str


def _image(layout: OciLayout, name: str, *, architecture: str = "amd64") -> Digest:
    layer = f"demo layer of {name} for {architecture}\n".encode() + os.urandom(16)
    layer_digest = layout.write_blob(layer)
    config = json.dumps({"architecture": architecture, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [str(layer_digest)]}}).encode()
    config_digest = layout.write_blob(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(config_digest),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": str(layer_digest),
                    "size": len(layer)}],
    }
    return layout.write_manifest(json.dumps(manifest).encode(), MediaType.OCI_MANIFEST)


def _attach(layout: OciLayout, digest: Digest, suffix: str, layers: list[SignedLayer]) -> None:
    """Write a cosign ``.sig``/``.att`` manifest holding ``layers`` under the tag cosign uses for ``digest``."""
    config = b"{}"
    config_digest = layout.write_blob(config)
    descriptors = []
    for layer in layers:
        blob_digest = layout.write_blob(layer.payload)
        descriptors.append({"mediaType": layer.media_type, "digest": str(blob_digest), "size": len(layer.payload),
                            "annotations": layer.annotations})
    manifest = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(config_digest),
                   "size": len(config)},
        "layers": descriptors,
    }
    layout.write_manifest(json.dumps(manifest).encode(), MediaType.OCI_MANIFEST, tag=f"{digest.tag_prefix}{suffix}")


def build_demo_fleet(path: Path, sigstore: TestSigstore, *, repository: str = "demo/fleet") -> list[DemoImage]:
    """Write the demo fleet as an OCI layout at ``path`` and return what each image is and should conclude."""
    layout = OciLayout.init(path)
    images: list[DemoImage] = []

    def sign(digest: Digest, identity: str = DEMO_IDENTITY) -> SignedLayer:
        return sigstore.cosign_signature_layer(str(digest), repository, identity=identity, issuer=DEMO_ISSUER)

    def tag(digest: Digest, name: str) -> None:
        manifest = layout.get_manifest("", digest)
        layout.write_manifest(manifest.data, manifest.media_type, tag=name)

    signed = _image(layout, "signed")
    provenance = {
        "buildDefinition": {
            "buildType": "https://github.com/actions/runner",
            "externalParameters": {"workflow": {"repository": "https://github.com/provenance-demo/app",
                                                "path": ".github/workflows/release.yml", "ref": "refs/heads/main"}},
            "resolvedDependencies": [{"uri": "git+https://github.com/provenance-demo/app@refs/heads/main",
                                      "digest": {"gitCommit": "5f1c0de3a9b1e7c2d4f6a8b0c2e4f6a8b0c2e4f6"}}],
        },
        "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"},
                       "metadata": {"invocationId": "https://github.com/provenance-demo/app/actions/runs/1"}},
    }
    sbom = {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "demo/fleet", "dataLicense": "CC0-1.0",
            "packages": [{"SPDXID": "SPDXRef-Package-openssl", "name": "openssl", "versionInfo": "3.0.15",
                          "licenseConcluded": "Apache-2.0",
                          "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                            "referenceLocator": "pkg:deb/debian/openssl@3.0.15"}]}]}
    _attach(layout, signed, ".sig", [sign(signed)])
    _attach(layout, signed, ".att", [
        sigstore.cosign_attestation_layer(in_toto_statement(repository, signed.hex, SLSA_V1, provenance),
                                          identity=DEMO_IDENTITY, issuer=DEMO_ISSUER, predicate_type=SLSA_V1),
        sigstore.cosign_attestation_layer(in_toto_statement(repository, signed.hex, SPDX, sbom),
                                          identity=DEMO_IDENTITY, issuer=DEMO_ISSUER, predicate_type=SPDX),
    ])
    tag(signed, "signed")
    images.append(DemoImage("signed", signed, "verified", "signed by the release workflow, with SLSA provenance "
                                                          "and an SPDX SBOM attestation"))

    unsigned = _image(layout, "unsigned")
    tag(unsigned, "unsigned")
    images.append(DemoImage("unsigned", unsigned, "unsigned", "no signature at all"))

    intruder = _image(layout, "wrong-identity")
    _attach(layout, intruder, ".sig", [sign(intruder, INTRUDER_IDENTITY)])
    tag(intruder, "wrong-identity")
    images.append(DemoImage("wrong-identity", intruder, "failed", "validly signed, but by an unexpected identity"))

    tampered = _image(layout, "tampered")
    good = sign(tampered)
    payload = json.loads(good.payload)
    payload["optional"] = {"note": "edited after signing"}
    _attach(layout, tampered, ".sig", [SignedLayer(good.media_type, json.dumps(payload).encode(), good.annotations)])
    tag(tampered, "tampered")
    images.append(DemoImage("tampered", tampered, "failed", "signature payload edited after signing"))

    copied = _image(layout, "copied-signature")
    _attach(layout, copied, ".sig", [sign(signed)])  # a valid signature, but over another image's digest
    tag(copied, "copied-signature")
    images.append(DemoImage("copied-signature", copied, "failed", "a valid signature copied from another image"))

    platforms = [(_image(layout, "multiarch", architecture=arch), arch) for arch in ("amd64", "arm64")]
    index = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_INDEX,
        "manifests": [
            {"mediaType": MediaType.OCI_MANIFEST, "digest": str(d), "size": len(layout.get_manifest("", d).data),
             "platform": {"os": "linux", "architecture": arch}}
            for d, arch in platforms
        ],
    }
    index_digest = layout.write_manifest(json.dumps(index).encode(), MediaType.OCI_INDEX, tag="multiarch")
    _attach(layout, index_digest, ".sig", [sign(index_digest)])
    for digest, _ in platforms:  # as `cosign sign --recursive` does
        _attach(layout, digest, ".sig", [sign(digest)])
    images.append(DemoImage("multiarch", index_digest, "verified", "a multi-arch index signed with --recursive"))
    return images
