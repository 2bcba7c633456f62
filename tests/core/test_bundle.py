"""Sigstore bundle verification: every failure pinned to its stage and stable code, through both engines.

Bundles sigstore-python reads completely go through ``sigstore`` (the "sigstore" engine), and its rejection
stands; the rest (v0.1 SET only, key-based, intoto entries) through our own checks (the "own" engine), each
acceptance there resting on a named leniency. Each negative case runs through both where both apply, and must
give the same code.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from provenance.core.claims import WorkflowClaims
from provenance.core.testsigstore import (
    GITHUB_ACTIONS_ISSUER,
    GitHubWorkflow,
    LeafOptions,
    LogOptions,
    TestSigstore,
    _hashedrekord_body,
    in_toto_statement,
)
from provenance.core.trustroot import TrustRoot
from provenance.core.types import Digest, IdentityPolicy, Leniency, Outcome, Stage
from provenance.core.verify import BundleVerification, verify_bundle

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = GITHUB_ACTIONS_ISSUER
POLICY = IdentityPolicy(issuer=ISSUER, identity=IDENTITY)
ARTIFACT = b"the released artifact\n"
SLSA = "https://slsa.dev/provenance/v1"
# "sigstore": proof + checkpoint + SET, which sigstore verifies; "own": a v0.1 bundle with the SET only, which the
# v0.1 format allows and sigstore refuses (the named leniency "v01_inclusion_promise").
ENGINES: dict[str, dict[str, Any]] = {
    "sigstore": {"log": LogOptions()},
    "own": {"log": LogOptions(with_inclusion_proof=False), "version": "0.1"},
}


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore.create(name="bundle-tests")


@pytest.fixture(scope="module")
def root(sigstore: TestSigstore) -> TrustRoot:
    return TrustRoot.from_json(sigstore.trusted_root_json(), name="bundle-tests")


@pytest.fixture(scope="module")
def statement() -> bytes:
    return in_toto_statement("app.tgz", hashlib.sha256(ARTIFACT).hexdigest(), SLSA, {"buildType": "test"})


def verify(raw: bytes, root: TrustRoot, artifact: bytes | Digest = ARTIFACT, **kwargs: Any) -> BundleVerification:
    kwargs.setdefault("identity", POLICY)
    return verify_bundle(raw, artifact=artifact, trust_root=root, **kwargs)


def codes(verification: BundleVerification) -> list[str]:
    return [c.code for c in verification.result.failures]


def edit(raw: bytes, change: Any) -> bytes:
    data = json.loads(raw)
    change(data)
    return json.dumps(data).encode()


def flip(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def pem(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


# -- what verifies ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.1", "0.2", "0.3"])
def test_message_signature_bundles_verify_with_an_inclusion_proof(
    sigstore: TestSigstore, root: TrustRoot, version: str
) -> None:
    result = verify(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, version=version), root)

    assert result.result.outcome is Outcome.VERIFIED, result.result.failures
    assert result.result.tlog == "inclusion_proof"
    assert (result.result.identity, result.result.issuer) == (IDENTITY, ISSUER)
    assert result.result.integrated_time is not None
    assert result.content == "message"


@pytest.mark.parametrize("version", ["0.1", "0.2", "0.3"])
def test_dsse_bundles_verify_and_return_the_statement(
    sigstore: TestSigstore, root: TrustRoot, statement: bytes, version: str
) -> None:
    raw = sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=ISSUER, version=version)

    by_bytes = verify(raw, root)
    by_digest = verify(raw, root, artifact=Digest.of(ARTIFACT))

    for result in (by_bytes, by_digest):
        assert result.is_verified, result.result.failures
        assert result.statement is not None and result.statement["predicateType"] == SLSA
        assert result.payload == statement
        assert result.result.extra["predicate_type"] == SLSA


def test_sha512_subject_matches_the_artifact(sigstore: TestSigstore, root: TrustRoot) -> None:
    statement = in_toto_statement("pkg.tgz", hashlib.sha512(ARTIFACT).hexdigest(), SLSA, {},
                                  digest_algorithm="sha512")
    raw = sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=ISSUER)

    assert verify(raw, root).is_verified
    assert verify(raw, root, artifact=Digest.of(ARTIFACT, "sha512")).is_verified
    assert codes(verify(raw, root, artifact=Digest.of(ARTIFACT))) == ["subject_mismatch"]  # sha256 given: no match


@pytest.mark.parametrize(
    "log",
    [LogOptions(with_inclusion_proof=False), LogOptions(with_checkpoint=False)],
    ids=["no-proof", "no-checkpoint"],
)
def test_v01_set_only_bundles_verify_as_a_weaker_inclusion_promise(
    sigstore: TestSigstore, root: TrustRoot, log: LogOptions
) -> None:
    result = verify(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, version="0.1", log=log),
                    root)

    assert result.is_verified, result.result.failures
    assert result.result.tlog == "inclusion_promise"
    assert result.result.leniencies == (Leniency.INCLUSION_PROMISE,)
    passed = {c.code for c in result.result.checks if c.ok}
    assert "tlog_set_ok" in passed and passed & {"tlog_promise_only", "tlog_proof_unsigned"}
    assert "lenient_v01_inclusion_promise" in passed  # shown as a check of its own


@pytest.mark.parametrize(
    "log",
    [LogOptions(with_inclusion_proof=False), LogOptions(with_checkpoint=False)],
    ids=["no-proof", "no-checkpoint"],
)
@pytest.mark.parametrize("version", ["0.2", "0.3"])
@pytest.mark.parametrize("content", ["message", "dsse"])
def test_v02_and_later_bundles_need_an_inclusion_proof_with_checkpoint_whatever_the_set_says(
    sigstore: TestSigstore, root: TrustRoot, statement: bytes, log: LogOptions, version: str, content: str
) -> None:
    if content == "message":
        raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, version=version, log=log)
    else:
        raw = sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=ISSUER, version=version, log=log)

    result = verify(raw, root)

    assert not result.is_verified
    assert codes(result)[0] == "tlog_inclusion_proof_missing", result.result.failures
    assert result.result.outcome is Outcome.INVALID


@pytest.mark.parametrize("version", ["0.2", "0.3"])
def test_key_based_v02_bundles_need_an_inclusion_proof_too(sigstore: TestSigstore, root: TrustRoot,
                                                           version: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    raw = sigstore.sign_blob_bundle_with_key(ARTIFACT, key, version=version,
                                             log=LogOptions(with_inclusion_proof=False))

    result = verify(raw, root, public_keys=(pem(key),))

    assert codes(result) == ["tlog_inclusion_proof_missing"]


def test_an_invalid_inclusion_proof_fails_although_the_set_verifies(sigstore: TestSigstore, root: TrustRoot) -> None:
    def corrupt(data: dict[str, Any]) -> None:
        proof = data["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
        proof["hashes"] = [flip(h) for h in proof["hashes"]] or proof["hashes"]
        proof["rootHash"] = flip(proof["rootHash"])

    raw = edit(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER), corrupt)

    result = verify(raw, root)

    assert not result.is_verified
    assert codes(result)[0] in {"tlog_inclusion_proof_invalid", "tlog_checkpoint_invalid"}, result.result.failures


def test_set_only_result_is_upgraded_when_the_log_gives_the_proof(sigstore: TestSigstore, root: TrustRoot) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, **ENGINES["own"])
    index = int(json.loads(raw)["verificationMaterial"]["tlogEntries"][0]["logIndex"])
    asked: list[tuple[str, int]] = []

    def fetch(base_url: str, log_index: int) -> dict[str, Any]:
        asked.append((base_url, log_index))
        return sigstore.log.rekor_api_entry(log_index)

    def unreachable(base_url: str, log_index: int) -> dict[str, Any]:
        raise ConnectionError("no network here")

    def lying(base_url: str, log_index: int) -> dict[str, Any]:
        return sigstore.log.rekor_api_entry(log_index - 1)  # another entry's proof

    upgraded = verify(raw, root, fetch_inclusion_proof=fetch)
    offline = verify(raw, root, fetch_inclusion_proof=unreachable)
    lied_to = verify(raw, root, fetch_inclusion_proof=lying)

    assert asked == [(sigstore.log.base_url, index)]
    assert upgraded.is_verified and upgraded.result.tlog == "inclusion_proof"
    assert offline.is_verified and offline.result.tlog == "inclusion_promise"  # fails safe: the SET still holds
    assert "tlog_proof_fetch_failed" in {c.code for c in offline.result.checks}
    assert lied_to.is_verified and lied_to.result.tlog == "inclusion_promise"


def test_othername_identity_is_decoded_and_matched(sigstore: TestSigstore, root: TrustRoot) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity="alice", issuer="https://oidc.example.test")

    result = verify(raw, root, identity=IdentityPolicy(issuer="https://oidc.example.test", identity="alice"))

    assert result.is_verified, result.result.failures
    assert result.result.identity == "alice"


def test_identity_regexp_is_anchored_and_broad_patterns_are_flagged(sigstore: TestSigstore, root: TrustRoot) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)

    anchored = verify(raw, root, identity=IdentityPolicy(issuer=ISSUER, identity_regexp=r"https://github\.com/acme/.*"))
    unanchored = verify(raw, root, identity=IdentityPolicy(issuer=ISSUER, identity_regexp=r"acme/app"))
    broad = verify(raw, root, identity=IdentityPolicy(issuer=ISSUER, identity_regexp=".*"))

    assert anchored.is_verified
    assert codes(unanchored) == ["identity_mismatch"]  # a substring is not a match: patterns are anchored
    assert broad.is_verified
    warning = next(c for c in broad.result.checks if c.code == "identity_regexp_broad")
    assert warning.ok and "warning" in warning.message


def test_github_workflow_claims_are_checked(sigstore: TestSigstore, root: TrustRoot) -> None:
    workflow = GitHubWorkflow(repository="acme/app", sha="ab" * 20, trigger="release", ref="refs/tags/v1")
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=workflow.identity, issuer=ISSUER,
                                    leaf=LeafOptions(github=workflow))
    policy = IdentityPolicy(issuer=ISSUER, identity=workflow.identity)

    good = verify(raw, root, identity=policy, claims=WorkflowClaims(repository="Acme/App", ref="refs/tags/v1",
                                                                     trigger="release", sha="AB" * 20))
    bad = verify(raw, root, identity=policy, claims=WorkflowClaims(repository="acme/app", trigger="push"))

    assert good.is_verified, good.result.failures
    assert codes(bad) == ["workflow_claims_mismatch"]
    assert "expected trigger 'push', found 'release'" in bad.result.reason


# -- every failure, pinned --------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_identity(sigstore: TestSigstore, root: TrustRoot, engine: str) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, **ENGINES[engine])

    result = verify(raw, root, identity=IdentityPolicy(issuer=ISSUER, identity="https://github.com/evil/x"))

    assert result.result.outcome is Outcome.UNTRUSTED
    assert codes(result) == ["identity_mismatch"]
    assert "https://github.com/evil/x" in result.result.reason and IDENTITY in result.result.reason


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_issuer(sigstore: TestSigstore, root: TrustRoot, engine: str) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer="https://issuer.evil.test",
                                    **ENGINES[engine])

    result = verify(raw, root)

    assert result.result.outcome is Outcome.UNTRUSTED
    assert codes(result) == ["issuer_mismatch"]
    assert "https://issuer.evil.test" in result.result.reason


def test_missing_identity_policy_never_verifies_a_keyless_bundle(sigstore: TestSigstore, root: TrustRoot) -> None:
    result = verify(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER), root, identity=None)

    assert result.result.outcome is Outcome.UNTRUSTED
    assert codes(result) == ["identity_policy_missing"]


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_artifact(sigstore: TestSigstore, root: TrustRoot, engine: str) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, **ENGINES[engine])

    by_bytes = verify(raw, root, artifact=ARTIFACT + b"tampered")
    by_digest = verify(raw, root, artifact=Digest.of(b"something else"))

    for result in (by_bytes, by_digest):
        assert result.result.outcome is Outcome.INVALID
        assert result.result.failures[0].code == "artifact_mismatch"
        assert result.result.failures[0].stage is Stage.SUBJECT


@pytest.mark.parametrize("engine", ENGINES)
def test_tampered_dsse_payload(sigstore: TestSigstore, root: TrustRoot, statement: bytes, engine: str) -> None:
    raw = sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=ISSUER, **ENGINES[engine])
    tampered = statement.replace(b"buildType", b"buildTypo")

    def change(data: dict[str, Any]) -> None:
        data["dsseEnvelope"]["payload"] = base64.b64encode(tampered).decode()

    result = verify(edit(raw, change), root)

    assert result.result.outcome is Outcome.INVALID
    assert result.result.failures[0].code == "signature_invalid"
    assert result.statement is None and result.payload == b""


@pytest.mark.parametrize("engine", ENGINES)
def test_tampered_message_signature(sigstore: TestSigstore, root: TrustRoot, engine: str) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, **ENGINES[engine])
    other = ec.generate_private_key(ec.SECP256R1()).sign(ARTIFACT, ec.ECDSA(hashes.SHA256()))

    def change(data: dict[str, Any]) -> None:
        data["messageSignature"]["signature"] = base64.b64encode(other).decode()

    result = verify(edit(raw, change), root)

    assert result.result.outcome is Outcome.INVALID
    assert result.result.failures[0].code == "signature_invalid"


@pytest.mark.parametrize("engine", ENGINES)
def test_dsse_subject_mismatch(sigstore: TestSigstore, root: TrustRoot, engine: str) -> None:
    other = in_toto_statement("other.tgz", hashlib.sha256(b"other").hexdigest(), SLSA, {})
    raw = sigstore.sign_dsse_bundle(other, identity=IDENTITY, issuer=ISSUER, **ENGINES[engine])

    result = verify(raw, root)

    assert result.result.outcome is Outcome.INVALID
    assert codes(result) == ["subject_mismatch"]
    assert "other.tgz" in result.result.reason and str(Digest.of(ARTIFACT)) in result.result.reason


@pytest.mark.parametrize("engine", ENGINES)
def test_certificate_expired_at_log_time(sigstore: TestSigstore, root: TrustRoot, engine: str) -> None:
    expired = LeafOptions(not_before=datetime.now(UTC) - timedelta(hours=1))
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, leaf=expired, **ENGINES[engine])

    result = verify(raw, root)

    assert result.result.outcome is Outcome.UNTRUSTED
    assert result.result.failures[0].code == "cert_not_valid_at_signing_time"
    assert result.result.failures[0].stage is Stage.CHAIN


@pytest.mark.parametrize("engine", ENGINES)
def test_missing_sct(sigstore: TestSigstore, root: TrustRoot, engine: str) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, leaf=LeafOptions(with_sct=False),
                                    **ENGINES[engine])

    result = verify(raw, root)

    assert result.result.outcome is Outcome.UNTRUSTED
    assert codes(result) == ["sct_missing"]


@pytest.mark.parametrize("engine", ENGINES)
def test_sct_from_the_wrong_ct_key(sigstore: TestSigstore, root: TrustRoot, engine: str) -> None:
    leaf = LeafOptions(sct_key=ec.generate_private_key(ec.SECP256R1()))
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, leaf=leaf, **ENGINES[engine])

    result = verify(raw, root)

    assert result.result.outcome is Outcome.UNTRUSTED
    assert codes(result) == ["sct_unknown_log"]
    assert result.result.failures[0].stage is Stage.SCT


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_signed_entry_timestamp(sigstore: TestSigstore, root: TrustRoot, engine: str) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, **ENGINES[engine])

    def change(data: dict[str, Any]) -> None:
        promise = data["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
        promise["signedEntryTimestamp"] = flip(promise["signedEntryTimestamp"])

    result = verify(edit(raw, change), root)

    assert result.result.outcome is Outcome.INVALID
    assert result.result.failures[0].code == "tlog_set_invalid"
    assert result.result.tlog != "inclusion_promise"


def test_corrupted_inclusion_proof(sigstore: TestSigstore, root: TrustRoot) -> None:
    def change(data: dict[str, Any]) -> None:
        proof = data["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
        proof["hashes"][0] = flip(proof["hashes"][0])

    keyless = verify(edit(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER), change), root)
    key = ec.generate_private_key(ec.SECP256R1())
    keyed = verify(edit(sigstore.sign_blob_bundle_with_key(ARTIFACT, key), change), root, public_keys=(pem(key),))

    for result in (keyless, keyed):  # sigstore's engine, then ours
        assert result.result.outcome is Outcome.INVALID
        assert codes(result) == ["tlog_inclusion_proof_invalid"]


def test_bad_checkpoint_signature(sigstore: TestSigstore, root: TrustRoot) -> None:
    other_log_key = ec.generate_private_key(ec.SECP256R1())

    def forge(data: dict[str, Any]) -> None:
        # Keep the log's key hint, sign the note with another key.
        checkpoint = data["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
        note, signature_line = checkpoint["envelope"].split("\n\n")
        name, blob = signature_line.removeprefix("\u2014 ").strip().split(" ")
        forged = other_log_key.sign(note.encode() + b"\n", ec.ECDSA(hashes.SHA256()))
        hint = base64.b64decode(blob)[:4]
        checkpoint["envelope"] = f"{note}\n\n\u2014 {name} {base64.b64encode(hint + forged).decode()}\n"

    key = ec.generate_private_key(ec.SECP256R1())
    results = [
        verify(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER,
                                         log=LogOptions(checkpoint_key=other_log_key)), root),
        verify(edit(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER), forge), root),
        verify(sigstore.sign_blob_bundle_with_key(ARTIFACT, key, log=LogOptions(checkpoint_key=other_log_key)), root,
               public_keys=(pem(key),)),
        verify(edit(sigstore.sign_blob_bundle_with_key(ARTIFACT, key), forge), root, public_keys=(pem(key),)),
    ]

    for result in results:
        assert result.result.outcome is Outcome.INVALID
        assert codes(result) == ["tlog_checkpoint_invalid"]


def test_log_entry_of_another_signature(sigstore: TestSigstore, root: TrustRoot) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)
    other = json.loads(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER))

    def change(data: dict[str, Any]) -> None:
        data["verificationMaterial"]["tlogEntries"] = other["verificationMaterial"]["tlogEntries"]

    result = verify(edit(raw, change), root)

    assert result.result.outcome is Outcome.INVALID
    assert codes(result) == ["tlog_body_mismatch"]


@pytest.mark.parametrize("engine", ENGINES)
def test_untrusted_root(root: TrustRoot, engine: str) -> None:
    stranger = TestSigstore.create(name="stranger")
    raw = stranger.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, **ENGINES[engine])

    result = verify(raw, root)

    assert result.result.outcome is Outcome.UNTRUSTED
    assert result.result.failures[0].code == "chain_untrusted"
    assert "trusted root" in result.result.failures[0].hint


def test_no_signed_time(sigstore: TestSigstore, root: TrustRoot) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER,
                                    log=LogOptions(with_inclusion_promise=False))

    result = verify(raw, root)

    assert result.result.outcome is Outcome.UNTRUSTED
    assert codes(result) == ["no_signed_time"]
    assert result.result.tlog == ""  # sigstore refuses it before the log evidence counts for anything


# -- key-based bundles ------------------------------------------------------------------------------------------


def _key_bundle(sigstore: TestSigstore, key: PrivateKeyTypes, data: bytes) -> bytes:
    """A key-based message-signature bundle for any key type, as cosign sign-blob --key --new-bundle-format."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        signature = key.sign(data)
    digest = hashlib.sha256(data).digest()
    body = _hashedrekord_body(signature=signature, verifier_pem=pem(key), sha256_hex=digest.hex())
    entry = sigstore.log.append(body, integrated_time=int(datetime.now(UTC).timestamp()))
    return json.dumps({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "k"}, "tlogEntries": [sigstore.bundle_tlog_entry(entry)]},
        "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(digest).decode()},
                             "signature": base64.b64encode(signature).decode()},
    }).encode()


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: ed25519.Ed25519PrivateKey.generate(),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["p256", "p384", "ed25519", "rsa"],
)
def test_key_based_bundles_verify_with_each_key_type(sigstore: TestSigstore, root: TrustRoot, make_key: Any) -> None:
    key, wrong = make_key(), make_key()
    raw = _key_bundle(sigstore, key, ARTIFACT)

    good = verify(raw, root, public_keys=(pem(wrong), pem(key)))  # any configured key may verify
    bad = verify(raw, root, public_keys=(pem(wrong),))

    assert good.is_verified, good.result.failures
    assert good.result.key.startswith("sha256:") and good.result.identity == ""
    assert good.result.tlog == "inclusion_proof"
    assert bad.result.outcome is Outcome.INVALID
    assert codes(bad) == ["signature_invalid", "tlog_body_mismatch"]


def test_key_based_bundle_from_the_test_sigstore(sigstore: TestSigstore, root: TrustRoot) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    raw = sigstore.sign_blob_bundle_with_key(ARTIFACT, key)

    assert verify(raw, root, public_keys=(pem(key),)).is_verified
    assert verify(raw, root, artifact=Digest.of(ARTIFACT), public_keys=(pem(key),)).is_verified
    unkeyed = verify(raw, root)
    assert unkeyed.result.outcome is Outcome.UNTRUSTED
    assert codes(unkeyed) == ["public_key_required"]


def test_ed25519_needs_the_artifact_not_its_digest(sigstore: TestSigstore, root: TrustRoot) -> None:
    key = ed25519.Ed25519PrivateKey.generate()

    result = verify(_key_bundle(sigstore, key, ARTIFACT), root, artifact=Digest.of(ARTIFACT), public_keys=(pem(key),))

    assert result.result.outcome is Outcome.ERROR
    assert codes(result)[0] == "artifact_bytes_required"


def test_key_based_bundle_without_log_entry_needs_an_explicit_opt_out(sigstore: TestSigstore, root: TrustRoot) -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    def drop_log(data: dict[str, Any]) -> None:
        data["verificationMaterial"]["tlogEntries"] = []

    raw = edit(sigstore.sign_blob_bundle_with_key(ARTIFACT, key), drop_log)

    strict = verify(raw, root, public_keys=(pem(key),))
    relaxed = verify(raw, root, public_keys=(pem(key),), require_tlog=False)

    assert strict.result.outcome is Outcome.UNTRUSTED
    assert codes(strict) == ["tlog_missing", "no_signed_time"]
    assert relaxed.is_verified and relaxed.result.tlog == "not_logged"
    assert relaxed.result.leniencies == (Leniency.NOT_LOGGED, Leniency.KEY_BASED)


# -- malformed, unsupported: never collapsed into invalid ------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"not json", "bundle_not_json"),
        (b"[]", "bundle_malformed"),
        (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v9+json"}', "bundle_version_unsupported"),
        (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": {}}',
         "bundle_malformed"),
        (b"{" * 100_000, "bundle_not_json"),
    ],
)
def test_malformed_bundles_are_malformed(root: TrustRoot, raw: bytes, code: str) -> None:
    result = verify(raw, root)

    assert result.result.outcome is Outcome.MALFORMED
    assert codes(result) == [code]


def test_damaged_parts_are_malformed(sigstore: TestSigstore, root: TrustRoot) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)

    def bad_certificate(data: dict[str, Any]) -> None:
        data["verificationMaterial"]["certificate"]["rawBytes"] = base64.b64encode(b"not DER").decode()

    def bad_index(data: dict[str, Any]) -> None:
        data["verificationMaterial"]["tlogEntries"][0]["logIndex"] = "-1"

    def both_contents(data: dict[str, Any]) -> None:
        data["dsseEnvelope"] = {"payload": "", "payloadType": "x", "signatures": []}

    assert codes(verify(edit(raw, bad_certificate), root)) == ["certificate_unreadable"]
    assert codes(verify(edit(raw, bad_index), root)) == ["bundle_malformed"]
    assert codes(verify(edit(raw, both_contents), root)) == ["bundle_malformed"]


def test_unsupported_log_entry_kind_is_unsupported_not_invalid(sigstore: TestSigstore, root: TrustRoot) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER, **ENGINES["own"])

    def relabel(data: dict[str, Any]) -> None:
        entry = data["verificationMaterial"]["tlogEntries"][0]
        body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
        body["kind"], entry["kindVersion"]["kind"] = "rekord", "rekord"
        entry["canonicalizedBody"] = base64.b64encode(json.dumps(body).encode()).decode()

    result = verify(edit(raw, relabel), root)

    assert "tlog_body_unsupported" in codes(result)
    assert result.result.outcome in {Outcome.INVALID, Outcome.UNSUPPORTED}  # the SET no longer matches the body
    assert not result.is_verified


def test_non_in_toto_payload_is_unsupported(sigstore: TestSigstore, root: TrustRoot) -> None:
    raw = sigstore.sign_dsse_bundle(b"hello", identity=IDENTITY, issuer=ISSUER, payload_type="text/plain")

    result = verify(raw, root)

    assert result.result.outcome is Outcome.UNSUPPORTED
    assert codes(result) == ["payload_type_unsupported"]


def test_sigstore_errors_are_translated_never_raw(sigstore: TestSigstore, root: TrustRoot) -> None:
    raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER)

    def corrupt(data: dict[str, Any]) -> None:
        proof = data["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
        proof["hashes"] = proof["hashes"][:-1]  # wrong length

    result = verify(edit(raw, corrupt), root)

    failure = result.result.failures[0]
    assert (failure.stage, failure.code) == (Stage.TLOG, "tlog_inclusion_proof_invalid")
    assert "Traceback" not in failure.message and failure.hint
