"""A fleet for policy tests: images on ``ghcr.io``, signed and attested by the test Sigstore, verified by the real
verification code and stored as a scan stores them (evidence rows with checks, statements and raw layers).

A registry named ``ghcr.io`` cannot be scanned offline, so rows are written directly; everything cryptographic is
real. ``tests/policies/test_scan_flow.py`` covers the real scan path with the demo fleet.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provenance.artifacts import services as artifact_services
from provenance.artifacts.models import Artifact, Evidence, Tag
from provenance.core import verify
from provenance.core.discovery import FoundEvidence
from provenance.core.testsigstore import GITHUB_ACTIONS_ISSUER, TestSigstore, in_toto_statement
from provenance.core.trustroot import TrustRoot as CoreTrustRoot
from provenance.core.types import ANNOTATION_BUNDLE, Digest, IdentityPolicy, MediaType, SignedLayer
from provenance.sources.models import Source
from provenance.trust.models import TrustRoot
from tests.factories import make_sigstore, trust_root_for

SLSA_V1 = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"
RUNNER = "https://github.com/actions/runner"
APP_WORKFLOW = "https://github.com/myorg/app/.github/workflows/release.yml@refs/heads/main"
API_WORKFLOW = "https://github.com/myorg/api/.github/workflows/release.yml@refs/heads/main"
INTRUDER = "https://github.com/someone-else/fork/.github/workflows/release.yml@refs/heads/main"


def workflow(repo: str) -> str:
    return f"https://github.com/{repo}/.github/workflows/release.yml@refs/heads/main"


@dataclass
class Fleet:
    sigstore: TestSigstore
    root: TrustRoot
    core_root: CoreTrustRoot
    source: Source
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key_pem(self) -> str:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def image(self, repository: str, *, signers: tuple[str, ...] = (), build_type: str | None = None,
              attester: str = APP_WORKFLOW, sbom_by: str | None = None, key_signed: bool = False,
              tag: str = "v1", parent: Artifact | None = None, platform: str = "",
              media_type: str = MediaType.OCI_MANIFEST, tampered: bool = False, unlogged: bool = False,
              source_keys: bool = False) -> Artifact:
        digest = Digest.of(os.urandom(32))
        artifact = Artifact.objects.create(source=self.source, repository=repository, digest=str(digest),
                                           media_type=media_type, parent=parent, platform=platform,
                                           status="verified", checked_at=dt.datetime.now(dt.UTC))
        if tag and parent is None:
            Tag.objects.create(artifact=artifact, name=tag)
        reference = f"ghcr.io/{repository}"
        for i, signer in enumerate(signers):
            # Two signatures over the same digest and reference have byte-identical payloads, hence the same layer
            # digest, and Evidence is unique per (artifact, kind, layer digest): vary the reference to keep both.
            layer = self.sigstore.cosign_signature_layer(str(digest), f"{reference}{f':s{i}' if i else ''}",
                                                         identity=signer, issuer=GITHUB_ACTIONS_ISSUER)
            if tampered:
                payload = json.loads(layer.payload)
                payload["optional"] = {"edited": True}
                layer = SignedLayer(layer.media_type, json.dumps(payload).encode(), layer.annotations)
            self.store(artifact, "signature", layer)
        if key_signed:
            layer = self.sigstore.cosign_signature_layer_with_key(str(digest), reference, self.key)
            if unlogged:  # as cosign sign --tlog-upload=false writes it: no bundle annotation
                layer = SignedLayer(layer.media_type, layer.payload,
                                    {k: v for k, v in layer.annotations.items() if k != ANNOTATION_BUNDLE})
            # source_keys: the source trusts the key and accepts unlogged signatures (its insecure opt-in)
            self.store(artifact, "signature", layer, public_keys=(self.public_key_pem.encode(),) if source_keys else (),
                       require_tlog=not (source_keys and unlogged))
        if build_type is not None:
            predicate = {"buildDefinition": {"buildType": build_type, "externalParameters": {}},
                         "runDetails": {"builder": {"id": f"{build_type}/github-hosted"}}}
            statement = in_toto_statement(reference, digest.hex, SLSA_V1, predicate)
            self.store(artifact, "attestation", self.sigstore.cosign_attestation_layer(
                statement, identity=attester, issuer=GITHUB_ACTIONS_ISSUER))
        if sbom_by is not None:
            statement = in_toto_statement(reference, digest.hex, SPDX, {"spdxVersion": "SPDX-2.3", "packages": []})
            self.store(artifact, "attestation", self.sigstore.cosign_attestation_layer(
                statement, identity=sbom_by, issuer=GITHUB_ACTIONS_ISSUER))
        return artifact

    def index(self, repository: str, *, signers: tuple[str, ...] = (), platforms: dict[str, dict] | None = None,
              tag: str = "v1") -> Artifact:
        index = self.image(repository, signers=signers, tag=tag, media_type=MediaType.OCI_INDEX)
        for platform, options in (platforms or {}).items():
            self.image(repository, parent=index, platform=platform, **options)
        return index

    def store(self, artifact: Artifact, kind: str, layer: SignedLayer, *, public_keys: tuple[bytes, ...] = (),
              require_tlog: bool = True) -> Evidence:
        """Verify as the scan does (the source's expected identity) and store as the scan does."""
        digest = Digest.parse(artifact.digest)
        found = FoundEvidence(kind=kind, format="cosign-sig" if kind == "signature" else "cosign-att",
                              location=f"{artifact.repository}:{digest.tag_prefix}.{kind[:3]}", covers=digest,
                              level="image", digest=layer.digest, layer=layer)
        expected = IdentityPolicy(issuer=self.source.expected_issuer, identity=self.source.expected_identity)
        item = verify.verify_evidence(found, trust_root=self.core_root, identity=expected, public_keys=public_keys,
                                      require_tlog=require_tlog)
        return artifact_services.store_evidence(artifact, item)


def make_fleet(name: str = "policy-fleet") -> Fleet:
    sigstore = make_sigstore("provenance-test")
    root = trust_root_for(sigstore)
    source = Source.objects.create(name=name, kind=Source.Kind.IMAGE, location="ghcr.io/myorg/app:v1",
                                   trust_root=root, expected_identity=APP_WORKFLOW,
                                   expected_issuer=GITHUB_ACTIONS_ISSUER)
    return Fleet(sigstore, root, CoreTrustRoot.from_json(root.document.encode(), name=root.name), source)


ISSUE_POLICY = (os.path.dirname(__file__) + "/issue_policy.yaml")


def issue_policy() -> str:
    with open(ISSUE_POLICY) as handle:
        return handle.read()
