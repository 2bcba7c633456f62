"""The TEST-ONLY Sigstore: the real ``sigstore`` library, ``cryptography`` and the real cosign accept its output.

Negative tests pin the reason ``sigstore`` gives, so a verifier built on it can map each to a stable stage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
import sigstore_models.trustroot.v1 as trustroot_v1
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.certificate_transparency import LogEntryType
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

# An independent RFC 6962 inclusion-proof check (sigstore's own), to test our proofs against.
from sigstore._internal.merkle import _chain_border_right, _chain_inner, _decomp_inclusion_proof
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError as SigstoreVerificationError
from sigstore.models import Bundle, InvalidBundle, TrustedRoot
from sigstore.verify import Verifier, policy

from provenance.core.errors import TrustRootError
from provenance.core.testsigstore import (
    GITHUB_ACTIONS_ISSUER,
    IN_TOTO_PAYLOAD_TYPE,
    IN_TOTO_STATEMENT_V01,
    TRUSTED_ROOT_MEDIA_TYPE,
    GitHubWorkflow,
    LeafOptions,
    LogOptions,
    SanType,
    TestSigstore,
    TransparencyLog,
    dsse_pae,
    hash_children,
    hash_leaf,
    in_toto_statement,
    key_id,
)
from provenance.core.types import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    ANNOTATION_PREDICATE_TYPE,
    ANNOTATION_SIGNATURE,
    MediaType,
    SignedLayer,
)
from tests.support import require_binary

IDENTITY = "https://github.com/provenance-demo/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = GITHUB_ACTIONS_ISSUER
ARTIFACT = b"provenance test artifact\n"
SLSA_V1 = "https://slsa.dev/provenance/v1"
IMAGE_DIGEST = "sha256:" + "ab" * 32
IMAGE_REPOSITORY = "registry.local/provenance-demo/app"
VERSIONS = ("0.1", "0.2", "0.3")
BUNDLE_MEDIA_TYPES = {
    "0.1": "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "0.2": "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "0.3": "application/vnd.dev.sigstore.bundle.v0.3+json",
}


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore.create(name="pytest")


@pytest.fixture(scope="module")
def verifier(sigstore: TestSigstore) -> Verifier:
    trusted_root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(sigstore.trusted_root_json()))
    return Verifier(trusted_root=trusted_root)


@pytest.fixture(scope="module")
def statement() -> bytes:
    return in_toto_statement("app.tar.gz", hashlib.sha256(ARTIFACT).hexdigest(), SLSA_V1, {"buildType": "test"})


def identity_policy(identity: str = IDENTITY, issuer: str = ISSUER) -> policy.Identity:
    return policy.Identity(identity=identity, issuer=issuer)


def edit_bundle(bundle: bytes, edit: Any) -> bytes:
    """Apply ``edit`` to the parsed bundle and return the re-serialized JSON."""
    data = json.loads(bundle)
    edit(data)
    return json.dumps(data).encode()


def flip_base64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def leaf_key(certificate: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def root_from_proof(leaf_hash: bytes, index: int, size: int, proof: list[bytes]) -> bytes:
    """Recompute a Merkle root from an inclusion proof with sigstore's (independent) RFC 6962 code."""
    inner, border = _decomp_inclusion_proof(index, size)
    assert len(proof) == inner + border
    return _chain_border_right(_chain_inner(leaf_hash, proof[:inner], index), proof[inner:])


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH, the naive way."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hash_leaf(leaves[0])
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return hash_children(reference_root(leaves[:split]), reference_root(leaves[split:]))


# --- Sigstore bundles verify with the real sigstore library ------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_message_signature_bundle_verifies_with_sigstore(
    sigstore: TestSigstore, verifier: Verifier, version: str
) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, version=version)

    verifier.verify_artifact(ARTIFACT, Bundle.from_json(raw), identity_policy())

    data = json.loads(raw)
    material = data["verificationMaterial"]
    assert data["mediaType"] == BUNDLE_MEDIA_TYPES[version]
    assert ("certificate" in material) == (version == "0.3")
    assert ("x509CertificateChain" in material) == (version != "0.3")
    entry = material["tlogEntries"][0]
    assert entry["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.1"}
    assert {"inclusionPromise", "inclusionProof"} <= entry.keys()
    assert int(entry["logIndex"]) > 0  # index 0 is the genesis entry


@pytest.mark.parametrize("version", VERSIONS)
def test_dsse_bundle_verifies_with_sigstore(
    sigstore: TestSigstore, verifier: Verifier, statement: bytes, version: str
) -> None:
    raw = sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=ISSUER, version=version)

    payload_type, payload = verifier.verify_dsse(Bundle.from_json(raw), identity_policy())

    assert (payload_type, payload) == (IN_TOTO_PAYLOAD_TYPE, statement)
    entry = json.loads(raw)["verificationMaterial"]["tlogEntries"][0]
    assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}


def test_trusted_root_file_loads_with_sigstore(sigstore: TestSigstore, tmp_path: Path) -> None:
    path = tmp_path / "trusted_root.json"
    path.write_bytes(sigstore.trusted_root_json())
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)

    Verifier(trusted_root=TrustedRoot.from_file(str(path))).verify_artifact(
        ARTIFACT, Bundle.from_json(raw), identity_policy()
    )


def test_trusted_root_describes_the_private_instance(sigstore: TestSigstore) -> None:
    root = json.loads(sigstore.trusted_root_json())

    assert root["mediaType"] == TRUSTED_ROOT_MEDIA_TYPE
    assert root["timestampAuthorities"] == []
    [tlog], [ctlog], [ca] = root["tlogs"], root["ctlogs"], root["certificateAuthorities"]
    assert base64.b64decode(tlog["logId"]["keyId"]) == sigstore.rekor_log_id == key_id(sigstore.rekor_public_key)
    assert base64.b64decode(ctlog["logId"]["keyId"]) == sigstore.ct_log_id == key_id(sigstore.ct_public_key)
    assert hashlib.sha256(base64.b64decode(tlog["publicKey"]["rawBytes"])).digest() == sigstore.rekor_log_id
    for instance in (tlog, ctlog):
        assert instance["hashAlgorithm"] == "SHA2_256"
        assert instance["publicKey"]["keyDetails"] == "PKIX_ECDSA_P256_SHA_256"
        start = datetime.fromisoformat(instance["publicKey"]["validFor"]["start"])
        assert start <= datetime.now(UTC) - timedelta(hours=23)
    chain = [x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"])) for c in ca["certChain"]["certificates"]]
    assert chain == [sigstore.intermediate_certificate, sigstore.root_certificate]
    assert ca["subject"]["commonName"] == "pytest-root"
    assert "TEST ONLY" in ca["subject"]["organization"]
    for certificate in chain:
        assert certificate.not_valid_before_utc <= datetime.now(UTC) - timedelta(hours=23)


def test_back_dated_signature_verifies_with_certificate_valid_at_signing(
    sigstore: TestSigstore, verifier: Verifier
) -> None:
    # Sigstore's rule: the short-lived certificate must be valid when the log integrated the entry, not now.
    then = datetime.now(UTC) - timedelta(hours=2)
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, now=then)

    verifier.verify_artifact(ARTIFACT, Bundle.from_json(raw), identity_policy())
    assert int(json.loads(raw)["verificationMaterial"]["tlogEntries"][0]["integratedTime"]) == int(then.timestamp())


def test_email_identity_verifies(sigstore: TestSigstore, verifier: Verifier) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity="release@example.test", issuer="https://accounts.example.test")

    verifier.verify_artifact(
        ARTIFACT, Bundle.from_json(raw), identity_policy("release@example.test", "https://accounts.example.test")
    )


def test_github_workflow_extensions_verify_with_sigstore_policies(sigstore: TestSigstore, verifier: Verifier) -> None:
    workflow = GitHubWorkflow(repository="provenance-demo/app", sha="5f1c0de3" * 5, trigger="release")
    raw = sigstore.sign_blob_bundle(
        ARTIFACT, identity=workflow.identity, issuer=ISSUER, leaf=LeafOptions(github=workflow)
    )

    verifier.verify_artifact(
        ARTIFACT,
        Bundle.from_json(raw),
        policy.AllOf(
            [
                identity_policy(workflow.identity),
                policy.OIDCIssuerV2(ISSUER),
                policy.GitHubWorkflowRepository("provenance-demo/app"),
                policy.GitHubWorkflowSHA("5f1c0de3" * 5),
                policy.GitHubWorkflowTrigger("release"),
                policy.GitHubWorkflowRef("refs/heads/main"),
                policy.OIDCSourceRepositoryURI("https://github.com/provenance-demo/app"),
                policy.OIDCBuildSignerURI(workflow.identity),
            ]
        ),
    )
    assert workflow.identity == "https://github.com/provenance-demo/app/.github/workflows/release.yml@refs/heads/main"


# --- sigstore rejects what it should, for the reason it should --------------------------------------------------


def test_sigstore_rejects_other_identity(sigstore: TestSigstore, verifier: Verifier) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)

    with pytest.raises(SigstoreVerificationError, match="SANs do not match"):
        verifier.verify_artifact(ARTIFACT, Bundle.from_json(raw), identity_policy("https://github.com/evil/x"))


def test_sigstore_rejects_other_issuer(sigstore: TestSigstore, verifier: Verifier) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer="https://issuer.evil.test")

    with pytest.raises(SigstoreVerificationError, match="OIDCIssuer does not match"):
        verifier.verify_artifact(ARTIFACT, Bundle.from_json(raw), identity_policy())


def test_sigstore_rejects_other_artifact(sigstore: TestSigstore, verifier: Verifier) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)

    with pytest.raises(SigstoreVerificationError, match="digest mismatch"):
        verifier.verify_artifact(ARTIFACT + b"tampered", Bundle.from_json(raw), identity_policy())


def test_sigstore_rejects_tampered_signature(sigstore: TestSigstore, verifier: Verifier) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)

    def edit(data: dict[str, Any]) -> None:
        data["messageSignature"].pop("messageDigest")
        data["messageSignature"]["signature"] = base64.b64encode(
            ec.generate_private_key(ec.SECP256R1()).sign(ARTIFACT, ec.ECDSA(hashes.SHA256()))
        ).decode()

    with pytest.raises(SigstoreVerificationError, match="Signature is invalid for input"):
        verifier.verify_artifact(ARTIFACT, Bundle.from_json(edit_bundle(raw, edit)), identity_policy())


def test_sigstore_rejects_tampered_dsse_payload(sigstore: TestSigstore, verifier: Verifier, statement: bytes) -> None:
    raw = sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=ISSUER)
    tampered = statement.replace(b"buildType", b"buildTypo")

    def edit(data: dict[str, Any]) -> None:
        data["dsseEnvelope"]["payload"] = base64.b64encode(tampered).decode()

    with pytest.raises(SigstoreError, match="DSSE: invalid signature"):
        verifier.verify_dsse(Bundle.from_json(edit_bundle(raw, edit)), identity_policy())


def test_sigstore_rejects_certificate_without_sct(sigstore: TestSigstore, verifier: Verifier) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, leaf=LeafOptions(with_sct=False))

    with pytest.raises(SigstoreVerificationError, match="does not contain a signed certificate timestamp"):
        verifier.verify_artifact(ARTIFACT, Bundle.from_json(raw), identity_policy())


def test_sigstore_rejects_sct_from_unknown_ct_log(sigstore: TestSigstore, verifier: Verifier) -> None:
    other_ct_key = ec.generate_private_key(ec.SECP256R1())
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, leaf=LeafOptions(sct_key=other_ct_key))

    with pytest.raises(SigstoreVerificationError, match="SCT verify failed"):
        verifier.verify_artifact(ARTIFACT, Bundle.from_json(raw), identity_policy())


def test_sigstore_rejects_checkpoint_signed_by_other_key(sigstore: TestSigstore, verifier: Verifier) -> None:
    other_log_key = ec.generate_private_key(ec.SECP256R1())
    raw = sigstore.sign_blob_bundle(
        ARTIFACT, identity=IDENTITY, issuer=ISSUER, log=LogOptions(checkpoint_key=other_log_key)
    )

    with pytest.raises(SigstoreVerificationError, match="checkpoint: Signature not found for log ID"):
        verifier.verify_artifact(ARTIFACT, Bundle.from_json(raw), identity_policy())


def test_sigstore_rejects_checkpoint_with_forged_signature(sigstore: TestSigstore, verifier: Verifier) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)

    def edit(data: dict[str, Any]) -> None:
        # Keep the right key hint but sign the note with another key.
        checkpoint = data["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
        note, signature_line = checkpoint["envelope"].split("\n\n")
        name, blob = signature_line.removeprefix("\u2014 ").strip().split(" ")
        forged = ec.generate_private_key(ec.SECP256R1()).sign(note.encode() + b"\n", ec.ECDSA(hashes.SHA256()))
        hint = base64.b64decode(blob)[:4]
        checkpoint["envelope"] = f"{note}\n\n\u2014 {name} {base64.b64encode(hint + forged).decode()}\n"

    with pytest.raises(SigstoreVerificationError, match="checkpoint: invalid signature"):
        verifier.verify_artifact(ARTIFACT, Bundle.from_json(edit_bundle(raw, edit)), identity_policy())


def test_sigstore_rejects_corrupted_inclusion_proof(sigstore: TestSigstore, verifier: Verifier) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)

    def edit(data: dict[str, Any]) -> None:
        proof = data["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
        proof["hashes"][0] = flip_base64(proof["hashes"][0])

    with pytest.raises(SigstoreVerificationError, match="inclusion proof contains invalid root hash"):
        verifier.verify_artifact(ARTIFACT, Bundle.from_json(edit_bundle(raw, edit)), identity_policy())


def test_sigstore_rejects_corrupted_signed_entry_timestamp(sigstore: TestSigstore, verifier: Verifier) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)

    def edit(data: dict[str, Any]) -> None:
        promise = data["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
        promise["signedEntryTimestamp"] = flip_base64(promise["signedEntryTimestamp"])

    with pytest.raises(SigstoreVerificationError, match="SET: invalid inclusion promise"):
        verifier.verify_artifact(ARTIFACT, Bundle.from_json(edit_bundle(raw, edit)), identity_policy())


def test_sigstore_rejects_log_body_of_another_entry(sigstore: TestSigstore, verifier: Verifier) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)
    other = json.loads(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER))

    def edit(data: dict[str, Any]) -> None:
        data["verificationMaterial"]["tlogEntries"] = other["verificationMaterial"]["tlogEntries"]

    with pytest.raises(SigstoreVerificationError, match="inconsistent with other materials"):
        verifier.verify_artifact(ARTIFACT, Bundle.from_json(edit_bundle(raw, edit)), identity_policy())


def test_sigstore_rejects_certificate_not_valid_at_integration(sigstore: TestSigstore, verifier: Verifier) -> None:
    expired = LeafOptions(not_before=datetime.now(UTC) - timedelta(hours=1))
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, leaf=expired)

    with pytest.raises(SigstoreVerificationError, match="failed to build timestamp certificate chain"):
        verifier.verify_artifact(ARTIFACT, Bundle.from_json(raw), identity_policy())


def test_sigstore_rejects_another_test_sigstore(verifier: Verifier) -> None:
    stranger = TestSigstore.create(name="stranger")
    raw = stranger.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)

    with pytest.raises(SigstoreVerificationError, match="certificate chain"):
        verifier.verify_artifact(ARTIFACT, Bundle.from_json(raw), identity_policy())


@pytest.mark.parametrize(
    ("log", "reason"),
    [
        (LogOptions(with_inclusion_proof=False), "inclusionProof\n  Field required"),
        (LogOptions(with_checkpoint=False), "inclusion proof, with checkpoint"),
    ],
)
def test_sigstore_rejects_bundle_without_proof_or_checkpoint(
    sigstore: TestSigstore, log: LogOptions, reason: str
) -> None:
    # cosign and sigstore-go accept these on the SET alone; sigstore-python does not (see the notes).
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, log=log)

    with pytest.raises(InvalidBundle, match=reason):
        Bundle.from_json(raw)


def test_other_name_identity_does_not_match_sigstore_identity_policy(
    sigstore: TestSigstore, verifier: Verifier
) -> None:
    # A known sigstore limitation: Identity compares the OtherName's raw DER, so decode the value yourself.
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity="alice", issuer=ISSUER)
    bundle = Bundle.from_json(raw)
    [other_name] = bundle.signing_certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.OtherName)

    assert other_name.type_id.dotted_string == "1.3.6.1.4.1.57264.1.7"
    assert other_name.value == b"\x0c\x05alice"  # DER UTF8String
    verifier.verify_artifact(ARTIFACT, bundle, policy.OIDCIssuer(ISSUER))
    with pytest.raises(SigstoreVerificationError, match="SANs do not match"):
        verifier.verify_artifact(ARTIFACT, bundle, identity_policy("alice"))


def test_unknown_bundle_version_is_refused(sigstore: TestSigstore) -> None:
    with pytest.raises(ValueError, match="unknown bundle version"):
        sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, version="0.4")


# --- the leaf certificate follows Fulcio's profile ----------------------------------------------------------------


def test_leaf_certificate_follows_fulcio_profile(sigstore: TestSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = sigstore.issue_certificate(key.public_key(), identity=IDENTITY, issuer=ISSUER, now=now)
    extensions = certificate.extensions

    assert certificate.subject == x509.Name([])
    assert certificate.issuer == sigstore.intermediate_certificate.subject
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc == timedelta(minutes=10)
    assert certificate.not_valid_before_utc == now.replace(microsecond=0)
    san = extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.UniformResourceIdentifier) == [IDENTITY]
    key_usage = extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.digital_signature and not key_usage.value.key_cert_sign
    assert list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CODE_SIGNING]
    intermediate_ski = sigstore.intermediate_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    aki = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == intermediate_ski.value.digest
    assert extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest == (
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    )
    issuer_v1 = extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")).value
    issuer_v2 = extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")).value
    assert isinstance(issuer_v1, x509.UnrecognizedExtension) and issuer_v1.value == ISSUER.encode()
    assert isinstance(issuer_v2, x509.UnrecognizedExtension)
    assert issuer_v2.value == b"\x0c" + bytes([len(ISSUER)]) + ISSUER.encode()
    certificate.verify_directly_issued_by(sigstore.intermediate_certificate)
    sigstore.intermediate_certificate.verify_directly_issued_by(sigstore.root_certificate)


def test_embedded_sct_is_signed_by_the_ct_log_over_the_precertificate(sigstore: TestSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = sigstore.issue_certificate(key.public_key(), identity=IDENTITY, issuer=ISSUER)
    [sct] = certificate.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value

    assert sct.entry_type == LogEntryType.PRE_CERTIFICATE
    assert sct.log_id == sigstore.ct_log_id
    # RFC 6962 §3.2 digitally-signed struct, rebuilt here independently of the module.
    tbs = certificate.tbs_precertificate_bytes
    issuer_key_hash = hashlib.sha256(
        sigstore.intermediate_certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()
    timestamp_ms = int(sct.timestamp.replace(tzinfo=UTC).timestamp() * 1000)
    signed = (
        struct.pack("!BBQH", 0, 0, timestamp_ms, 1) + issuer_key_hash + len(tbs).to_bytes(3, "big") + tbs + b"\x00\x00"
    )
    sigstore.ct_public_key.verify(sct.signature, signed, ec.ECDSA(hashes.SHA256()))


def test_leaf_options_shape_the_certificate(sigstore: TestSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    certificate = sigstore.issue_certificate(
        key,
        identity="https://example.test/ci",
        issuer=ISSUER,
        leaf=LeafOptions(san_type=SanType.EMAIL, not_before=start, validity=timedelta(minutes=1), with_sct=False),
    )

    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["https://example.test/ci"]
    assert (certificate.not_valid_before_utc, certificate.not_valid_after_utc) == (start, start + timedelta(minutes=1))
    with pytest.raises(x509.ExtensionNotFound):
        certificate.extensions.get_extension_for_oid(ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS)


# --- the log ------------------------------------------------------------------------------------------------------


def test_inclusion_proofs_recompute_the_root_for_every_entry_and_tree_size() -> None:
    log = TransparencyLog(private_key=ec.generate_private_key(ec.SECP256R1()), base_url="https://rekor.log.test")
    bodies = [f"entry {i}".encode() for i in range(19)]
    assert log.root_hash() == hashlib.sha256(b"").digest()
    for body in bodies:
        log.append(body, integrated_time=1_700_000_000)

    for size in range(1, len(bodies) + 1):
        expected = reference_root(bodies[:size])
        assert log.root_hash(size) == expected
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            assert (proof.log_index, proof.tree_size, proof.root_hash) == (index, size, expected)
            assert root_from_proof(hash_leaf(bodies[index]), index, size, list(proof.hashes)) == expected


def test_checkpoint_is_a_signed_note_with_the_log_key_hint(sigstore: TestSigstore) -> None:
    size = len(sigstore.log)
    checkpoint = sigstore.log.checkpoint(size)

    match = re.fullmatch(r"(?s)(([^\n]+)\n(\d+)\n([A-Za-z0-9+/=]+)\n)\n\u2014 (\S+) ([A-Za-z0-9+/=]+)\n", checkpoint)
    assert match, checkpoint
    note, origin, tree_size, root, name, signature = match.groups()
    assert origin == f"{sigstore.log.hostname} - {sigstore.log.tree_id}" and name == sigstore.log.hostname
    assert int(tree_size) == size and base64.b64decode(root) == sigstore.log.root_hash(size)
    raw = base64.b64decode(signature)
    assert raw[:4] == sigstore.rekor_log_id[:4]
    sigstore.rekor_public_key.verify(raw[4:], note.encode(), ec.ECDSA(hashes.SHA256()))


def test_rekor_api_entry_is_what_sigstore_parses_from_rekor(sigstore: TestSigstore, verifier: Verifier) -> None:
    from sigstore._internal.trust import KeyringPurpose
    from sigstore.models import TransparencyLogEntry

    raw = json.loads(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER))
    index = int(raw["verificationMaterial"]["tlogEntries"][0]["logIndex"])
    response = sigstore.log.rekor_api_entry(index)

    [uuid] = response
    assert uuid == f"{sigstore.log.tree_id:016x}{sigstore.log.entry(index).leaf_hash.hex()}"
    entry = TransparencyLogEntry._from_v1_response(response)
    entry._verify(verifier._trusted_root.rekor_keyring(KeyringPurpose.VERIFY))  # proof, checkpoint and SET


# --- cosign legacy layers, checked with cryptography ---------------------------------------------------------------


def verify_chain(leaf: x509.Certificate, chain_pem: str, root: x509.Certificate, at: datetime) -> None:
    """Verify ``leaf`` up to ``root`` at time ``at`` as sigstore does (codeSigning EKU, not clientAuth)."""
    intermediates = x509.load_pem_x509_certificates(chain_pem.encode())
    eku = (x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None)
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(*eku)
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(*eku)
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    verifier.verify(leaf, intermediates)


def check_cosign_bundle(sigstore: TestSigstore, layer: SignedLayer) -> dict[str, Any]:
    """Check the bundle annotation (SET, log id, inclusion in the log) and return the decoded body."""
    bundle = json.loads(layer.annotations[ANNOTATION_BUNDLE])
    assert list(bundle) == ["SignedEntryTimestamp", "Payload"]
    payload = bundle["Payload"]
    assert list(payload) == ["body", "integratedTime", "logIndex", "logID"]
    assert payload["logID"] == sigstore.rekor_log_id.hex()
    canonical = rfc8785.dumps(payload)
    sigstore.rekor_public_key.verify(
        base64.b64decode(bundle["SignedEntryTimestamp"]), canonical, ec.ECDSA(hashes.SHA256())
    )
    body = base64.b64decode(payload["body"])
    assert body == rfc8785.dumps(json.loads(body))  # Rekor stores RFC 8785 JSON

    proof = sigstore.log.inclusion_proof(payload["logIndex"])
    recomputed = root_from_proof(hash_leaf(body), payload["logIndex"], proof.tree_size, list(proof.hashes))
    assert recomputed == proof.root_hash == sigstore.log.root_hash(proof.tree_size)

    leaf = x509.load_pem_x509_certificate(layer.annotations[ANNOTATION_CERTIFICATE].encode())
    verify_chain(
        leaf,
        layer.annotations[ANNOTATION_CHAIN],
        sigstore.root_certificate,
        datetime.fromtimestamp(payload["integratedTime"], UTC),
    )
    return dict(json.loads(body))


def test_cosign_signature_layer_is_what_cosign_writes(sigstore: TestSigstore) -> None:
    layer = sigstore.cosign_signature_layer(IMAGE_DIGEST, IMAGE_REPOSITORY, identity=IDENTITY, issuer=ISSUER)

    assert layer.media_type == MediaType.COSIGN_SIMPLESIGNING
    assert layer.payload == (
        b'{"critical":{"identity":{"docker-reference":"registry.local/provenance-demo/app"},'
        b'"image":{"docker-manifest-digest":"sha256:' + b"ab" * 32 + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    assert set(layer.annotations) == {ANNOTATION_SIGNATURE, ANNOTATION_CERTIFICATE, ANNOTATION_CHAIN, ANNOTATION_BUNDLE}
    assert layer.annotations[ANNOTATION_CHAIN] == sigstore.chain_pem.decode()


def test_cosign_signature_layer_verifies_with_cryptography(sigstore: TestSigstore) -> None:
    layer = sigstore.cosign_signature_layer(IMAGE_DIGEST, IMAGE_REPOSITORY, identity=IDENTITY, issuer=ISSUER)
    leaf = x509.load_pem_x509_certificate(layer.annotations[ANNOTATION_CERTIFICATE].encode())
    signature = base64.b64decode(layer.annotations[ANNOTATION_SIGNATURE])

    leaf_key(leaf).verify(signature, layer.payload, ec.ECDSA(hashes.SHA256()))
    body = check_cosign_bundle(sigstore, layer)

    assert body["apiVersion"] == "0.0.1" and body["kind"] == "hashedrekord"
    assert body["spec"]["data"]["hash"] == {"algorithm": "sha256", "value": hashlib.sha256(layer.payload).hexdigest()}
    assert base64.b64decode(body["spec"]["signature"]["content"]) == signature
    public_key = base64.b64decode(body["spec"]["signature"]["publicKey"]["content"])
    assert public_key.decode() == layer.annotations[ANNOTATION_CERTIFICATE]


def test_cosign_attestation_layer_verifies_with_cryptography(sigstore: TestSigstore) -> None:
    statement = in_toto_statement(
        IMAGE_REPOSITORY, "ab" * 32, SLSA_V1, {"builder": {"id": "x"}}, statement_type=IN_TOTO_STATEMENT_V01
    )
    layer = sigstore.cosign_attestation_layer(statement, identity=IDENTITY, issuer=ISSUER)
    leaf = x509.load_pem_x509_certificate(layer.annotations[ANNOTATION_CERTIFICATE].encode())

    assert layer.media_type == MediaType.DSSE_ENVELOPE
    assert layer.annotations[ANNOTATION_PREDICATE_TYPE] == SLSA_V1
    assert layer.annotations[ANNOTATION_SIGNATURE] == ""
    envelope = json.loads(layer.payload)
    assert list(envelope) == ["payloadType", "payload", "signatures"]
    assert envelope["signatures"][0]["keyid"] == ""
    assert base64.b64decode(envelope["payload"]) == statement
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    leaf_key(leaf).verify(signature, dsse_pae(IN_TOTO_PAYLOAD_TYPE, statement), ec.ECDSA(hashes.SHA256()))

    body = check_cosign_bundle(sigstore, layer)
    assert body["apiVersion"] == "0.0.2" and body["kind"] == "intoto"
    content = body["spec"]["content"]
    assert content["hash"] == {"algorithm": "sha256", "value": hashlib.sha256(layer.payload).hexdigest()}
    assert content["payloadHash"] == {"algorithm": "sha256", "value": hashlib.sha256(statement).hexdigest()}
    [entry_signature] = content["envelope"]["signatures"]
    assert content["envelope"]["payloadType"] == IN_TOTO_PAYLOAD_TYPE and "payload" not in content["envelope"]
    assert base64.b64decode(base64.b64decode(entry_signature["sig"])) == signature  # Rekor's double base64
    assert base64.b64decode(entry_signature["publicKey"]).decode() == layer.annotations[ANNOTATION_CERTIFICATE]


def test_key_based_bundle_is_refused_by_sigstore_but_verifies_with_cryptography(sigstore: TestSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    raw = sigstore.sign_blob_bundle_with_key(ARTIFACT, key)
    data = json.loads(raw)

    with pytest.raises(InvalidBundle, match="expected certificate in bundle"):
        Bundle.from_json(raw)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert data["verificationMaterial"]["publicKey"] == {
        "hint": base64.b64encode(hashlib.sha256(spki).digest()).decode()
    }
    signature = base64.b64decode(data["messageSignature"]["signature"])
    key.public_key().verify(signature, ARTIFACT, ec.ECDSA(hashes.SHA256()))
    entry = data["verificationMaterial"]["tlogEntries"][0]
    body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
    assert base64.b64decode(body["spec"]["signature"]["publicKey"]["content"]) == key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert body["spec"]["data"]["hash"]["value"] == hashlib.sha256(ARTIFACT).hexdigest()


def test_key_based_cosign_signature_layer_has_no_certificate(sigstore: TestSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    layer = sigstore.cosign_signature_layer_with_key(IMAGE_DIGEST, IMAGE_REPOSITORY, key)

    assert set(layer.annotations) == {ANNOTATION_SIGNATURE, ANNOTATION_BUNDLE}
    key.public_key().verify(
        base64.b64decode(layer.annotations[ANNOTATION_SIGNATURE]), layer.payload, ec.ECDSA(hashes.SHA256())
    )
    payload = json.loads(layer.annotations[ANNOTATION_BUNDLE])["Payload"]
    sigstore.rekor_public_key.verify(
        base64.b64decode(json.loads(layer.annotations[ANNOTATION_BUNDLE])["SignedEntryTimestamp"]),
        rfc8785.dumps(payload),
        ec.ECDSA(hashes.SHA256()),
    )


# --- persistence and cost ------------------------------------------------------------------------------------------


def test_save_and_load_keep_trust_root_and_log(tmp_path: Path) -> None:
    original = TestSigstore.create(name="persisted")
    original.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)
    original.cosign_signature_layer(IMAGE_DIGEST, IMAGE_REPOSITORY, identity=IDENTITY, issuer=ISSUER)
    original.save(tmp_path)

    loaded = TestSigstore.load(tmp_path)

    assert loaded.trusted_root_json() == original.trusted_root_json() == (tmp_path / "trusted_root.json").read_bytes()
    assert loaded.log.entries() == original.log.entries()
    assert loaded.log.root_hash() == original.log.root_hash()
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "rekor.key.pem").read_bytes()  # unencrypted: test tooling
    raw = loaded.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)
    assert int(json.loads(raw)["verificationMaterial"]["tlogEntries"][0]["logIndex"]) == 3
    old_root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(original.trusted_root_json()))
    Verifier(trusted_root=old_root).verify_artifact(ARTIFACT, Bundle.from_json(raw), identity_policy())


def test_load_refuses_a_directory_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"format": "something-else"}')

    with pytest.raises(TrustRootError, match="not a test sigstore state"):
        TestSigstore.load(tmp_path)


def test_creating_and_signing_is_fast() -> None:
    started = time.perf_counter()
    sigstore = TestSigstore.create(name="timed")
    for _ in range(20):
        sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)
    elapsed = time.perf_counter() - started

    assert elapsed < 2.0, f"create + 20 signatures took {elapsed:.3f}s"


# --- interop with the real cosign ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cosign() -> str:
    return require_binary("cosign", "run ../shared/tools/install-cosign")


def run_cosign(
    cosign: str, home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "HOME": str(home), "TUF_ROOT": str(home / "tuf"), **(env or {})}
    return subprocess.run([cosign, *args], capture_output=True, text=True, timeout=120, env=environment, check=False)


@pytest.mark.integration
def test_real_cosign_verifies_sigstore_bundles(
    sigstore: TestSigstore, cosign: str, statement: bytes, tmp_path: Path
) -> None:
    (tmp_path / "trusted_root.json").write_bytes(sigstore.trusted_root_json())
    (tmp_path / "artifact").write_bytes(ARTIFACT)
    (tmp_path / "blob.json").write_bytes(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER))
    (tmp_path / "dsse.json").write_bytes(sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=ISSUER))
    common = [
        "--new-bundle-format",
        "--trusted-root",
        str(tmp_path / "trusted_root.json"),
        "--certificate-oidc-issuer",
        ISSUER,
    ]

    blob = run_cosign(
        cosign,
        tmp_path,
        "verify-blob",
        *common,
        "--bundle",
        str(tmp_path / "blob.json"),
        "--certificate-identity",
        IDENTITY,
        str(tmp_path / "artifact"),
    )
    dsse = run_cosign(
        cosign,
        tmp_path,
        "verify-blob-attestation",
        *common,
        "--bundle",
        str(tmp_path / "dsse.json"),
        "--certificate-identity",
        IDENTITY,
        "--type",
        SLSA_V1,
        str(tmp_path / "artifact"),
    )
    stranger = run_cosign(
        cosign,
        tmp_path,
        "verify-blob",
        *common,
        "--bundle",
        str(tmp_path / "blob.json"),
        "--certificate-identity",
        "https://github.com/evil/x",
        str(tmp_path / "artifact"),
    )

    assert blob.returncode == 0, blob.stderr
    assert dsse.returncode == 0, dsse.stderr
    assert stranger.returncode != 0 and "no matching CertificateIdentity" in stranger.stderr


@pytest.mark.integration
def test_real_cosign_verifies_legacy_signature_and_attestation(
    sigstore: TestSigstore, cosign: str, tmp_path: Path
) -> None:
    # cosign's --trusted-root works only with the new bundle format; legacy material takes the keys from files.
    intermediate, root = x509.load_pem_x509_certificates(sigstore.chain_pem)
    files = {
        "rekor.pub": sigstore.rekor_public_key_pem,
        "ctlog.pub": sigstore.ct_public_key_pem,
        "root.pem": root.public_bytes(serialization.Encoding.PEM),
        "intermediate.pem": intermediate.public_bytes(serialization.Encoding.PEM),
        "artifact": ARTIFACT,
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    env = {
        "SIGSTORE_REKOR_PUBLIC_KEY": str(tmp_path / "rekor.pub"),
        "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(tmp_path / "ctlog.pub"),
    }
    trust = [
        "--offline",
        "--ca-roots",
        str(tmp_path / "root.pem"),
        "--ca-intermediates",
        str(tmp_path / "intermediate.pem"),
        "--certificate-identity",
        IDENTITY,
        "--certificate-oidc-issuer",
        ISSUER,
    ]

    def legacy_bundle(layer: SignedLayer, base64_signature: str) -> Path:
        """The layer's annotations as cosign's blob bundle (the same rekorBundle cosign checks for images)."""
        path = tmp_path / f"{layer.digest.hex}.bundle"
        path.write_text(
            json.dumps(
                {
                    "base64Signature": base64_signature,
                    "cert": base64.b64encode(layer.annotations[ANNOTATION_CERTIFICATE].encode()).decode(),
                    "rekorBundle": json.loads(layer.annotations[ANNOTATION_BUNDLE]),
                }
            )
        )
        return path

    signature = sigstore.cosign_signature_layer(IMAGE_DIGEST, IMAGE_REPOSITORY, identity=IDENTITY, issuer=ISSUER)
    (tmp_path / "payload.json").write_bytes(signature.payload)
    signed = run_cosign(
        cosign,
        tmp_path,
        "verify-blob",
        *trust,
        "--bundle",
        str(legacy_bundle(signature, signature.annotations[ANNOTATION_SIGNATURE])),
        str(tmp_path / "payload.json"),
        env=env,
    )

    statement = in_toto_statement(
        "artifact", hashlib.sha256(ARTIFACT).hexdigest(), SLSA_V1, {"x": 1}, statement_type=IN_TOTO_STATEMENT_V01
    )
    attestation = sigstore.cosign_attestation_layer(statement, identity=IDENTITY, issuer=ISSUER)
    attested = run_cosign(
        cosign,
        tmp_path,
        "verify-blob-attestation",
        *trust,
        "--type",
        SLSA_V1,
        "--bundle",
        str(legacy_bundle(attestation, base64.b64encode(attestation.payload).decode())),
        str(tmp_path / "artifact"),
        env=env,
    )

    foreign = sigstore.cosign_signature_layer(
        IMAGE_DIGEST,
        IMAGE_REPOSITORY,
        identity=IDENTITY,
        issuer=ISSUER,
        leaf=LeafOptions(sct_key=ec.generate_private_key(ec.SECP256R1())),
    )
    (tmp_path / "payload2.json").write_bytes(foreign.payload)
    foreign_sct = run_cosign(
        cosign,
        tmp_path,
        "verify-blob",
        *trust,
        "--bundle",
        str(legacy_bundle(foreign, foreign.annotations[ANNOTATION_SIGNATURE])),
        str(tmp_path / "payload2.json"),
        env=env,
    )

    assert signed.returncode == 0, signed.stderr
    assert attested.returncode == 0, attested.stderr
    assert foreign_sct.returncode != 0 and "ctfe public key not found" in foreign_sct.stderr, foreign_sct.stderr


@pytest.mark.integration
def test_real_cosign_verifies_key_based_signatures(sigstore: TestSigstore, cosign: str, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "cosign.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "rekor.pub").write_bytes(sigstore.rekor_public_key_pem)
    (tmp_path / "trusted_root.json").write_bytes(sigstore.trusted_root_json())
    (tmp_path / "artifact").write_bytes(ARTIFACT)
    (tmp_path / "artifact.sigstore.json").write_bytes(sigstore.sign_blob_bundle_with_key(ARTIFACT, key))
    layer = sigstore.cosign_signature_layer_with_key(IMAGE_DIGEST, IMAGE_REPOSITORY, key)
    (tmp_path / "payload.json").write_bytes(layer.payload)
    (tmp_path / "payload.bundle").write_text(
        json.dumps(
            {
                "base64Signature": layer.annotations[ANNOTATION_SIGNATURE],
                "rekorBundle": json.loads(layer.annotations[ANNOTATION_BUNDLE]),
            }
        )
    )

    bundle = run_cosign(
        cosign,
        tmp_path,
        "verify-blob",
        "--new-bundle-format",
        "--trusted-root",
        str(tmp_path / "trusted_root.json"),
        "--key",
        str(tmp_path / "cosign.pub"),
        "--bundle",
        str(tmp_path / "artifact.sigstore.json"),
        str(tmp_path / "artifact"),
    )
    legacy = run_cosign(
        cosign,
        tmp_path,
        "verify-blob",
        "--offline",
        "--key",
        str(tmp_path / "cosign.pub"),
        "--bundle",
        str(tmp_path / "payload.bundle"),
        str(tmp_path / "payload.json"),
        env={"SIGSTORE_REKOR_PUBLIC_KEY": str(tmp_path / "rekor.pub")},
    )

    assert bundle.returncode == 0, bundle.stderr
    assert legacy.returncode == 0, legacy.stderr
