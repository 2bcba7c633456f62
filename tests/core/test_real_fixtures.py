"""Every real third-party case in ../shared/fixtures/real gets the verdict its case.json expects.

These are signatures from real signing infrastructure, never re-signed; several are exactly what ``sigstore``
alone rejects (intoto/0.0.2 entries, proofs without checkpoints, SET-only legacy data, OtherName SANs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from provenance.core.claims import WorkflowClaims
from provenance.core.errors import MalformedEvidenceError
from provenance.core.trustroot import TrustRoot
from provenance.core.types import Digest, IdentityPolicy, Outcome, VerificationResult
from provenance.core.verify import verify_bundle
from provenance.core.verify.cosign import layers_from_download, verify_signature_layer
from tests.support import real_fixtures_dir

# For the cases that must fail: the reason (first failure's code) a correct verifier gives.
EXPECTED_REASON = {
    "cosign-legacy__dangerzone_invalid_220b5220": "download_malformed",
    "cosign-legacy__dangerzone_tampered_19e8eacd": "signature_invalid",
    "cosign-legacy__dangerzone_tampered_220b5220": "signature_invalid",
    "gh__github_trust_domain_no_tlog": "chain_untrusted",
    "gh__invalid_signature": "signature_invalid",
    "sigstore-python__bundle_v3_no_signed_time": "no_signed_time",
    "sigstore-python__staging_cve_2022_36056": "tlog_body_mismatch",
}
# What the transparency-log evidence of each verified case amounts to.
EXPECTED_TLOG = {
    "sigstore-python__cpython_3.12.5": "inclusion_promise",  # v0.1 proof without checkpoint: the SET only
}


def _cases() -> list[str]:
    # Collected at import: no folder means no parameters, and the sentinel test below skips (or fails on CI).
    for candidate in (os.environ.get("PROVENANCE_REAL_FIXTURES", ""),
                      str(Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real")):
        if candidate and (Path(candidate) / "MANIFEST.md").is_file():
            return sorted(p.parent.name for p in Path(candidate).glob("*/case.json"))
    return []


def test_real_fixtures_are_present_and_all_covered() -> None:
    folder = real_fixtures_dir()  # skips locally (fails on CI) when absent
    names = sorted(p.parent.name for p in folder.glob("*/case.json"))
    assert names, f"no cases in {folder}"
    if _cases():
        assert names == _cases()
    assert set(EXPECTED_REASON) <= set(names)


def _trust_root(folder: Path, case: dict[str, Any]) -> TrustRoot:
    which = case["trusted_root"]
    if which == "embedded:production":
        return TrustRoot.production()
    if which == "embedded:staging":
        return TrustRoot.staging()
    return TrustRoot.from_json((folder / which).read_bytes(), name=folder.name)


def _claims(case: dict[str, Any]) -> WorkflowClaims | None:
    policy = str(case.get("policy", ""))
    if policy.startswith("github-repo:"):
        return WorkflowClaims(repository=policy.removeprefix("github-repo:"))
    return None


def _verify_case(folder: Path, case: dict[str, Any]) -> list[VerificationResult]:
    key = (folder / case["key"]).read_bytes() if case.get("key") else None
    trust_root = _trust_root(folder, case)
    if case.get("format") == "cosign-legacy":
        layers = layers_from_download((folder / "cosign_download_signature.json").read_bytes())
        digest = Digest.parse(case["image_digest"])
        return [verify_signature_layer(layer, image_digest=digest, trust_root=trust_root, public_key=key)
                for layer in layers]
    artifact: bytes | Digest = (
        (folder / "artifact").read_bytes()
        if (folder / "artifact").is_file()
        else Digest.parse(f"sha256:{case['digest_sha256']}")
    )
    if case.get("jsonl"):
        raws = [line.encode() for line in (folder / "bundle.jsonl").read_text().splitlines() if line.strip()]
    else:
        raws = [(folder / "bundle.json").read_bytes()]
    identity = IdentityPolicy(issuer=case["issuer"], identity=case["identity"]) if case.get("identity") else None
    return [
        verify_bundle(raw, artifact=artifact, trust_root=trust_root, identity=identity, claims=_claims(case),
                      public_keys=(key,) if key else ()).result
        for raw in raws
    ]


@pytest.mark.parametrize("name", _cases())
def test_real_case_gets_its_expected_verdict(name: str) -> None:
    folder = real_fixtures_dir() / name
    case = json.loads((folder / "case.json").read_text())
    assert case["expected"] in {"verify", "fail"}

    try:
        results = _verify_case(folder, case)
    except MalformedEvidenceError as err:
        # The evidence itself cannot be read (a verdict too: never "verified").
        assert case["expected"] == "fail", err
        assert err.code == EXPECTED_REASON[name]
        return

    assert results
    for result in results:
        if case["expected"] == "verify":
            assert result.outcome is Outcome.VERIFIED, [c.as_dict() for c in result.failures]
            assert result.tlog == EXPECTED_TLOG.get(name, "inclusion_proof" if "cosign-legacy" not in name
                                                    else "inclusion_promise")
            if case.get("identity"):
                assert result.identity == case["identity"]
                assert result.issuer == case["issuer"]
        else:
            assert result.outcome is not Outcome.VERIFIED
            assert result.failures[0].code == EXPECTED_REASON[name], [c.as_dict() for c in result.failures]
            failure = result.failures[0]
            assert failure.message and failure.hint  # a reason a developer can act on


def test_real_keyless_bundle_fails_with_another_identity_and_says_which() -> None:
    folder = real_fixtures_dir() / "gh__sigstore_js_2.1.0_npm_provenance"
    case = json.loads((folder / "case.json").read_text())
    result = verify_bundle(
        (folder / "bundle.json").read_bytes(),
        artifact=(folder / "artifact").read_bytes(),
        trust_root=TrustRoot.production(),
        identity=IdentityPolicy(issuer=case["issuer"], identity="https://github.com/evil/fork/.github/workflows/x.yml@refs/heads/main"),
    ).result

    assert result.outcome is Outcome.UNTRUSTED
    assert [c.code for c in result.failures] == ["identity_mismatch"]
    assert case["identity"] in result.reason and "evil/fork" in result.reason


def test_real_github_claims_are_read_from_the_certificate() -> None:
    folder = real_fixtures_dir() / "sigstore-python__bundle_v3_github_whl"
    case = json.loads((folder / "case.json").read_text())

    def verify(claims: WorkflowClaims) -> VerificationResult:
        return verify_bundle(
            (folder / "bundle.json").read_bytes(),
            artifact=(folder / "artifact").read_bytes(),
            trust_root=TrustRoot.production(),
            identity=IdentityPolicy(issuer=case["issuer"], identity=case["identity"]),
            claims=claims,
        ).result

    good = verify(WorkflowClaims(repository="trailofbits/rfc8785.py", ref="refs/tags/v0.1.2"))
    bad = verify(WorkflowClaims(repository="trailofbits/rfc8785.py", trigger="workflow_dispatch"))

    assert good.is_verified and "workflow_claims_ok" in {c.code for c in good.checks}
    assert bad.outcome is Outcome.UNTRUSTED
    assert [c.code for c in bad.failures] == ["workflow_claims_mismatch"]
    assert "workflow_dispatch" in bad.reason


def test_real_othername_identity_matches_by_regexp_too() -> None:
    folder = real_fixtures_dir() / "sigstore-go__othername_private_instance"
    case = json.loads((folder / "case.json").read_text())
    root = TrustRoot.from_json((folder / "trusted_root.json").read_bytes(), name="scaffolding")

    result = verify_bundle(
        (folder / "bundle.json").read_bytes(),
        artifact=Digest.parse(f"sha256:{case['digest_sha256']}"),
        trust_root=root,
        identity=IdentityPolicy(issuer=case["issuer"], identity_regexp=r"foo!oidc\.(local|test)"),
    ).result

    assert result.is_verified, result.failures
    assert result.identity == "foo!oidc.local"


def test_real_staging_bundle_is_untrusted_under_the_production_root() -> None:
    folder = real_fixtures_dir() / "sigstore-python__staging_bundle_txt_v0.1"
    case = json.loads((folder / "case.json").read_text())

    result = verify_bundle(
        (folder / "bundle.json").read_bytes(),
        artifact=(folder / "artifact").read_bytes(),
        trust_root=TrustRoot.production(),
        identity=IdentityPolicy(issuer=case["issuer"], identity=case["identity"]),
    ).result

    assert result.outcome is Outcome.UNTRUSTED
    assert result.failures[0].code == "chain_untrusted"
    assert "staging" in result.failures[0].hint
