"""What cosign 3 writes by default, end to end through a real registry and ``verify-image``: a container signature
as a Sigstore bundle referrer whose DSSE statement has the predicate ``https://sigstore.dev/cosign/sign/v1``,
logged in Rekor v2 and timestamped; beside a legacy ``.sig`` the bundle decides, and both are shown."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from provenance.core.testsigstore import (
    BUNDLE_MEDIA_TYPES,
    GITHUB_ACTIONS_ISSUER,
    LogOptions,
    TestSigstore,
    TimestampAuthority,
    in_toto_statement,
    with_timestamp_authority,
    with_timestamps,
)
from tests.interop.test_cosign_interop import push_cosign_layer
from tests.plugins.registry import RegistryServer, make_image, push_image, push_referrer, unique_repository

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"


def _verify_image(*args: str) -> tuple[dict[str, Any], str]:
    out = StringIO()
    try:
        call_command("verify-image", *args, "--json", stdout=out)
        return json.loads(out.getvalue()), ""
    except CommandError as err:
        return json.loads(out.getvalue()), str(err)


@pytest.mark.parametrize("legacy_too", [False, True], ids=["bundle-only", "bundle-and-legacy"])
def test_cosign_3_bundle_signatures_verify_and_decide(registry: RegistryServer, tmp_path: Path,
                                                      legacy_too: bool) -> None:
    sigstore, tsa = TestSigstore.create(name="cosign-v3"), TimestampAuthority(name="cosign-v3-tsa")
    (tmp_path / "trusted_root.json").write_bytes(with_timestamp_authority(sigstore.trusted_root(), tsa))
    repo, image = unique_repository("cosign3"), make_image()
    now = datetime.now(UTC)

    def sign_bundle(identity: str) -> bytes:
        statement = in_toto_statement(f"{registry.host}/{repo}", image.digest.hex, COSIGN_SIGN, {})
        raw = sigstore.sign_dsse_bundle(statement, identity=identity, issuer=GITHUB_ACTIONS_ISSUER, now=now,
                                        log=LogOptions(rekor_v2=True))
        return with_timestamps(raw, tsa, gen_time=now)

    with registry.client() as client:
        push_image(client, repo, image, "v1")
        media_type = BUNDLE_MEDIA_TYPES["0.3"]
        push_referrer(client, repo, image.digest, subject_size=len(image.manifest), artifact_type=media_type,
                      layers=[(media_type, sign_bundle(IDENTITY), {})],
                      annotations={"dev.sigstore.bundle.predicateType": COSIGN_SIGN})
        if legacy_too:
            push_cosign_layer(client, repo, image.digest, ".sig", sigstore.cosign_signature_layer(
                str(image.digest), f"{registry.host}/{repo}", identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER))
    args = (f"{registry.host}/{repo}:v1", "--certificate-identity", IDENTITY, "--certificate-oidc-issuer",
            GITHUB_ACTIONS_ISSUER, "--trusted-root", str(tmp_path / "trusted_root.json"), "--insecure-registry")

    report, error = _verify_image(*args)

    assert error == "" and report["verified"] is True
    formats = sorted(s["format"] for s in report["signatures"])
    assert formats == (["cosign-sig", "sigstore-bundle"] if legacy_too else ["sigstore-bundle"])
    bundle = next(s for s in report["signatures"] if s["format"] == "sigstore-bundle")
    assert bundle["verified"] and bundle["identity"] == IDENTITY and bundle["tlog"] == "inclusion_proof"
    assert report["attestations"] == []  # the cosign/sign/v1 statement is a signature, not an attestation

    if legacy_too:
        # The bundle is by someone else: the bundles decide (as cosign 3 verifies); the valid legacy .sig is shown
        # as verified but does not rescue the image.
        other, other_image = unique_repository("cosign3"), make_image()
        repo, image = other, other_image
        with registry.client() as client:
            push_image(client, repo, image, "v1")
            push_referrer(client, repo, image.digest, subject_size=len(image.manifest), artifact_type=media_type,
                          layers=[(media_type, sign_bundle("https://github.com/evil/x/.github/workflows/r.yml@x"),
                                   {})])
            push_cosign_layer(client, repo, image.digest, ".sig", sigstore.cosign_signature_layer(
                str(image.digest), f"{registry.host}/{repo}", identity=IDENTITY, issuer=GITHUB_ACTIONS_ISSUER))
        report, error = _verify_image(f"{registry.host}/{repo}:v1", *args[1:])
        assert report["verified"] is False and "identity_mismatch" in error
        verdicts = {s["format"]: s["verified"] for s in report["signatures"]}
        assert verdicts == {"sigstore-bundle": False, "cosign-sig": True}
