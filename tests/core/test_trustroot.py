"""Trusted roots: loading, validation with clear errors, indexes, and the per-process caches."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from provenance.core.errors import TrustRootError
from provenance.core.testsigstore import TestSigstore
from provenance.core.trustroot import MAX_TRUST_ROOT_BYTES, LogKey, TrustRoot, ValidityWindow, spki_sha256
from tests.support import real_fixtures_dir

PRODUCTION_REKOR_LOG_ID = "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"
PRODUCTION_CT_2022_LOG_ID = "dd3d306ac6c7113263191e1c99673702a24a5eb8de3cadff878a72802f29ee8e"


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore.create(name="trustroot-tests")


@pytest.fixture(scope="module")
def root_doc(sigstore: TestSigstore) -> dict[str, Any]:
    return sigstore.trusted_root()


def _load(doc: Any, name: str = "broken") -> TrustRoot:
    return TrustRoot.from_json(json.dumps(doc).encode(), name=name)


def _assert_clear(err: TrustRootError, *fragments: str) -> None:
    message = str(err)
    for fragment in fragments:
        assert fragment in message, message
    # a user reads this: no pydantic dump, no Python internals
    for noise in ("pydantic", "Traceback", "validation error for", "input_type="):
        assert noise not in message, message


# -- the roots shipped with sigstore --------------------------------------------------------------------------


def test_production_root_indexes_rekor_and_ct_keys_by_log_id() -> None:
    root = TrustRoot.production()

    rekor = root.tlog_key(bytes.fromhex(PRODUCTION_REKOR_LOG_ID))
    assert rekor is not None
    assert rekor.base_url == "https://rekor.sigstore.dev"
    assert rekor.log_id == spki_sha256(rekor.public_key)  # the Rekor v1 log id is sha256 of the DER SPKI
    assert rekor.validity.start == datetime(2021, 1, 12, 11, 53, 27, tzinfo=UTC)
    assert rekor.validity.end is None
    ct = root.ctlog_key(bytes.fromhex(PRODUCTION_CT_2022_LOG_ID))
    assert ct is not None and ct.base_url == "https://ctfe.sigstore.dev/2022"
    assert root.tlog_key(b"\x00" * 32) is None


def test_production_root_keeps_ca_chains_and_validity_windows() -> None:
    root = TrustRoot.production()

    assert len(root.certificate_authorities) == 2
    first, current = root.certificate_authorities
    # the first Fulcio CA was retired at the end of 2022; its window is what decides old signatures
    assert first.validity.end == datetime(2022, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert current.validity.end is None
    assert len(current.certificates) == 2  # intermediate, then root
    assert current.certificates[-1].subject == current.certificates[-1].issuer
    assert root.timestamp_authorities


def test_embedded_roots_are_loaded_once_and_differ() -> None:
    assert TrustRoot.production() is TrustRoot.production()
    assert TrustRoot.staging() is TrustRoot.staging()
    assert TrustRoot.production() != TrustRoot.staging()
    assert TrustRoot.production().name == "sigstore-production"


def test_staging_root_holds_a_pkcs1_rsa_ct_key() -> None:
    # A real quirk: staging's retired CT key is raw PKCS#1 RSA, and its log id is not sha256(SPKI).
    keys = [k for k in TrustRoot.staging().ctlog_keys.values() if k.key_details == "PKCS1_RSA_PKCS1V5"]
    assert len(keys) == 1


def test_sigstore_verifier_is_built_once_per_root_content() -> None:
    data = TrustRoot.production().raw
    renamed = TrustRoot.from_json(data, name="another label")

    assert renamed.verifier() is TrustRoot.production().verifier()
    assert TrustRoot.production().verifier() is not TrustRoot.staging().verifier()


def test_from_json_is_cached_by_content(root_doc: dict[str, Any]) -> None:
    data = json.dumps(root_doc).encode()
    first = TrustRoot.from_json(data, name="cached")

    assert TrustRoot.from_json(bytes(data), name="cached") is first
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    assert first.raw == data


def test_trust_root_is_immutable() -> None:
    root = TrustRoot.production()
    with pytest.raises(AttributeError):
        root.name = "changed"  # type: ignore[misc]


# -- private deployments --------------------------------------------------------------------------------------


def test_private_root_from_test_sigstore_verifies_its_bundles_with_sigstore(sigstore: TestSigstore) -> None:
    from sigstore.models import Bundle
    from sigstore.verify.policy import Identity

    root = TrustRoot.from_json(sigstore.trusted_root_json(), name="private")
    bundle = sigstore.sign_blob_bundle(b"artifact", identity="dev@example.test", issuer="https://oidc.example.test")

    root.verifier().verify_artifact(
        b"artifact", Bundle.from_json(bundle), Identity(identity="dev@example.test", issuer="https://oidc.example.test")
    )
    assert root.tlog_key(sigstore.rekor_log_id) is not None
    assert root.ctlog_key(sigstore.ct_log_id) is not None


def test_private_root_without_ca_common_name_loads() -> None:
    # sigstore scaffolding writes CAs with only an organization; sigstore_models requires a commonName.
    path = real_fixtures_dir() / "sigstore-go__othername_private_instance" / "trusted_root.json"
    root = TrustRoot.from_json(path.read_bytes(), name="scaffolding")

    assert root.certificate_authorities[0].name == "Linux Foundation"
    assert root.sigstore_trusted_root is not None
    assert root.verifier() is not None


# -- validity windows and log keys ----------------------------------------------------------------------------


def test_validity_window_includes_both_ends() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    window = ValidityWindow(start, start + timedelta(days=1))

    assert window.contains(start)
    assert window.contains(start + timedelta(days=1))
    assert not window.contains(start - timedelta(microseconds=1))
    assert not window.contains(start + timedelta(days=1, microseconds=1))
    assert ValidityWindow(start).contains(datetime(2999, 1, 1, tzinfo=UTC))


def test_log_key_verifies_ecdsa_and_ed25519_and_rejects_garbage() -> None:
    always = ValidityWindow(datetime(2020, 1, 1, tzinfo=UTC))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ec_log = LogKey(b"1" * 32, "", "PKIX_ECDSA_P256_SHA_256", ec_key.public_key(), always)
    ed_log = LogKey(b"2" * 32, "", "PKIX_ED25519", ed_key.public_key(), always)

    assert ec_log.verify(ec_key.sign(b"data", ec.ECDSA(hashes.SHA256())), b"data")
    assert ed_log.verify(ed_key.sign(b"data"), b"data")
    assert not ec_log.verify(ec_key.sign(b"data", ec.ECDSA(hashes.SHA256())), b"other")
    assert not ec_log.verify(b"not a signature", b"data")
    assert not ed_log.verify(b"", b"data")


# -- malformed roots: one clear TrustRootError each -----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        (b"", ["not valid JSON"]),
        (b"{not json", ["not valid JSON"]),
        (b"\xff\xfe", ["not valid JSON"]),
        (b"[]", ["expected a JSON object"]),
        (b'{"mediaType": "application/json"}', ["mediaType", "application/json"]),
    ],
)
def test_rejects_documents_that_are_not_trusted_roots(data: bytes, fragments: list[str]) -> None:
    with pytest.raises(TrustRootError) as caught:
        TrustRoot.from_json(data, name="broken")

    assert caught.value.code == "trust_root_malformed"
    _assert_clear(caught.value, "'broken'", *fragments)


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    # a JSON round trip, not deepcopy: the test Sigstore shares one validFor dict between entries
    return json.loads(json.dumps(doc))  # type: ignore[no-any-return]


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    changed = _copy(doc)
    del changed[key]
    return changed


def _with(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = _copy(doc)
    target: Any = changed
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return changed


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda d: _without(d, "certificateAuthorities"), ["certificateAuthorities", "missing"]),
        (lambda d: _with(d, "certificateAuthorities", []), ["certificateAuthorities", "empty"]),
        (lambda d: _without(d, "tlogs"), ["tlogs", "missing"]),
        (lambda d: _with(d, "tlogs", []), ["tlogs", "empty"]),
        (lambda d: _with(d, "tlogs", "rekor"), ["tlogs", "expected a list of objects"]),
        (lambda d: _with(d, "tlogs.0.publicKey.rawBytes", "%%%"), ["tlogs[0].publicKey.rawBytes", "base64"]),
        (
            lambda d: _with(d, "tlogs.0.publicKey.rawBytes", base64.b64encode(b"not a key").decode()),
            ["tlogs[0].publicKey.rawBytes", "not a DER public key"],
        ),
        (lambda d: _with(d, "tlogs.0.publicKey.keyDetails", "PKIX_ED25519"), ["keyDetails", "PKIX_ED25519"]),
        (lambda d: _with(d, "tlogs.0.logId.keyId", "AAAA"), ["tlogs[0].logId.keyId", "32 bytes"]),
        (lambda d: _with(d, "ctlogs.0.publicKey.validFor.start", "yesterday"), ["ctlogs[0]", "RFC 3339"]),
        (
            lambda d: _with(d, "certificateAuthorities.0.certChain.certificates", []),
            ["certificateAuthorities[0].certChain.certificates", "non-empty"],
        ),
        (
            lambda d: _with(d, "certificateAuthorities.0.certChain.certificates.0.rawBytes", "AAAA"),
            ["certificateAuthorities[0].certChain.certificates[0].rawBytes", "not a DER X.509 certificate"],
        ),
        (lambda d: _without_key(d, "certificateAuthorities.0", "validFor"), ["certificateAuthorities[0].validFor"]),
        (
            lambda d: _with(
                d, "certificateAuthorities.0.validFor", {"start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}
            ),
            ["ends", "before it starts"],
        ),
    ],
)
def test_rejects_broken_roots_with_the_path_of_the_problem(
    root_doc: dict[str, Any], change: Any, fragments: list[str]
) -> None:
    with pytest.raises(TrustRootError) as caught:
        _load(change(root_doc))

    assert caught.value.code == "trust_root_malformed"
    _assert_clear(caught.value, *fragments)


def _without_key(doc: dict[str, Any], path: str, key: str) -> dict[str, Any]:
    changed = _copy(doc)
    target: Any = changed
    for part in path.split("."):
        target = target[int(part)] if part.isdigit() else target[part]
    del target[key]
    return changed


def test_rejects_a_root_sigstore_cannot_read_without_a_pydantic_dump(root_doc: dict[str, Any]) -> None:
    # Our reader tolerates an unknown field; sigstore_models does not. The error still reads as one sentence.
    with pytest.raises(TrustRootError) as caught:
        _load(_with(root_doc, "tlogs.0.surprise", True))

    _assert_clear(caught.value, "not a valid Sigstore trusted root", "tlogs.0.surprise")


def test_rejects_oversized_documents() -> None:
    with pytest.raises(TrustRootError) as caught:
        TrustRoot.from_json(b" " * (MAX_TRUST_ROOT_BYTES + 1), name="huge")

    assert caught.value.code == "trust_root_too_large"


def test_rejects_text_instead_of_bytes() -> None:
    with pytest.raises(TrustRootError):
        TrustRoot.from_json("{}", name="text")  # type: ignore[arg-type]
