"""Differential test: our verifier against sigstore-python, the reference, over every bundle we have.

Every bundle the test Sigstore makes (each version, content, log evidence and each kind of damage the other tests
use) and every bundle of the real third-party fixtures goes through both. They must agree, except where our
result names a :class:`~provenance.core.types.Leniency`: then ours verified and sigstore-python rejected, and
the leniency is the recorded reason. A leniency claimed where the reference agrees is a wrong claim, and ours
rejecting what the reference verifies is a bug: both fail the test.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provenance.core.testsigstore import (
    GITHUB_ACTIONS_ISSUER,
    LeafOptions,
    LogOptions,
    TestSigstore,
    TimestampAuthority,
    in_toto_statement,
    with_timestamp_authority,
    with_timestamps,
)
from provenance.core.trustroot import TrustRoot
from provenance.core.types import Digest, IdentityPolicy, Leniency
from provenance.core.verify import verify_bundle
from tests.support import real_fixtures_dir

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ARTIFACT = b"the released artifact\n"


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    artifact: bytes | Digest
    root: TrustRoot
    identity: IdentityPolicy | None
    public_keys: tuple[bytes, ...] = ()


def reference_accepts(case: Case) -> tuple[bool, str]:
    """sigstore-python's verdict, as its own client gives it: the bundle, the artifact (a message signature's
    input, or a subject of a DSSE bundle's in-toto statement) and the identity."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle
    from sigstore.verify.policy import Identity, UnsafeNoOp
    from sigstore_models.common.v1 import HashAlgorithm

    # sigstore-python's Identity compares raw SAN values, so it cannot state an OtherName identity (``foo!oidc``):
    # there the reference checks the cryptography only, and the identity is ours alone.
    stateable = case.identity is not None and ("://" in case.identity.identity or "@" in case.identity.identity)
    policy = (Identity(identity=case.identity.identity, issuer=case.identity.issuer)
              if case.identity is not None and stateable else UnsafeNoOp())
    try:
        bundle = Bundle.from_json(case.raw)
        verifier = case.root.verifier()
        if bundle._dsse_envelope is None:
            given = case.artifact
            digest = bytes.fromhex(given.hex) if isinstance(given, Digest) else hashlib.sha256(given).digest()
            verifier.verify_artifact(Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest), bundle, policy)
            return True, ""
        _, payload = verifier.verify_dsse(bundle, policy)
        statement = json.loads(payload)
        wanted = {"sha256": case.artifact.hex if isinstance(case.artifact, Digest) else
                  hashlib.sha256(case.artifact).hexdigest()}
        if not isinstance(case.artifact, Digest):
            wanted["sha512"] = hashlib.sha512(case.artifact).hexdigest()
        if not any(s.get("digest", {}).get(alg) == value for s in statement.get("subject", [])
                   for alg, value in wanted.items()):
            return False, "no subject names the artifact"
        return True, ""
    except (SigstoreError, ValueError, KeyError, TypeError) as err:
        return False, f"{type(err).__name__}: {str(err)[:200]}"


# -- the cases ----------------------------------------------------------------------------------------------------


def _flip(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _edit(raw: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    data = json.loads(raw)
    change(data)
    return json.dumps(data).encode()


def _entry(data: dict[str, Any]) -> dict[str, Any]:
    return data["verificationMaterial"]["tlogEntries"][0]  # type: ignore[no-any-return]


def _generated() -> Iterator[Case]:
    sigstore = TestSigstore.create(name="differential")
    root = TrustRoot.from_json(sigstore.trusted_root_json(), name="differential")
    stranger = TestSigstore.create(name="stranger")
    policy = IdentityPolicy(issuer=GITHUB_ACTIONS_ISSUER, identity=IDENTITY)
    statement = in_toto_statement("app.tgz", hashlib.sha256(ARTIFACT).hexdigest(), "https://slsa.dev/provenance/v1",
                                  {"buildType": "test"})
    logs = {"full": LogOptions(), "no-proof": LogOptions(with_inclusion_proof=False),
            "no-checkpoint": LogOptions(with_checkpoint=False), "no-set": LogOptions(with_inclusion_promise=False)}
    damage: dict[str, Callable[[dict[str, Any]], None]] = {
        "intact": lambda d: None,
        "bad-set": lambda d: _entry(d).get("inclusionPromise") and _entry(d)["inclusionPromise"].update(
            signedEntryTimestamp=_flip(_entry(d)["inclusionPromise"]["signedEntryTimestamp"])),
        "bad-proof": lambda d: _entry(d).get("inclusionProof") and _entry(d)["inclusionProof"].update(
            rootHash=_flip(_entry(d)["inclusionProof"]["rootHash"])),
        "bad-body": lambda d: _entry(d).update(canonicalizedBody=_flip(_entry(d)["canonicalizedBody"])),
        "no-entry": lambda d: d["verificationMaterial"].update(tlogEntries=[]),
        "two-entries": lambda d: d["verificationMaterial"]["tlogEntries"].append(_entry(d)),
    }
    for version in ("0.1", "0.2", "0.3"):
        for log_name, log in logs.items():
            bundles = {
                "message": sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER,
                                                     version=version, log=log),
                "dsse": sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER,
                                                  version=version, log=log),
            }
            for content, raw in bundles.items():
                for damage_name, change in damage.items():
                    name = f"v{version}-{content}-{log_name}-{damage_name}"
                    yield Case(name, _edit(raw, change), ARTIFACT, root, policy)
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
            yield Case(f"v{version}-key-{log_name}", sigstore.sign_blob_bundle_with_key(
                ARTIFACT, key, version=version, log=log), ARTIFACT, root, None, (pem,))
    # who signed, what, and when
    yield Case("wrong-identity", sigstore.sign_blob_bundle(ARTIFACT, identity="https://evil.example/x",
                                                           issuer=GITHUB_ACTIONS_ISSUER), ARTIFACT, root, policy)
    yield Case("wrong-artifact", sigstore.sign_blob_bundle(b"other", identity=IDENTITY,
                                                           issuer=GITHUB_ACTIONS_ISSUER), ARTIFACT, root, policy)
    yield Case("another-instance", stranger.sign_blob_bundle(ARTIFACT, identity=IDENTITY,
                                                             issuer=GITHUB_ACTIONS_ISSUER), ARTIFACT, root, policy)
    yield Case("no-sct", sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER,
                                                   leaf=LeafOptions(with_sct=False)), ARTIFACT, root, policy)
    # signed timestamps
    tsa = TimestampAuthority(name="differential-tsa")
    now = datetime.now(UTC).replace(microsecond=0)
    with_tsa = TrustRoot.from_json(with_timestamp_authority(sigstore.trusted_root(), tsa), name="with-tsa")
    ends_now = TrustRoot.from_json(with_timestamp_authority(sigstore.trusted_root(), tsa, valid_until=now),
                                   name="tsa-ends-now")
    tsa_only = TrustRoot.from_json(with_timestamp_authority(sigstore.trusted_root(), tsa, transparency_log=False),
                                   name="tsa-only")
    for log_name, log in logs.items():
        for version in ("0.1", "0.3"):
            raw = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER,
                                            version=version, now=now, log=log)
            for when_name, when in (("in-time", now), ("late", now + timedelta(hours=1))):
                yield Case(f"tsa-v{version}-{log_name}-{when_name}", with_timestamps(raw, tsa, gen_time=when),
                           ARTIFACT, with_tsa, policy)
            yield Case(f"tsa-v{version}-{log_name}-at-end", with_timestamps(raw, tsa, gen_time=now), ARTIFACT,
                       ends_now, policy)
            yield Case(f"tsa-v{version}-{log_name}-untrusted-tsa", with_timestamps(raw, tsa, gen_time=now),
                       ARTIFACT, root, policy)
    v2 = LogOptions(rekor_v2=True, cosignatures=1)
    for content, raw in (
        ("message", sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER, now=now,
                                              log=v2)),
        ("dsse", sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER, now=now,
                                           log=v2)),
        ("dsse-entry", sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER,
                                                 now=now, log=LogOptions(rekor_v2=True, dsse_v2_entry=True))),
    ):
        yield Case(f"rekor-v2-{content}-no-timestamp", raw, ARTIFACT, with_tsa, policy)
        for damage_name, change in damage.items():
            yield Case(f"rekor-v2-{content}-{damage_name}", _edit(with_timestamps(raw, tsa, gen_time=now), change),
                       ARTIFACT, with_tsa, policy)
    unlogged = sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER, now=now)
    yield Case("tsa-only-domain", with_timestamps(unlogged, tsa, gen_time=now, without_log=True), ARTIFACT, tsa_only,
               policy)
    yield Case("digest-given", sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER),
               Digest.of(ARTIFACT), root, policy)


def _real() -> Iterator[Case]:
    try:
        folder = real_fixtures_dir()
    except pytest.skip.Exception:
        return
    for case_file in sorted(folder.glob("*/case.json")):
        case = json.loads(case_file.read_text())
        if case.get("format") == "cosign-legacy":
            continue  # not a bundle: sigstore-python does not read these
        here = case_file.parent
        which = case["trusted_root"]
        root = (TrustRoot.production() if which == "embedded:production" else
                TrustRoot.staging() if which == "embedded:staging" else
                TrustRoot.from_json((here / which).read_bytes(), name=here.name))
        artifact: bytes | Digest = ((here / "artifact").read_bytes() if (here / "artifact").is_file()
                                    else Digest.parse(f"sha256:{case['digest_sha256']}"))
        identity = IdentityPolicy(issuer=case["issuer"], identity=case["identity"]) if case.get("identity") else None
        if identity is None or str(case.get("policy", "")).startswith("github-repo:"):
            continue  # needs a policy sigstore-python's Identity cannot state
        raws = ([line.encode() for line in (here / "bundle.jsonl").read_text().splitlines() if line.strip()]
                if case.get("jsonl") else [(here / "bundle.json").read_bytes()])
        key = (here / case["key"]).read_bytes() if case.get("key") else None
        for i, raw in enumerate(raws):
            yield Case(f"real-{here.name}-{i}", raw, artifact, root, identity, (key,) if key else ())


def test_our_verifier_agrees_with_sigstore_python_except_for_named_leniencies() -> None:
    cases = [*_generated(), *_real()]
    disagreements, leniencies_seen = [], set()
    for case in cases:
        ours = verify_bundle(case.raw, artifact=case.artifact, trust_root=case.root, identity=case.identity,
                             public_keys=case.public_keys).result
        accepted, why = reference_accepts(case)
        leniencies_seen.update(ours.leniencies)
        if ours.is_verified and not accepted and not ours.leniencies:
            disagreements.append(f"{case.name}: we verify, sigstore-python rejects ({why}), and no leniency is named")
        elif ours.is_verified and accepted and ours.leniencies:
            disagreements.append(f"{case.name}: leniencies {list(ours.leniencies)} claimed, but sigstore-python "
                                 "verifies it as well")
        elif not ours.is_verified and accepted:
            disagreements.append(f"{case.name}: sigstore-python verifies it, we do not: {ours.reason}")
    assert disagreements == []
    assert len(cases) > 150
    # the named exceptions these cases exercise (the rest are exercised by their own tests)
    assert {Leniency.KEY_BASED, Leniency.INCLUSION_PROMISE, Leniency.TSA_END_INCLUSIVE,
            Leniency.TSA_ONLY, Leniency.DSSE_V2_ENTRY} <= leniencies_seen


def test_the_reference_is_itself_exercised_both_ways() -> None:
    verdicts = {case.name: reference_accepts(case)[0] for case in _generated()}
    assert verdicts["v0.3-message-full-intact"] and verdicts["v0.3-dsse-full-intact"]
    assert not verdicts["v0.3-message-no-proof-intact"] and not verdicts["wrong-identity"]
    assert not verdicts["v0.3-dsse-full-bad-proof"]


def test_real_bundles_are_in_the_differential_run() -> None:
    names = [case.name for case in _real()]
    assert names, "no real bundle cases (the fixtures are missing)"
