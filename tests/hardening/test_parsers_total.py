"""Every parser is total: whatever bytes or JSON a registry serves, nothing escapes the core but its own errors
(or, for the verifiers and statement parsers, which never raise, a result).

Property-based (hypothesis): arbitrary JSON, and JSON built from each format's own field names so that the
generated documents get past the first checks and into the parsers' depths.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provenance.core import discovery, statements
from provenance.core.errors import MalformedEvidenceError, NotFoundError, ProvenanceError, TrustRootError
from provenance.core.oci import Manifest, parse_manifest
from provenance.core.policy import parse_policy
from provenance.core.trustroot import TrustRoot
from provenance.core.types import Digest, Format, Kind, Level, MediaType, SignedLayer
from provenance.core.verify import bundle, cosign, verify_evidence
from tests.factories import make_sigstore

PROPERTY = settings(max_examples=int(os.environ.get("PROVENANCE_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
DIGEST = Digest.of(b"image")
HEX = "a" * 64


def _json(keys: list[str]) -> st.SearchStrategy[Any]:
    """JSON values whose objects use ``keys`` (a format's field names) or anything, with format-like scalars."""
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
        st.sampled_from([f"sha256:{HEX}", "sha256:xyz", MediaType.OCI_MANIFEST, MediaType.OCI_INDEX,
                         MediaType.DSSE_ENVELOPE, "application/vnd.in-toto+json", "https://in-toto.io/Statement/v1",
                         "https://slsa.dev/provenance/v1", "https://spdx.dev/Document", "SPDX-2.3", "CycloneDX",
                         base64.b64encode(b'{"a":1}').decode(), "-----BEGIN CERTIFICATE-----\nAAAA\n",
                         "2024-01-01T00:00:00Z",
                         "", "0", "-1", "1e999"]),
    )
    key = st.one_of(st.sampled_from(keys), st.text(max_size=10))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(key, inner, max_size=8)), max_leaves=40)


MANIFEST_KEYS = ["schemaVersion", "mediaType", "config", "layers", "manifests", "subject", "artifactType",
                 "annotations", "digest", "size", "platform", "urls", "os", "architecture", "variant",
                 "vnd.docker.reference.type", "vnd.docker.reference.digest"]
BUNDLE_KEYS = ["mediaType", "verificationMaterial", "messageSignature", "dsseEnvelope", "certificate",
               "x509CertificateChain", "certificates", "rawBytes", "publicKey", "hint", "tlogEntries", "logIndex",
               "logId", "keyId", "kindVersion", "kind", "version", "integratedTime", "inclusionPromise",
               "signedEntryTimestamp", "inclusionProof", "rootHash", "treeSize", "hashes", "checkpoint", "envelope",
               "canonicalizedBody", "timestampVerificationData", "rfc3161Timestamps", "signedTimestamp",
               "messageDigest", "algorithm", "signature", "payload", "payloadType", "signatures", "sig", "keyid"]
STATEMENT_KEYS = ["_type", "subject", "name", "digest", "sha256", "predicateType", "predicate", "buildDefinition",
                  "runDetails", "builder", "id", "buildType", "externalParameters", "workflow", "ref", "repository",
                  "path", "resolvedDependencies", "uri", "invocation", "configSource", "materials", "metadata",
                  "spdxVersion", "packages", "versionInfo", "bomFormat", "specVersion", "components", "version",
                  "purl", "licenseConcluded", "licenses", "license", "SPDXID", "documentNamespace"]
TRUST_ROOT_KEYS = ["mediaType", "tlogs", "certificateAuthorities", "ctlogs", "timestampAuthorities", "baseUrl",
                   "hashAlgorithm", "publicKey", "rawBytes", "keyDetails", "validFor", "start", "end", "logId",
                   "keyId", "subject", "organization", "commonName", "uri", "certChain", "certificates"]
ENVELOPE_KEYS = ["payloadType", "payload", "signatures", "sig", "keyid"]


def _as_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


raw_or_json = st.one_of(st.binary(max_size=300), _json(MANIFEST_KEYS).map(_as_bytes))


@pytest.fixture(scope="module")
def root() -> TrustRoot:
    return TrustRoot.from_json(make_sigstore("hardening").trusted_root_json(), name="hardening")


@PROPERTY
@given(st.one_of(st.binary(max_size=300), _json(MANIFEST_KEYS).map(_as_bytes)), st.text(max_size=40))
def test_manifests_parse_or_raise_malformed_evidence(data: bytes, content_type: str) -> None:
    try:
        manifest = parse_manifest(data, digest=Digest.of(data), media_type=content_type)
    except MalformedEvidenceError:
        return
    for read in (lambda: manifest.layers, lambda: manifest.manifests, lambda: manifest.config,
                 lambda: manifest.subject, lambda: manifest.artifact_type):
        try:
            read()
        except MalformedEvidenceError:
            pass
    assert isinstance(manifest.annotations, dict)
    assert isinstance(manifest.is_index, bool)


class _Served:
    """An in-memory registry serving arbitrary manifests and blobs (for the index and evidence walkers)."""

    def __init__(self, documents: list[bytes]) -> None:
        self.documents = documents

    def get_manifest(self, repository: str, reference: str | Digest) -> Manifest:
        if not self.documents:
            raise NotFoundError("nothing more")
        data = self.documents.pop(0)
        return parse_manifest(data, digest=Digest.of(data))

    def get_blob(self, repository: str, digest: Digest, *, max_bytes: int | None = None) -> bytes:
        if not self.documents:
            raise NotFoundError("nothing more")
        return self.documents.pop(0)

    def list_tags(self, repository: str) -> list[str]:
        return []


@PROPERTY
@given(st.lists(_json(MANIFEST_KEYS + BUNDLE_KEYS).map(_as_bytes), min_size=1, max_size=8))
def test_indexes_and_evidence_manifests_are_discovered_or_a_core_error(documents: list[bytes]) -> None:
    index = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": [
        {"mediaType": MediaType.OCI_MANIFEST, "digest": str(Digest.of(d)), "size": len(d)} for d in documents[:2]]}
    data = _as_bytes(index)
    root = parse_manifest(data, digest=Digest.of(data))
    try:
        found = discovery.discover_manifest(_Served(list(documents)), "app", root, concurrency=1)
    except ProvenanceError:
        return
    assert isinstance(found.fingerprint, str)


@PROPERTY
@given(_json(MANIFEST_KEYS).map(_as_bytes))
def test_any_first_manifest_is_discovered_or_a_core_error(data: bytes) -> None:
    try:
        manifest = parse_manifest(data, digest=Digest.of(data))
        discovery.discover_manifest(_Served([data, data, data]), "app", manifest, concurrency=1)
    except ProvenanceError:
        pass


@PROPERTY
@given(st.one_of(st.binary(max_size=300), _json(BUNDLE_KEYS).map(_as_bytes)))
def test_bundles_verify_to_a_result_never_an_exception(root: TrustRoot, data: bytes) -> None:
    outcome = bundle.verify_bundle(data, artifact=DIGEST, trust_root=root, identity=None)
    assert not outcome.result.is_verified


def _envelope(value: Any) -> bytes:
    if isinstance(value, dict) and isinstance(value.get("payload"), dict | list):
        value = {**value, "payload": base64.b64encode(_as_bytes(value["payload"])).decode()}
    return _as_bytes(value)


@PROPERTY
@given(st.one_of(st.binary(max_size=300), _json(ENVELOPE_KEYS + STATEMENT_KEYS).map(_envelope)),
       st.dictionaries(st.sampled_from(["dev.cosignproject.cosign/signature", "dev.cosignproject.cosign/certificate",
                                        "dev.cosignproject.cosign/chain", "dev.sigstore.cosign/bundle",
                                        "dev.sigstore.cosign/rfc3161timestamp", "predicateType"]),
                       st.one_of(st.text(max_size=30), _json(BUNDLE_KEYS).map(json.dumps)), max_size=4))
def test_dsse_envelopes_and_cosign_layers_verify_to_a_result(root: TrustRoot, data: bytes,
                                                             annotations: dict[str, str]) -> None:
    for media_type, fmt, kind in [(MediaType.DSSE_ENVELOPE, Format.COSIGN_ATT, Kind.ATTESTATION),
                                  (MediaType.COSIGN_SIMPLESIGNING, Format.COSIGN_SIG, Kind.SIGNATURE),
                                  (MediaType.OCI_MANIFEST, Format.SIGSTORE_BUNDLE, Kind.SIGNATURE)]:
        found = discovery.FoundEvidence(kind, fmt, "app:tag", DIGEST, Level.IMAGE, Digest.of(data),
                                        layer=SignedLayer(media_type, data, annotations))
        verified = verify_evidence(found, trust_root=root, identity=None)
        assert not verified.result.is_verified
        # The parsers themselves are total: verify_evidence's last-resort net never had to catch anything.
        assert "verifier_failed" not in {c.code for c in verified.result.checks}
    result, statement = cosign.verify_attestation_layer(SignedLayer(MediaType.DSSE_ENVELOPE, data, annotations),
                                                        image_digest=DIGEST, trust_root=root, identity=None)
    assert not result.is_verified and statement is None


@PROPERTY
@given(st.one_of(st.binary(max_size=300), _json(STATEMENT_KEYS), _json(STATEMENT_KEYS).map(_as_bytes)))
def test_statements_and_sboms_parse_without_raising(document: Any) -> None:
    if isinstance(document, bytes) or isinstance(document, dict):
        parsed = statements.parse_statement(document)
        assert isinstance(parsed.kind, str)
        sbom, _ = statements.parse_sbom(document)
        assert sbom is None or isinstance(sbom.components, tuple)
    parsed = statements.parse_predicate("https://slsa.dev/provenance/v1", document)
    assert isinstance(parsed.problems, tuple)
    for predicate_type in ("https://slsa.dev/provenance/v0.2", "https://spdx.dev/Document",
                           "https://cyclonedx.org/bom"):
        statements.parse_predicate(predicate_type, document)


@PROPERTY
@given(st.one_of(st.binary(max_size=300), _json(TRUST_ROOT_KEYS).map(_as_bytes)))
def test_trust_roots_load_or_raise_trust_root_errors(data: bytes) -> None:
    try:
        TrustRoot.from_json(data, name="generated")
    except TrustRootError:
        pass


POLICY_WORDS = ["apiVersion: policy.sigstore.dev/v1beta1", "kind: ClusterImagePolicy", "metadata:", "  name: p",
                "spec:", "  images:", "  - glob: '**'", "  authorities:", "  - keyless:", "      url: x",
                "      identities:", "      - issuer: https://a", "        subjectRegExp: '(('", "  - key:",
                "      data: |", "        -----BEGIN PUBLIC KEY-----", "    attestations:", "    - name: a",
                "      predicateType: slsaprovenance", "      policy:", "        type: rego", "        data: x",
                "  mode: warn", "!!python/object:os.system", "&a [*a, *a]", "{", "- [", "'", ": :", "\t"]


@PROPERTY
@given(st.one_of(st.text(max_size=200), st.lists(st.sampled_from(POLICY_WORDS), max_size=25).map("\n".join)))
def test_the_policy_importer_parses_or_raises_policy_errors(text: str) -> None:
    try:
        parse_policy(text)
    except ProvenanceError:
        pass
