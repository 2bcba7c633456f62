"""Rekor v2 (rekor-tiles) entries: hashedrekord 0.0.2, DSSE logged as a hashedrekord over its pre-authentication
encoding, checkpoints with witness cosignatures, and no SET or integrated time: a trusted RFC 3161 timestamp is
the only signed time."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provenance.core.testsigstore import (
    GITHUB_ACTIONS_ISSUER,
    LogOptions,
    TestSigstore,
    TimestampAuthority,
    in_toto_statement,
    with_timestamp_authority,
    with_timestamps,
)
from provenance.core.trustroot import TrustRoot
from provenance.core.types import IdentityPolicy
from provenance.core.verify import verify_bundle
from tests.core.test_differential import Case, reference_accepts

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
POLICY = IdentityPolicy(issuer=GITHUB_ACTIONS_ISSUER, identity=IDENTITY)
ARTIFACT = b"the released artifact\n"
NOW = datetime.now(UTC).replace(microsecond=0)
V2 = LogOptions(rekor_v2=True)


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore.create(name="rekor-v2")


@pytest.fixture(scope="module")
def tsa() -> TimestampAuthority:
    return TimestampAuthority(name="rekor-v2-tsa")


@pytest.fixture(scope="module")
def root(sigstore: TestSigstore, tsa: TimestampAuthority) -> TrustRoot:
    return TrustRoot.from_json(with_timestamp_authority(sigstore.trusted_root(), tsa), name="rekor-v2")


def _bundle(sigstore: TestSigstore, content: str, log: LogOptions = V2) -> bytes:
    if content == "message":
        return sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER, now=NOW, log=log)
    statement = in_toto_statement("app.tgz", hashlib.sha256(ARTIFACT).hexdigest(), "https://slsa.dev/provenance/v1",
                                  {})
    return sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER, now=NOW, log=log)


def _both(raw: bytes, root: TrustRoot) -> tuple[Any, bool]:
    ours = verify_bundle(raw, artifact=ARTIFACT, trust_root=root, identity=POLICY).result
    return ours, reference_accepts(Case("v2", raw, ARTIFACT, root, POLICY))[0]


@pytest.mark.parametrize("content", ["message", "dsse"])
def test_rekor_v2_entries_verify_with_a_trusted_timestamp(sigstore: TestSigstore, tsa: TimestampAuthority,
                                                          root: TrustRoot, content: str) -> None:
    raw = with_timestamps(_bundle(sigstore, content), tsa, gen_time=NOW)
    entry = json.loads(raw)["verificationMaterial"]["tlogEntries"][0]
    assert entry["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.2"}
    assert "inclusionPromise" not in entry and entry["integratedTime"] == "0"

    ours, reference = _both(raw, root)

    assert reference and ours.is_verified, ours.failures
    assert ours.tlog == "inclusion_proof" and not ours.leniencies
    assert {"timestamp_ok", "signed_time_ok", "tlog_ok", "tlog_body_ok"} <= {c.code for c in ours.checks if c.ok}


@pytest.mark.parametrize("content", ["message", "dsse"])
def test_rekor_v2_entries_without_a_timestamp_have_no_signed_time(sigstore: TestSigstore, root: TrustRoot,
                                                                  content: str) -> None:
    ours, reference = _both(_bundle(sigstore, content), root)

    assert not reference and [c.code for c in ours.failures] == ["no_signed_time"]


def test_witness_cosignatures_on_the_checkpoint_are_tolerated(sigstore: TestSigstore, tsa: TimestampAuthority,
                                                              root: TrustRoot) -> None:
    raw = with_timestamps(_bundle(sigstore, "message", LogOptions(rekor_v2=True, cosignatures=2)), tsa, gen_time=NOW)
    envelope = json.loads(raw)["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"]
    assert envelope.count("\u2014 ") == 3  # the log's signature and two witnesses'

    ours, reference = _both(raw, root)

    assert reference and ours.is_verified, ours.failures


def test_a_rekor_v2_checkpoint_signed_by_another_key_fails(sigstore: TestSigstore, tsa: TimestampAuthority,
                                                           root: TrustRoot) -> None:
    forged = LogOptions(rekor_v2=True, checkpoint_key=ec.generate_private_key(ec.SECP256R1()))
    ours, reference = _both(with_timestamps(_bundle(sigstore, "message", forged), tsa, gen_time=NOW), root)

    assert not reference and [c.code for c in ours.failures] == ["tlog_checkpoint_invalid"]


def test_a_rekor_v2_entry_for_another_signature_fails(sigstore: TestSigstore, tsa: TimestampAuthority,
                                                      root: TrustRoot) -> None:
    mine = json.loads(with_timestamps(_bundle(sigstore, "message"), tsa, gen_time=NOW))
    theirs = json.loads(_bundle(sigstore, "message"))
    mine["verificationMaterial"]["tlogEntries"] = theirs["verificationMaterial"]["tlogEntries"]

    ours, reference = _both(json.dumps(mine).encode(), root)

    assert not reference and [c.code for c in ours.failures] == ["tlog_body_mismatch"]


# -- key-based Rekor v2 entries and dsse 0.0.2: our own engine decides (sigstore-python reads neither) ------------

KEY = ec.generate_private_key(ec.SECP256R1())
KEY_PEM = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_bundle(sigstore: TestSigstore, content: str, log: LogOptions = V2) -> bytes:
    if content == "message":
        return sigstore.sign_blob_bundle_with_key(ARTIFACT, KEY, now=NOW, log=log)
    return sigstore.sign_dsse_bundle_with_key(_statement(), KEY, now=NOW, log=log)


def _statement() -> bytes:
    return in_toto_statement("app.tgz", hashlib.sha256(ARTIFACT).hexdigest(), "https://slsa.dev/provenance/v1", {})


def _ours_with_key(raw: bytes, root: TrustRoot) -> Any:
    return verify_bundle(raw, artifact=ARTIFACT, trust_root=root, public_keys=(KEY_PEM,)).result


@pytest.mark.parametrize(("content", "log", "kind"), [
    ("message", V2, "hashedrekord"),
    ("dsse", V2, "hashedrekord"),
    ("dsse", LogOptions(rekor_v2=True, dsse_v2_entry=True), "dsse"),
    ("message", LogOptions(rekor_v2=True, cosignatures=2), "hashedrekord"),
])
def test_key_based_rekor_v2_entries_verify_with_a_trusted_timestamp(sigstore: TestSigstore, tsa: TimestampAuthority,
                                                                    root: TrustRoot, content: str, log: LogOptions,
                                                                    kind: str) -> None:
    raw = with_timestamps(_key_bundle(sigstore, content, log), tsa, gen_time=NOW)
    entry = json.loads(raw)["verificationMaterial"]["tlogEntries"][0]
    assert entry["kindVersion"] == {"kind": kind, "version": "0.0.2"} and entry["integratedTime"] == "0"

    ours = _ours_with_key(raw, root)

    assert ours.is_verified, ours.failures
    assert ours.tlog == "inclusion_proof"
    expected = {"key_based", "key_rekor_v2"} | ({"dsse_v2_entry"} if kind == "dsse" else set())
    assert set(ours.leniencies) == expected
    assert {"timestamp_ok", "tlog_ok", "tlog_body_ok", "signature_ok"} <= {c.code for c in ours.checks if c.ok}


@pytest.mark.parametrize("content", ["message", "dsse"])
def test_key_based_rekor_v2_entries_without_a_timestamp_are_not_verified(sigstore: TestSigstore, root: TrustRoot,
                                                                         content: str) -> None:
    ours = _ours_with_key(_key_bundle(sigstore, content), root)

    assert not ours.is_verified and "no_signed_time" in [c.code for c in ours.failures]


def test_a_keyless_dsse_v2_entry_is_checked_here_and_shown_as_such(sigstore: TestSigstore, tsa: TimestampAuthority,
                                                                   root: TrustRoot) -> None:
    raw = with_timestamps(_bundle(sigstore, "dsse", LogOptions(rekor_v2=True, dsse_v2_entry=True)), tsa, gen_time=NOW)

    ours, reference = _both(raw, root)

    assert not reference  # sigstore-python 4.5: "Unsupported DSSE log entry type: dsse/0.0.2"
    assert ours.is_verified, ours.failures
    assert list(ours.leniencies) == ["dsse_v2_entry"]


@pytest.mark.parametrize("tamper", ["payload_hash", "signature", "verifier", "extra_signature"])
def test_a_dsse_v2_entry_that_is_not_about_this_envelope_fails(sigstore: TestSigstore, tsa: TimestampAuthority,
                                                               root: TrustRoot, tamper: str) -> None:
    """The body is compared field by field; the entry is re-logged so that its inclusion proof stays valid."""
    bundle = json.loads(with_timestamps(
        _key_bundle(sigstore, "dsse", LogOptions(rekor_v2=True, dsse_v2_entry=True)), tsa, gen_time=NOW))
    entry = bundle["verificationMaterial"]["tlogEntries"][0]
    body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
    record = body["spec"]["dsseV002"]
    other = ec.generate_private_key(ec.SECP256R1())
    if tamper == "payload_hash":
        record["payloadHash"]["digest"] = base64.b64encode(hashlib.sha256(b"another payload").digest()).decode()
    elif tamper == "signature":
        record["signatures"][0]["content"] = base64.b64encode(other.sign(b"x", ec.ECDSA(hashes.SHA256()))).decode()
    elif tamper == "verifier":
        record["signatures"][0]["verifier"] = {"publicKey": {"rawBytes": base64.b64encode(other.public_key(
        ).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()},
            "keyDetails": "PKIX_ECDSA_P256_SHA_256"}
    else:
        record["signatures"].append(record["signatures"][0])
    relogged = sigstore.log.append(rfc8785.dumps(body), integrated_time=0)
    bundle["verificationMaterial"]["tlogEntries"] = [sigstore.bundle_tlog_entry(relogged, log=V2)]

    ours = _ours_with_key(json.dumps(bundle).encode(), root)

    assert [c.code for c in ours.failures] == ["tlog_body_mismatch"]


def test_a_key_based_rekor_v2_checkpoint_signed_by_another_key_fails(sigstore: TestSigstore, tsa: TimestampAuthority,
                                                                     root: TrustRoot) -> None:
    forged = LogOptions(rekor_v2=True, checkpoint_key=ec.generate_private_key(ec.SECP256R1()))
    ours = _ours_with_key(with_timestamps(_key_bundle(sigstore, "message", forged), tsa, gen_time=NOW), root)

    assert [c.code for c in ours.failures] == ["tlog_checkpoint_invalid"]
