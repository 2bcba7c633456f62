"""cosign legacy ``.sig``/``.att`` verification: real third-party signatures, then the project's test Sigstore."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import random
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provenance.core.discovery import find_cosign_evidence
from provenance.core.errors import MalformedEvidenceError
from provenance.core.testsigstore import (
    IN_TOTO_STATEMENT_V01,
    LeafOptions,
    TestSigstore,
    in_toto_statement,
)
from provenance.core.trustroot import TrustRoot
from provenance.core.types import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_PREDICATE_TYPE,
    ANNOTATION_SIGNATURE,
    Digest,
    IdentityPolicy,
    Outcome,
    SignedLayer,
    VerificationResult,
)
from provenance.core.verify.cosign import (
    MAX_SIGNATURE_PAYLOAD_BYTES,
    layers_from_download,
    verify_attestation_layer,
    verify_signature_layer,
)
from tests.plugins.registry import RegistryServer, make_image, push_image, unique_repository
from tests.support import real_fixtures_dir, require_binary

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
POLICY = IdentityPolicy(issuer=ISSUER, identity=IDENTITY)
IMAGE = Digest.of(b"the image manifest")
OTHER_IMAGE = Digest.of(b"another image manifest")
SLSA = "https://slsa.dev/provenance/v1"


def _failed(result: VerificationResult) -> set[str]:
    return {c.code for c in result.failures}


def _passed(result: VerificationResult) -> set[str]:
    return {c.code for c in result.checks if c.ok}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- real third-party material (freedomofpress/dangerzone, key-based, Rekor production SETs) --------------------

REAL_CASES = {
    # case name -> the failure codes a correct verifier must report (empty: every signature verifies)
    "cosign-legacy__dangerzone_valid_19e8eacd": set(),
    "cosign-legacy__dangerzone_valid_fa948726": set(),
    # the signature annotation carries a trailing extra byte: it verifies neither alone nor against the log entry
    "cosign-legacy__dangerzone_tampered_19e8eacd": {"signature_invalid", "tlog_body_mismatch"},
    # payload with an added newline, log body rewritten (apiVersion 6.6.6): SET, signature and body all fail
    "cosign-legacy__dangerzone_tampered_220b5220": {"signature_invalid", "tlog_set_invalid", "tlog_body_unsupported"},
    # the payload is not base64 at all: the download document itself is malformed
    "cosign-legacy__dangerzone_invalid_220b5220": {"download_malformed"},
}


def _real_case(name: str) -> tuple[Path, dict[str, Any]]:
    folder = real_fixtures_dir() / name
    if not folder.is_dir():
        pytest.fail(f"real fixture {name} is missing from {folder.parent}")
    return folder, json.loads((folder / "case.json").read_text())


def test_every_real_cosign_legacy_case_is_covered() -> None:
    found = {
        p.parent.name
        for p in real_fixtures_dir().glob("*/case.json")
        if json.loads(p.read_text()).get("format") == "cosign-legacy"
    }
    assert found == set(REAL_CASES), "a cosign-legacy fixture was added or removed: list it in REAL_CASES"


@pytest.mark.parametrize("name", sorted(REAL_CASES))
def test_real_cosign_legacy_signatures_get_their_expected_verdict(name: str) -> None:
    folder, case = _real_case(name)
    assert case["trusted_root"] == "embedded:production"
    expected_codes = REAL_CASES[name]
    digest = Digest.parse(case["image_digest"])
    key = (folder / case["key"]).read_bytes()

    try:
        layers = layers_from_download((folder / "cosign_download_signature.json").read_bytes())
    except MalformedEvidenceError as err:
        assert case["expected"] == "fail"
        assert {err.code} == expected_codes
        return
    results = [
        verify_signature_layer(layer, image_digest=digest, trust_root=TrustRoot.production(), public_key=key)
        for layer in layers
    ]

    assert results
    if case["expected"] == "verify":
        for result in results:
            assert result.outcome is Outcome.VERIFIED, result.failures
            assert result.tlog == "inclusion_promise"  # a SET only: never shown as an inclusion proof
            assert result.key.startswith("sha256:")
            assert result.integrated_time is not None
            assert result.identity == ""
    else:
        assert case["expected"] == "fail"
        for result in results:
            assert result.outcome is Outcome.INVALID
            assert _failed(result) == expected_codes
            assert result.failures[0].code in {"signature_invalid", "tlog_set_invalid"}  # reason explains verdict


def test_real_signature_fails_for_another_image() -> None:
    folder, case = _real_case("cosign-legacy__dangerzone_valid_19e8eacd")
    [layer] = layers_from_download((folder / "cosign_download_signature.json").read_bytes())

    result = verify_signature_layer(
        layer, image_digest=OTHER_IMAGE, trust_root=TrustRoot.production(), public_key=(folder / "key.pub").read_bytes()
    )

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"digest_mismatch"}
    assert case["image_digest"] in result.reason and str(OTHER_IMAGE) in result.reason


def test_real_key_based_signature_fails_with_another_key() -> None:
    folder, case = _real_case("cosign-legacy__dangerzone_valid_19e8eacd")
    [layer] = layers_from_download((folder / "cosign_download_signature.json").read_bytes())
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    result = verify_signature_layer(
        layer, image_digest=Digest.parse(case["image_digest"]), trust_root=TrustRoot.production(), public_key=pem
    )

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"signature_invalid", "tlog_body_mismatch"}


def test_real_signature_without_a_key_or_certificate_is_untrusted() -> None:
    folder, case = _real_case("cosign-legacy__dangerzone_valid_19e8eacd")
    [layer] = layers_from_download((folder / "cosign_download_signature.json").read_bytes())

    result = verify_signature_layer(
        layer, image_digest=Digest.parse(case["image_digest"]), trust_root=TrustRoot.production(), identity=POLICY
    )

    assert result.outcome is Outcome.UNTRUSTED
    assert "certificate_missing" in _failed(result)
    assert "public key" in result.failures[0].hint


def test_real_set_does_not_verify_under_another_root() -> None:
    folder, case = _real_case("cosign-legacy__dangerzone_valid_19e8eacd")
    [layer] = layers_from_download((folder / "cosign_download_signature.json").read_bytes())

    result = verify_signature_layer(
        layer,
        image_digest=Digest.parse(case["image_digest"]),
        trust_root=TrustRoot.staging(),
        public_key=(folder / "key.pub").read_bytes(),
    )

    assert result.outcome is Outcome.UNTRUSTED
    assert _failed(result) == {"tlog_unknown_log"}
    assert result.tlog == ""


# -- the test Sigstore: keyless .sig -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore.create(name="cosign-tests")


@pytest.fixture(scope="module")
def root(sigstore: TestSigstore) -> TrustRoot:
    return TrustRoot.from_json(sigstore.trusted_root_json(), name="cosign-tests")


@pytest.fixture(scope="module")
def signed(sigstore: TestSigstore) -> SignedLayer:
    return sigstore.cosign_signature_layer(str(IMAGE), "registry.test/acme/app", identity=IDENTITY, issuer=ISSUER)


def _verify(layer: SignedLayer, root: TrustRoot, **kwargs: Any) -> VerificationResult:
    kwargs.setdefault("identity", POLICY)
    kwargs.setdefault("image_digest", IMAGE)
    return verify_signature_layer(layer, trust_root=root, **kwargs)


def _with_annotation(layer: SignedLayer, name: str, value: str | None) -> SignedLayer:
    annotations = {k: v for k, v in layer.annotations.items() if k != name}
    if value is not None:
        annotations[name] = value
    return dataclasses.replace(layer, annotations=annotations)


def _bundle(layer: SignedLayer) -> dict[str, Any]:
    return json.loads(layer.annotations[ANNOTATION_BUNDLE])  # type: ignore[no-any-return]


def test_keyless_signature_verifies(signed: SignedLayer, root: TrustRoot) -> None:
    result = _verify(signed, root)

    assert result.outcome is Outcome.VERIFIED, result.failures
    assert result.identity == IDENTITY
    assert result.issuer == ISSUER
    assert result.key == ""
    assert result.tlog == "inclusion_promise"
    assert abs(result.integrated_time - time.time()) < 600  # type: ignore[operator]
    assert result.extra["docker_reference"] == "registry.test/acme/app"
    assert {
        "format_ok",
        "signature_ok",
        "tlog_ok",
        "tlog_body_ok",
        "chain_ok",
        "code_signing_ok",
        "sct_ok",
        "identity_ok",
        "issuer_ok",
        "digest_ok",
    } <= _passed(result)
    assert result.failures == ()


def test_identity_regexp_must_match_the_whole_san(signed: SignedLayer, root: TrustRoot) -> None:
    matching = IdentityPolicy(issuer=ISSUER, identity_regexp=r"https://github\.com/acme/.*@refs/heads/main")
    partial = IdentityPolicy(issuer=ISSUER, identity_regexp=r"https://github\.com/acme/app")

    assert _verify(signed, root, identity=matching).is_verified
    assert _failed(_verify(signed, root, identity=partial)) == {"identity_mismatch"}


def test_rejects_signature_from_another_identity(signed: SignedLayer, root: TrustRoot) -> None:
    expected = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1"
    result = _verify(signed, root, identity=IdentityPolicy(issuer=ISSUER, identity=expected))

    assert result.outcome is Outcome.UNTRUSTED
    assert _failed(result) == {"identity_mismatch"}
    failure = result.failures[0]
    assert expected in failure.message and IDENTITY in failure.message  # expected vs found
    assert "re-sign with the identity" in failure.hint and "change the policy" in failure.hint


def test_rejects_signature_from_another_issuer(signed: SignedLayer, root: TrustRoot) -> None:
    result = _verify(signed, root, identity=IdentityPolicy(issuer="https://accounts.google.com", identity=IDENTITY))

    assert result.outcome is Outcome.UNTRUSTED
    assert _failed(result) == {"issuer_mismatch"}
    assert "https://accounts.google.com" in result.reason and ISSUER in result.reason


def test_keyless_signature_without_identity_policy_is_untrusted(signed: SignedLayer, root: TrustRoot) -> None:
    result = verify_signature_layer(signed, image_digest=IMAGE, trust_root=root)

    assert result.outcome is Outcome.UNTRUSTED
    assert _failed(result) == {"identity_policy_missing"}
    assert result.identity == IDENTITY  # still says who signed, for the page that explains it


def test_rejects_signature_copied_from_another_image(signed: SignedLayer, root: TrustRoot) -> None:
    result = _verify(signed, root, image_digest=OTHER_IMAGE)

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"digest_mismatch"}
    assert str(IMAGE) in result.reason and str(OTHER_IMAGE) in result.reason


def test_rejects_tampered_payload(signed: SignedLayer, root: TrustRoot) -> None:
    payload = signed.payload.replace(b"registry.test/acme/app", b"registry.test/evil/app")
    result = _verify(dataclasses.replace(signed, payload=payload), root)

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"signature_invalid", "tlog_body_mismatch"}
    assert result.failures[0].code == "signature_invalid"


def test_rejects_tampered_signed_entry_timestamp(sigstore: TestSigstore, signed: SignedLayer, root: TrustRoot) -> None:
    bundle = _bundle(signed)
    bundle["SignedEntryTimestamp"] = _b64(sigstore.log.entry(0).signed_entry_timestamp)  # another entry's SET
    result = _verify(_with_annotation(signed, ANNOTATION_BUNDLE, json.dumps(bundle)), root)

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"tlog_set_invalid"}
    assert result.tlog == ""
    assert result.integrated_time is None


def test_rejects_forged_integrated_time(signed: SignedLayer, root: TrustRoot) -> None:
    bundle = _bundle(signed)
    bundle["Payload"]["integratedTime"] += 3600
    result = _verify(_with_annotation(signed, ANNOTATION_BUNDLE, json.dumps(bundle)), root)

    assert result.outcome is Outcome.INVALID
    assert "tlog_set_invalid" in _failed(result)


def test_rejects_bundle_copied_from_another_signature(sigstore: TestSigstore, root: TrustRoot) -> None:
    # A genuine SET for a different entry (CVE-2022-36056 in cosign's shape): the log entry must describe this layer.
    first = sigstore.cosign_signature_layer(str(IMAGE), "registry.test/acme/app", identity=IDENTITY, issuer=ISSUER)
    second = sigstore.cosign_signature_layer(str(IMAGE), "registry.test/acme/app", identity=IDENTITY, issuer=ISSUER)
    result = _verify(_with_annotation(first, ANNOTATION_BUNDLE, second.annotations[ANNOTATION_BUNDLE]), root)

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"tlog_body_mismatch"}
    assert "certificate" in result.reason and "signature" in result.reason


def _relogged(sigstore: TestSigstore, layer: SignedLayer, change: Any) -> SignedLayer:
    """Log a changed copy of the layer's entry body, with a genuine SET, and attach that bundle instead."""
    body = json.loads(base64.b64decode(_bundle(layer)["Payload"]["body"]))
    change(body["spec"])
    entry = sigstore.log.append(rfc8785.dumps(body), integrated_time=_bundle(layer)["Payload"]["integratedTime"])
    return _with_annotation(layer, ANNOTATION_BUNDLE, entry.cosign_bundle().decode())


def test_rejects_log_entry_naming_another_certificate_for_the_same_key(
    sigstore: TestSigstore, signed: SignedLayer, root: TrustRoot
) -> None:
    leaf = x509.load_pem_x509_certificate(signed.annotations[ANNOTATION_CERTIFICATE].encode())
    twin = sigstore.issue_certificate(leaf.public_key(), identity="mallory@example.test", issuer=ISSUER)
    twin_pem = twin.public_bytes(serialization.Encoding.PEM)

    def swap(spec: dict[str, Any]) -> None:
        spec["signature"]["publicKey"]["content"] = _b64(twin_pem)

    result = _verify(_relogged(sigstore, signed, swap), root)

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"tlog_body_mismatch"}
    assert "certificate" in result.reason


def test_rejects_chain_from_an_untrusted_root(root: TrustRoot) -> None:
    stranger = TestSigstore.create(name="somebody-else")
    layer = stranger.cosign_signature_layer(str(IMAGE), "registry.test/acme/app", identity=IDENTITY, issuer=ISSUER)

    result = _verify(layer, root)

    assert result.outcome is Outcome.UNTRUSTED
    assert _failed(result) == {"chain_untrusted", "sct_unknown_log", "tlog_unknown_log"}
    assert result.failures[0].code == "chain_untrusted"  # the reason names the signer's CA first
    assert "somebody-else" in next(c.message for c in result.failures if c.code == "chain_untrusted")
    assert "trusted root" in next(c.hint for c in result.failures if c.code == "chain_untrusted")


def test_rejects_certificate_expired_when_logged(sigstore: TestSigstore, root: TrustRoot) -> None:
    now = datetime.now(UTC)
    leaf = LeafOptions(not_before=now - timedelta(hours=1))  # 10 minutes of validity, over 50 minutes ago
    layer = sigstore.cosign_signature_layer(
        str(IMAGE), "registry.test/acme/app", identity=IDENTITY, issuer=ISSUER, now=now, leaf=leaf
    )

    result = _verify(layer, root)

    assert result.outcome is Outcome.UNTRUSTED
    assert _failed(result) == {"cert_not_valid_at_signing_time"}


def test_rejects_certificate_without_sct(sigstore: TestSigstore, root: TrustRoot) -> None:
    layer = sigstore.cosign_signature_layer(
        str(IMAGE), "registry.test/acme/app", identity=IDENTITY, issuer=ISSUER, leaf=LeafOptions(with_sct=False)
    )

    assert _failed(_verify(layer, root)) == {"sct_missing"}


def test_rejects_sct_from_an_unknown_ct_log(sigstore: TestSigstore, root: TrustRoot) -> None:
    leaf = LeafOptions(sct_key=ec.generate_private_key(ec.SECP256R1()))
    layer = sigstore.cosign_signature_layer(
        str(IMAGE), "registry.test/acme/app", identity=IDENTITY, issuer=ISSUER, leaf=leaf
    )

    result = _verify(layer, root)

    assert result.outcome is Outcome.UNTRUSTED
    assert _failed(result) == {"sct_unknown_log"}


def test_rejects_sct_that_does_not_verify_with_the_ct_key_of_its_log_id(
    sigstore: TestSigstore, signed: SignedLayer
) -> None:
    # The root names the right CT log id but holds another key: the SCT signature must be checked, not the id.
    doc = sigstore.trusted_root()
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = other.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    doc["ctlogs"][0]["publicKey"]["rawBytes"] = _b64(der)
    wrong_key = TrustRoot.from_json(json.dumps(doc).encode(), name="wrong-ct-key")

    result = _verify(signed, wrong_key)

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"sct_invalid"}


def test_ca_outside_its_validity_window_is_not_trusted(sigstore: TestSigstore, signed: SignedLayer) -> None:
    doc = sigstore.trusted_root()
    doc["certificateAuthorities"][0]["validFor"] = {
        "start": doc["certificateAuthorities"][0]["validFor"]["start"],
        "end": (datetime.now(UTC) - timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
    }
    retired = TrustRoot.from_json(json.dumps(doc).encode(), name="retired-ca")

    result = _verify(signed, retired)

    assert result.outcome is Outcome.UNTRUSTED
    assert _failed(result) == {"ca_not_valid_at_time"}


def test_log_key_outside_its_validity_window_is_not_trusted(sigstore: TestSigstore, signed: SignedLayer) -> None:
    doc = sigstore.trusted_root()
    doc["tlogs"][0]["publicKey"]["validFor"] = {
        "start": doc["tlogs"][0]["publicKey"]["validFor"]["start"],
        "end": (datetime.now(UTC) - timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
    }
    retired = TrustRoot.from_json(json.dumps(doc).encode(), name="retired-log")

    result = _verify(signed, retired)

    assert "tlog_key_not_valid_at_time" in _failed(result)
    assert result.tlog == ""


def test_email_and_othername_identities(sigstore: TestSigstore, root: TrustRoot) -> None:
    for identity in ("alice@example.test", "alice!oidc.example.test"):  # RFC822Name, then OtherName username
        layer = sigstore.cosign_signature_layer(
            str(IMAGE), "registry.test/acme/app", identity=identity, issuer="https://oidc.example.test"
        )

        result = _verify(layer, root, identity=IdentityPolicy(issuer="https://oidc.example.test", identity=identity))

        assert result.is_verified, result.failures
        assert result.identity == identity


def test_missing_bundle_fails_unless_the_log_is_not_required(signed: SignedLayer, root: TrustRoot) -> None:
    unlogged = _with_annotation(signed, ANNOTATION_BUNDLE, None)
    signed_at = datetime.fromtimestamp(_bundle(signed)["Payload"]["integratedTime"], tz=UTC)

    required = _verify(unlogged, root, now=signed_at)
    relaxed = _verify(unlogged, root, now=signed_at, require_tlog=False)

    assert required.outcome is Outcome.UNTRUSTED
    assert _failed(required) == {"tlog_missing"}
    assert required.tlog == ""
    # Not requiring the log does not excuse a keyless signature from a signed time: without a log entry or a
    # timestamp nothing shows the short-lived certificate was valid when it signed (cosign would check it at
    # "now"; we are stricter). The opt-in is for key-based signatures.
    assert relaxed.outcome is Outcome.UNTRUSTED
    assert _failed(relaxed) == {"no_signed_time"}
    assert relaxed.tlog == "not_logged" and relaxed.integrated_time is None


# -- key-based .sig, logged in the test log --------------------------------------------------------------------------


def test_key_based_signature_reports_the_key_fingerprint(sigstore: TestSigstore, root: TrustRoot) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    layer = sigstore.cosign_signature_layer_with_key(str(IMAGE), "registry.test/acme/app", key)

    result = verify_signature_layer(layer, image_digest=IMAGE, trust_root=root, public_key=pem)

    assert result.outcome is Outcome.VERIFIED, result.failures
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert result.key == f"sha256:{hashlib.sha256(der).hexdigest()}"
    assert result.identity == "" and result.issuer == ""


def test_unreadable_configured_key_is_an_error_not_a_verdict(signed: SignedLayer, root: TrustRoot) -> None:
    result = _verify(signed, root, public_key=b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")

    assert result.outcome is Outcome.ERROR
    assert result.failures[0].code == "public_key_unreadable"


# -- malformed .sig layers: a result, never an exception -------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda layer: dataclasses.replace(layer, payload=b"not json"), "payload_not_json"),
        (
            lambda layer: dataclasses.replace(layer, payload=b'{"critical": {"type": "something else"}}'),
            "wrong_payload_type",
        ),
        (
            lambda layer: dataclasses.replace(
                layer, payload=b'{"critical": {"type": "cosign container image signature", "image": {}}}'
            ),
            "payload_missing_digest",
        ),
        (
            lambda layer: dataclasses.replace(layer, payload=b" " * (MAX_SIGNATURE_PAYLOAD_BYTES + 1)),
            "payload_too_large",
        ),
        (lambda layer: dataclasses.replace(layer, media_type="application/octet-stream"), "wrong_media_type"),
        (lambda layer: _with_annotation(layer, ANNOTATION_SIGNATURE, None), "signature_missing"),
        (lambda layer: _with_annotation(layer, ANNOTATION_SIGNATURE, "%%% not base64"), "signature_not_base64"),
        (
            lambda layer: _with_annotation(layer, ANNOTATION_CERTIFICATE, "-----BEGIN CERTIFICATE-----\nx\n"),
            "certificate_unreadable",
        ),
        (lambda layer: _with_annotation(layer, ANNOTATION_BUNDLE, "{}"), "bundle_unreadable"),
        (lambda layer: _with_annotation(layer, ANNOTATION_BUNDLE, "[1, 2]"), "bundle_unreadable"),
        (lambda layer: _with_annotation(layer, ANNOTATION_BUNDLE, "x" * 200_000), "annotation_too_large"),
    ],
)
def test_malformed_signature_layers_give_malformed_results(
    signed: SignedLayer, root: TrustRoot, change: Any, code: str
) -> None:
    result = _verify(change(signed), root)

    assert result.outcome is Outcome.MALFORMED
    assert code in _failed(result)
    assert not result.checks[0].ok


def _mutations(layer: SignedLayer, seed: int, count: int) -> list[SignedLayer]:
    """Deterministic damage: flipped payload bytes, and annotations with flipped, cut or retyped JSON values."""
    rng = random.Random(seed)  # noqa: S311 - reproducible damage, not cryptography
    variants = []
    for _ in range(count):
        payload = bytearray(layer.payload)
        annotations: dict[str, Any] = dict(layer.annotations)
        if rng.random() < 0.5 and payload:
            payload[rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
        name = rng.choice(sorted(annotations))
        value = annotations[name]
        choice = rng.randrange(4)
        if choice == 0 and value:
            cut = rng.randrange(len(value))
            annotations[name] = value[:cut]
        elif choice == 1 and value:
            position = rng.randrange(len(value))
            annotations[name] = value[:position] + chr(rng.randrange(32, 127)) + value[position + 1 :]
        elif choice == 2 and name == ANNOTATION_BUNDLE:
            bundle = json.loads(value)
            key = rng.choice(["integratedTime", "logIndex", "logID", "body"])
            bundle["Payload"][key] = rng.choice([None, -1, True, "x", [], {}, 2**70])
            annotations[name] = json.dumps(bundle)
        else:
            annotations[name] = rng.choice([1, None, ["x"]])  # not text at all
        variants.append(SignedLayer(layer.media_type, bytes(payload), annotations))  # type: ignore[arg-type]
    return variants


def test_damaged_layers_never_raise_and_never_verify(
    signed: SignedLayer, attested: SignedLayer, root: TrustRoot
) -> None:
    for layer in _mutations(signed, seed=1, count=300):
        result = _verify(layer, root)
        assert result.outcome is not Outcome.VERIFIED or layer.payload == signed.payload
    for layer in _mutations(attested, seed=2, count=300):
        result, statement = _verify_att(layer, root)
        if result.is_verified:
            assert layer.payload == attested.payload and statement is not None


def test_bundle_with_unreadable_body_is_malformed(signed: SignedLayer, root: TrustRoot) -> None:
    bundle = _bundle(signed)
    bundle["Payload"]["body"] = _b64(b"not json")
    result = _verify(_with_annotation(signed, ANNOTATION_BUNDLE, json.dumps(bundle)), root)

    assert result.outcome is Outcome.MALFORMED
    assert {"tlog_body_unreadable", "tlog_set_invalid"} <= _failed(result)


def test_download_output_must_be_a_list_of_signatures() -> None:
    for data in (b"not json", b"{}", b"[1]"):
        with pytest.raises(MalformedEvidenceError) as caught:
            layers_from_download(data)
        assert caught.value.code == "download_malformed"


# -- .att: DSSE in-toto attestations -------------------------------------------------------------------------


def _statement(digest: Digest = IMAGE, **kwargs: Any) -> bytes:
    return in_toto_statement("registry.test/acme/app", digest.hex, SLSA, {"buildType": "test"}, **kwargs)


def _verify_att(layer: SignedLayer, root: TrustRoot, **kwargs: Any) -> tuple[VerificationResult, Any]:
    kwargs.setdefault("identity", POLICY)
    kwargs.setdefault("image_digest", IMAGE)
    return verify_attestation_layer(layer, trust_root=root, **kwargs)


@pytest.fixture(scope="module")
def attested(sigstore: TestSigstore) -> SignedLayer:
    return sigstore.cosign_attestation_layer(
        _statement(statement_type=IN_TOTO_STATEMENT_V01), identity=IDENTITY, issuer=ISSUER
    )


def test_attestation_verifies_and_returns_the_statement(attested: SignedLayer, root: TrustRoot) -> None:
    result, statement = _verify_att(attested, root)

    assert result.outcome is Outcome.VERIFIED, result.failures
    assert result.tlog == "inclusion_promise"
    assert result.extra["predicate_type"] == SLSA
    assert statement is not None and statement["predicateType"] == SLSA
    assert statement["subject"][0]["digest"] == {"sha256": IMAGE.hex}
    assert "tlog_body_ok" in _passed(result)  # the intoto/0.0.2 entry matched envelope hash, signature and cert


def test_attestation_with_sha512_subject_matches_a_sha512_digest(sigstore: TestSigstore, root: TrustRoot) -> None:
    artifact = Digest.of(b"a package", "sha512")
    layer = sigstore.cosign_attestation_layer(
        _statement(artifact, digest_algorithm="sha512"), identity=IDENTITY, issuer=ISSUER
    )

    result, statement = _verify_att(layer, root, image_digest=artifact)

    assert result.is_verified, result.failures
    assert statement is not None


def test_rejects_attestation_about_another_subject(sigstore: TestSigstore, root: TrustRoot) -> None:
    layer = sigstore.cosign_attestation_layer(_statement(OTHER_IMAGE), identity=IDENTITY, issuer=ISSUER)

    result, statement = _verify_att(layer, root)

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"subject_mismatch"}
    assert statement is None
    assert str(IMAGE) in result.reason and OTHER_IMAGE.hex[:16] in result.reason


def test_rejects_tampered_attestation_statement(attested: SignedLayer, root: TrustRoot) -> None:
    envelope = json.loads(attested.payload)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["buildType"] = "evil"
    envelope["payload"] = _b64(json.dumps(statement).encode())
    tampered = dataclasses.replace(attested, payload=json.dumps(envelope).encode())

    result, returned = _verify_att(tampered, root)

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"signature_invalid", "tlog_body_mismatch"}
    assert returned is None


def test_rejects_attestation_from_another_identity(attested: SignedLayer, root: TrustRoot) -> None:
    result, statement = _verify_att(attested, root, identity=IdentityPolicy(issuer=ISSUER, identity="someone@else"))

    assert result.outcome is Outcome.UNTRUSTED
    assert _failed(result) == {"identity_mismatch"}
    assert statement is None


def test_attestation_envelope_must_be_the_logged_bytes(attested: SignedLayer, root: TrustRoot) -> None:
    # Same statement and signature, re-serialized: cosign compares the logged hash with the layer's bytes.
    reformatted = json.dumps(json.loads(attested.payload), indent=2).encode()

    result, _ = _verify_att(dataclasses.replace(attested, payload=reformatted), root)

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"tlog_body_mismatch"}
    assert "envelope hash" in result.reason


def test_rejects_intoto_entry_with_another_signature(
    sigstore: TestSigstore, attested: SignedLayer, root: TrustRoot
) -> None:
    def swap(spec: dict[str, Any]) -> None:
        other = ec.generate_private_key(ec.SECP256R1()).sign(b"x", ec.ECDSA(hashes.SHA256()))
        spec["content"]["envelope"]["signatures"][0]["sig"] = _b64(_b64(other).encode())  # intoto/0.0.2: twice

    result, _ = _verify_att(_relogged(sigstore, attested, swap), root)

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"tlog_body_mismatch"}
    assert "signature" in result.reason


def test_rejects_intoto_entry_with_another_signer(
    sigstore: TestSigstore, attested: SignedLayer, root: TrustRoot
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = stranger.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def swap(spec: dict[str, Any]) -> None:
        spec["content"]["envelope"]["signatures"][0]["publicKey"] = _b64(pem)

    result, _ = _verify_att(_relogged(sigstore, attested, swap), root)

    assert result.outcome is Outcome.INVALID
    assert _failed(result) == {"tlog_body_mismatch"}
    assert "logged key" in result.reason


def _older_entry_body(kind: str, layer: SignedLayer) -> dict[str, Any]:
    """The same attestation as an older cosign or another client would have logged it."""
    envelope = json.loads(layer.payload)
    cert_pem = _b64(layer.annotations[ANNOTATION_CERTIFICATE].encode())
    envelope_hash = {"algorithm": "sha256", "value": hashlib.sha256(layer.payload).hexdigest()}
    payload_hash = {"algorithm": "sha256", "value": hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()}
    if kind == "intoto/0.0.1":
        spec = {"content": {"hash": envelope_hash, "payloadHash": payload_hash}, "publicKey": cert_pem}
    else:
        signatures = [{"signature": sig["sig"], "verifier": cert_pem} for sig in envelope["signatures"]]
        spec = {"envelopeHash": envelope_hash, "payloadHash": payload_hash, "signatures": signatures}
    name, version = kind.split("/")
    return {"apiVersion": version, "kind": name, "spec": spec}


@pytest.mark.parametrize("kind", ["intoto/0.0.1", "dsse/0.0.1"])
def test_attestation_logged_as_older_entry_kinds_verifies(
    sigstore: TestSigstore, attested: SignedLayer, root: TrustRoot, kind: str
) -> None:
    body = _older_entry_body(kind, attested)
    entry = sigstore.log.append(rfc8785.dumps(body), integrated_time=_bundle(attested)["Payload"]["integratedTime"])
    relogged = _with_annotation(attested, ANNOTATION_BUNDLE, entry.cosign_bundle().decode())

    result, statement = _verify_att(relogged, root)
    payload_sha256 = hashlib.sha256(base64.b64decode(json.loads(attested.payload)["payload"])).hexdigest()
    wrong = json.loads(json.dumps(body).replace(payload_sha256, "0" * 64))
    entry = sigstore.log.append(rfc8785.dumps(wrong), integrated_time=entry.integrated_time)
    mismatched, _ = _verify_att(_with_annotation(attested, ANNOTATION_BUNDLE, entry.cosign_bundle().decode()), root)

    assert result.is_verified, result.failures
    assert statement is not None
    assert _failed(mismatched) == {"tlog_body_mismatch"}
    assert "payload hash" in mismatched.reason


def test_rejects_attestation_whose_predicate_type_annotation_lies(attested: SignedLayer, root: TrustRoot) -> None:
    layer = _with_annotation(attested, ANNOTATION_PREDICATE_TYPE, "https://cyclonedx.org/bom")

    result, _ = _verify_att(layer, root)

    assert result.outcome is Outcome.MALFORMED
    assert "predicate_type_mismatch" in _failed(result)


def test_rejects_attestation_with_a_signature_bundle(
    attested: SignedLayer, signed: SignedLayer, root: TrustRoot
) -> None:
    result, _ = _verify_att(_with_annotation(attested, ANNOTATION_BUNDLE, signed.annotations[ANNOTATION_BUNDLE]), root)

    assert result.outcome is Outcome.UNSUPPORTED
    assert "tlog_body_unsupported" in _failed(result)


def test_rejects_attestation_from_an_untrusted_root(root: TrustRoot) -> None:
    stranger = TestSigstore.create(name="somebody-else")
    layer = stranger.cosign_attestation_layer(_statement(), identity=IDENTITY, issuer=ISSUER)

    result, statement = _verify_att(layer, root)

    assert result.outcome is Outcome.UNTRUSTED
    assert {"chain_untrusted", "tlog_unknown_log"} <= _failed(result)
    assert statement is None


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"not json", "envelope_unreadable"),
        (
            b'{"payloadType": "application/vnd.in-toto+json", "payload": "e30=", "signatures": []}',
            "envelope_unreadable",
        ),
        (b'{"payloadType": "text/plain", "payload": "e30=", "signatures": [{"sig": "AAAA"}]}', "wrong_payload_type"),
        (
            b'{"payloadType": "application/vnd.in-toto+json", "payload": "e30=", "signatures": [{"sig": "AAAA"}]}',
            "statement_unreadable",
        ),
    ],
)
def test_malformed_attestation_layers_give_malformed_results(
    attested: SignedLayer, root: TrustRoot, payload: bytes, code: str
) -> None:
    result, statement = _verify_att(dataclasses.replace(attested, payload=payload), root)

    assert result.outcome is Outcome.MALFORMED
    assert code in _failed(result)
    assert statement is None


# -- interop: what the real cosign writes to a real registry ----------------------------------------------------


@pytest.mark.integration
def test_real_cosign_key_based_signature_and_attestation_verify(registry: RegistryServer, tmp_path: Path) -> None:
    cosign = require_binary("cosign", "run ../shared/tools/install-cosign")
    client = registry.client()
    repository = unique_repository("cosign")
    digest = push_image(client, repository, make_image())
    reference = f"{registry.host}/{repository}@{digest}"
    (tmp_path / "predicate.json").write_text(json.dumps({"buildType": "https://example.test/build", "builder": {}}))
    env = {**os.environ, "HOME": str(tmp_path), "TUF_ROOT": str(tmp_path / "tuf"), "COSIGN_PASSWORD": "test"}

    def run(*args: str) -> None:
        done = subprocess.run([cosign, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    # Offline: no Rekor here, so cosign writes no bundle annotation (the layers carry the signature only).
    run("generate-key-pair")
    offline = ["--key", "cosign.key", "--tlog-upload=false", "--allow-insecure-registry", "--yes"]
    run("sign", *offline, reference)
    run("attest", *offline, "--predicate", "predicate.json", "--type", "slsaprovenance", reference)
    found, problems = find_cosign_evidence(client, repository, digest, level="image")
    key = (tmp_path / "cosign.pub").read_bytes()
    [signature] = [f.layer for f in found if f.kind == "signature" and f.layer is not None]
    [attestation] = [f.layer for f in found if f.kind == "attestation" and f.layer is not None]
    production = TrustRoot.production()

    signed = verify_signature_layer(
        signature, image_digest=digest, trust_root=production, public_key=key, require_tlog=False
    )
    attested, statement = verify_attestation_layer(
        attestation, image_digest=digest, trust_root=production, public_key=key, require_tlog=False
    )
    unlogged = verify_signature_layer(signature, image_digest=digest, trust_root=production, public_key=key)
    elsewhere = verify_signature_layer(
        signature, image_digest=OTHER_IMAGE, trust_root=production, public_key=key, require_tlog=False
    )

    assert problems == []
    assert signed.outcome is Outcome.VERIFIED, signed.failures
    assert attested.outcome is Outcome.VERIFIED, attested.failures
    assert statement is not None and statement["predicateType"] == "https://slsa.dev/provenance/v0.2"
    assert statement["_type"] == "https://in-toto.io/Statement/v0.1"  # what cosign 2's legacy attest writes
    assert _failed(unlogged) == {"tlog_missing"}
    assert _failed(elsewhere) == {"digest_mismatch"}
