"""The verifier's fail-closed rules, and regressions for the verifier bug classes published against cosign in 2026.

* a verdict is "verified" only when every check its evidence kind requires ran and passed;
* every signed time must lie in the certificate's validity;
* the log entry must describe this signature and this key (GHSA-whqx-f9j3-ch6m);
* an attestation's predicate type is enforced (GHSA-w6c6-c85g-mmv6);
* a bare public key where a certificate belongs never skips chain and identity checks (GHSA-fx35-mq7g-6g98).
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provenance.core.policy import ArtifactFacts, Evaluator, EvidenceFacts, TrustStatus, parse_policy
from provenance.core.testsigstore import GITHUB_ACTIONS_ISSUER, TestSigstore, in_toto_statement
from provenance.core.trustroot import TrustRoot
from provenance.core.types import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    Digest,
    Format,
    IdentityPolicy,
    Kind,
    Outcome,
    SignedLayer,
    Stage,
)
from provenance.core.verify import Requirement, verify_bundle, verify_layer
from provenance.core.verify.certificate import Signer
from provenance.core.verify.checks import KEY_REQUIREMENTS, KEYLESS_REQUIREMENTS, SATISFIES, Run

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
POLICY = IdentityPolicy(issuer=GITHUB_ACTIONS_ISSUER, identity=IDENTITY)
IMAGE = Digest.of(b"the image manifest")
ARTIFACT = b"the released artifact\n"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore.create(name="rules")


@pytest.fixture(scope="module")
def root(sigstore: TestSigstore) -> TrustRoot:
    return TrustRoot.from_json(sigstore.trusted_root_json(), name="rules")


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _codes(result: Any) -> list[str]:
    return [c.code for c in result.failures]


# -- "verified" means every required check passed ----------------------------------------------------------------


def test_every_requirement_is_satisfied_by_some_check() -> None:
    assert set(SATISFIES.values()) == set(Requirement)
    assert KEY_REQUIREMENTS <= set(Requirement) and KEYLESS_REQUIREMENTS <= set(Requirement)


KEY_BASED_PASSES = {Requirement.FORMAT: "format_ok", Requirement.SIGNATURE: "signature_ok",
                    Requirement.SUBJECT: "digest_ok", Requirement.KEY: "key_trusted", Requirement.LOG: "tlog_ok"}


@pytest.mark.parametrize("left_out", sorted(KEY_REQUIREMENTS))
def test_a_run_missing_any_required_check_is_never_verified(left_out: Requirement) -> None:
    assert set(KEY_BASED_PASSES) == KEY_REQUIREMENTS
    signer = Signer(key=ec.generate_private_key(ec.SECP256R1()).public_key(), fingerprint="sha256:" + "0" * 64)
    complete, partial = Run(require_tlog=True), Run(require_tlog=True)
    for requirement, code in KEY_BASED_PASSES.items():
        complete.ok(Stage.FORMAT, code, "passed")
        if requirement != left_out:
            partial.ok(Stage.FORMAT, code, "passed")

    assert complete.result(signer).outcome is Outcome.VERIFIED
    result = partial.result(signer)
    assert result.outcome is Outcome.ERROR
    assert _codes(result) == ["checks_not_run"] and str(left_out) in result.failures[0].message


def test_a_keyless_run_needs_chain_sct_identity_and_signed_time_too() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    run = Run(require_tlog=True)
    for code in ("format_ok", "signature_ok", "digest_ok", "tlog_ok", "identity_ok", "issuer_ok"):
        run.ok(Stage.FORMAT, code, "passed")
    cert_signer = Signer(key=key, cert=object())  # type: ignore[arg-type]  # only "is there a certificate" counts

    result = run.result(cert_signer)

    assert result.outcome is Outcome.ERROR
    for missing in ("chain", "certificate_profile", "sct", "signed_time"):
        assert missing in result.failures[0].message


def test_a_requirement_added_by_the_evidence_counts_too() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    run = Run(require_tlog=True)
    for code in ("format_ok", "signature_ok", "digest_ok", "key_trusted", "tlog_ok"):
        run.ok(Stage.FORMAT, code, "passed")
    run.require(Requirement.LOG_BODY)  # an entry was used: it must describe this signature

    assert run.result(Signer(key=key, fingerprint="sha256:x")).outcome is Outcome.ERROR


def test_a_failure_is_never_hidden_behind_checks_not_run() -> None:
    run = Run(require_tlog=True)
    run.fail(Stage.SIGNATURE, "signature_invalid", "bad", "re-sign", Outcome.INVALID)

    result = run.result(Signer())

    assert result.outcome is Outcome.INVALID and _codes(result) == ["signature_invalid"]


def test_real_results_name_what_they_passed(sigstore: TestSigstore, root: TrustRoot) -> None:
    layer = sigstore.cosign_signature_layer(str(IMAGE), "registry.test/acme/app", identity=IDENTITY,
                                            issuer=GITHUB_ACTIONS_ISSUER)
    result, _ = verify_layer(layer, format=Format.COSIGN_SIG, kind=Kind.SIGNATURE, covers=IMAGE, trust_root=root,
                             identity=POLICY)

    assert result.is_verified, result.failures
    passed = {SATISFIES[c.code] for c in result.checks if c.ok and c.code in SATISFIES}
    assert passed >= KEYLESS_REQUIREMENTS | {Requirement.LOG_BODY}
    assert result.tlog == "inclusion_promise"  # a legacy layer: a SET, which this format allows


# -- GHSA-whqx-f9j3-ch6m: the signature and key must be the ones the log entry records ---------------------------


def test_a_bundle_whose_log_entry_records_another_signature_fails(sigstore: TestSigstore, root: TrustRoot) -> None:
    one = json.loads(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER))
    two = json.loads(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER))
    one["verificationMaterial"]["tlogEntries"] = two["verificationMaterial"]["tlogEntries"]  # a genuine entry

    result = verify_bundle(json.dumps(one).encode(), artifact=ARTIFACT, trust_root=root, identity=POLICY)

    assert not result.is_verified and _codes(result.result) == ["tlog_body_mismatch"]


@pytest.mark.parametrize("version", ["0.1", "0.3"])
def test_a_key_based_bundle_whose_log_entry_records_another_key_fails(sigstore: TestSigstore, root: TrustRoot,
                                                                      version: str) -> None:
    mine, theirs = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    signed = json.loads(sigstore.sign_blob_bundle_with_key(ARTIFACT, mine, version=version))
    other = json.loads(sigstore.sign_blob_bundle_with_key(ARTIFACT, theirs, version=version))
    signed["verificationMaterial"]["tlogEntries"] = other["verificationMaterial"]["tlogEntries"]

    result = verify_bundle(json.dumps(signed).encode(), artifact=ARTIFACT, trust_root=root,
                           public_keys=(_pem(mine),))

    assert not result.is_verified and "tlog_body_mismatch" in _codes(result.result)


def test_a_key_based_layer_whose_log_entry_records_another_key_fails(sigstore: TestSigstore, root: TrustRoot) -> None:
    mine, theirs = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    layer = sigstore.cosign_signature_layer_with_key(str(IMAGE), "registry.test/acme/app", mine)
    other = sigstore.cosign_signature_layer_with_key(str(IMAGE), "registry.test/acme/app", theirs)
    swapped = SignedLayer(layer.media_type, layer.payload,
                          {**layer.annotations, ANNOTATION_BUNDLE: other.annotations[ANNOTATION_BUNDLE]})

    result, _ = verify_layer(swapped, format=Format.COSIGN_SIG, kind=Kind.SIGNATURE, covers=IMAGE, trust_root=root,
                             identity=None, public_keys=(_pem(mine),))

    assert not result.is_verified and "tlog_body_mismatch" in _codes(result)


# -- GHSA-w6c6-c85g-mmv6: the predicate type is enforced ----------------------------------------------------------


def test_a_bundle_counted_as_a_signature_must_carry_the_cosign_sign_predicate(sigstore: TestSigstore,
                                                                              root: TrustRoot) -> None:
    def bundle(predicate: str) -> SignedLayer:
        statement = in_toto_statement("registry.test/acme/app", IMAGE.hex, predicate, {})
        raw = sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER)
        return SignedLayer("application/vnd.dev.sigstore.bundle.v0.3+json", raw, {})

    def check(layer: SignedLayer) -> Any:
        return verify_layer(layer, format=Format.SIGSTORE_BUNDLE, kind=Kind.SIGNATURE, covers=IMAGE,
                            trust_root=root, identity=POLICY)[0]

    assert check(bundle(COSIGN_SIGN)).is_verified
    # an SBOM or provenance attestation is not a signature, whatever the evidence row or an annotation says
    other = check(bundle("https://spdx.dev/Document"))
    assert not other.is_verified and _codes(other) == ["predicate_type_mismatch"]


def test_a_policy_attestation_needs_a_verified_statement_of_its_predicate_type() -> None:
    policy = parse_policy(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: p\nspec:\n"
        "  images:\n    - glob: \"ghcr.io/myorg/**\"\n  authorities:\n    - keyless:\n        url: x\n"
        "        identities:\n          - issuer: https://x\n            subject: anyone\n"
        "      attestations:\n        - name: provenance\n          predicateType: slsaprovenance1\n")
    evaluator = Evaluator([policy])
    digest = "sha256:" + "a" * 64

    def facts(labelled: str, signed: str) -> ArtifactFacts:
        statement = {"predicateType": signed, "subject": [], "predicate": {}}
        attestation = EvidenceFacts(2, "attestation", "verified", digest, "sha256:" + "c" * 64, "root",
                                    identity="anyone", issuer="https://x", predicate_type=labelled,
                                    statement=statement)
        return ArtifactFacts(1, digest, ("ghcr.io/myorg/app",), (attestation,))

    slsa, spdx = "https://slsa.dev/provenance/v1", "https://spdx.dev/Document"
    assert evaluator.evaluate(facts(slsa, slsa)).status is TrustStatus.TRUSTED
    # only an SPDX attestation exists: no provenance (cosign before the fix accepted "any attestation")
    assert evaluator.evaluate(facts(spdx, spdx)).code == "attestation_missing"
    # labelled as provenance (an unsigned annotation), but the signed statement is SPDX: not provenance
    assert evaluator.evaluate(facts(slsa, spdx)).status is not TrustStatus.TRUSTED


# -- GHSA-fx35-mq7g-6g98: a bare public key in the certificate field ----------------------------------------------


def test_a_bare_public_key_in_a_layers_certificate_annotation_is_not_a_signer(sigstore: TestSigstore,
                                                                              root: TrustRoot) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    layer = sigstore.cosign_signature_layer_with_key(str(IMAGE), "registry.test/acme/app", key)
    forged = SignedLayer(layer.media_type, layer.payload,
                         {**layer.annotations, ANNOTATION_CERTIFICATE: _pem(key).decode()})

    result, _ = verify_layer(forged, format=Format.COSIGN_SIG, kind=Kind.SIGNATURE, covers=IMAGE, trust_root=root,
                             identity=POLICY)

    assert result.outcome is Outcome.MALFORMED and _codes(result) == ["certificate_unreadable"]
    assert not result.identity and not any(c.code in {"chain_ok", "identity_ok"} for c in result.checks)


def test_a_bare_public_key_in_a_bundles_certificate_field_is_refused(sigstore: TestSigstore,
                                                                     root: TrustRoot) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bundle = json.loads(sigstore.sign_blob_bundle_with_key(ARTIFACT, key))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    del bundle["verificationMaterial"]["publicKey"]
    bundle["verificationMaterial"]["certificate"] = {"rawBytes": base64.b64encode(spki).decode()}

    result = verify_bundle(json.dumps(bundle).encode(), artifact=ARTIFACT, trust_root=root, identity=POLICY)

    assert result.result.outcome is Outcome.MALFORMED and _codes(result.result) == ["certificate_unreadable"]


# -- signed times -------------------------------------------------------------------------------------------------


def test_every_signed_time_must_lie_in_the_certificate_validity() -> None:
    from provenance.core.verify.certificate import check_signed_times

    sigstore = TestSigstore.create(name="times")
    cert = sigstore.issue_certificate(ec.generate_private_key(ec.SECP256R1()).public_key(), identity=IDENTITY,
                                      issuer=GITHUB_ACTIONS_ISSUER)
    inside = cert.not_valid_before_utc + timedelta(minutes=1)

    run = Run(require_tlog=True)
    run.add_signed_time(inside, "the log's signed integrated time")
    run.add_signed_time(cert.not_valid_after_utc, "the RFC 3161 timestamp of tsa")  # the end is inclusive
    check_signed_times(run, cert)
    assert [c.code for c, _ in run.checks] == ["signed_time_ok"]

    run = Run(require_tlog=True)
    run.add_signed_time(inside, "the log's signed integrated time")  # one time inside does not excuse another
    run.add_signed_time(cert.not_valid_after_utc + timedelta(seconds=1), "the RFC 3161 timestamp of tsa")
    check_signed_times(run, cert)
    assert [(c.code, o) for c, o in run.checks] == [("cert_not_valid_at_signing_time", Outcome.UNTRUSTED)]
    assert "RFC 3161" in run.checks[0][0].message

    run = Run(require_tlog=True)
    check_signed_times(run, cert)
    assert [c.code for c, _ in run.checks] == ["no_signed_time"]
