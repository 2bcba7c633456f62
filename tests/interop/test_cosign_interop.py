"""Interop both ways with the real cosign binary and a real registry.

* cosign → Provenance: what cosign signs and attests with a key (logged in the test Sigstore's Rekor through a
  small Rekor API in front of it, so nothing leaves the machine) verifies with ``manage.py verify-image``.
* Provenance's test Sigstore → cosign: its keyless image signatures and attestations, pushed to the registry,
  verify with ``cosign verify`` / ``verify-attestation`` given the test trust root's keys and CAs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.core.management import CommandError, call_command

from provenance.core.oci import RegistryClient
from provenance.core.testsigstore import (
    IN_TOTO_STATEMENT_V01,
    TestSigstore,
    in_toto_statement,
)
from provenance.core.types import Digest, MediaType, SignedLayer
from tests.interop.fake_rekor import FakeRekor
from tests.plugins.registry import CosignCli, RegistryServer, make_image, push_image, unique_repository

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
SLSA_V1 = "https://slsa.dev/provenance/v1"
SLSA_PREDICATE = {
    "buildDefinition": {"buildType": "https://example.test/build/v1", "externalParameters": {"ref": "main"}},
    "runDetails": {"builder": {"id": "https://example.test/builder"}},
}


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore.create(name="interop")


@pytest.fixture(scope="module")
def rekor(sigstore: TestSigstore) -> Iterator[FakeRekor]:
    server = FakeRekor(sigstore)
    yield server
    server.close()


@pytest.fixture
def trust_files(sigstore: TestSigstore, tmp_path: Path) -> Path:
    intermediate, root = x509.load_pem_x509_certificates(sigstore.chain_pem)
    for name, content in {
        "trusted_root.json": sigstore.trusted_root_json(),
        "rekor.pub": sigstore.rekor_public_key_pem,
        "ctlog.pub": sigstore.ct_public_key_pem,
        "root.pem": root.public_bytes(serialization.Encoding.PEM),
        "intermediate.pem": intermediate.public_bytes(serialization.Encoding.PEM),
    }.items():
        (tmp_path / name).write_bytes(content)
    return tmp_path


def verify_image(*args: str) -> tuple[dict[str, Any], str]:
    """Run verify-image --json; return the report and, when it exited non-zero, the error."""
    out = StringIO()
    try:
        call_command("verify-image", *args, "--json", stdout=out)
        error = ""
    except CommandError as err:
        error = str(err)
    return json.loads(out.getvalue()), error


def logged(cosign_cli: CosignCli, rekor: FakeRekor, trust_files: Path) -> tuple[list[str], dict[str, str]]:
    flags = ["--key", str(cosign_cli.home / "cosign.key"), "--rekor-url", rekor.url, "--allow-insecure-registry",
             "--yes"]
    return flags, {"SIGSTORE_REKOR_PUBLIC_KEY": str(trust_files / "rekor.pub")}


# -- cosign signs, Provenance verifies ------------------------------------------------------------------------


def test_what_cosign_signs_and_attests_verifies_with_verify_image(
    registry: RegistryServer, cosign_cli: CosignCli, rekor: FakeRekor, trust_files: Path, tmp_path: Path
) -> None:
    repo = unique_repository("interop")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
    reference = f"{registry.host}/{repo}@{digest}"
    flags, env = logged(cosign_cli, rekor, trust_files)
    cosign_cli.run("sign", *flags, reference, env=env)
    predicate = tmp_path / "predicate.json"
    predicate.write_text(json.dumps(SLSA_PREDICATE))
    cosign_cli.run("attest", *flags, "--predicate", str(predicate), "--type", "slsaprovenance1", reference, env=env)
    (tmp_path / "cosign.pub").write_bytes(cosign_cli.public_key)

    report, error = verify_image(f"{registry.host}/{repo}:v1", "--key", str(tmp_path / "cosign.pub"),
                                 "--trusted-root", str(trust_files / "trusted_root.json"), "--insecure-registry")

    assert error == ""
    assert report["verified"] is True and report["digest"] == str(digest)
    [signature] = report["signatures"]
    assert signature["verified"] is True, signature["reasons"]
    assert (signature["format"], signature["level"], signature["digest"]) == ("cosign-sig", "image", str(digest))
    assert signature["tlog"] == "inclusion_promise" and signature["key"].startswith("sha256:")
    [attestation] = report["attestations"]
    assert attestation["verified"] is True, attestation["reasons"]
    assert attestation["predicate_type"] == SLSA_V1
    assert report["platforms"] == []


def test_cosign_signature_fails_with_another_key_and_says_why(
    registry: RegistryServer, cosign_cli: CosignCli, rekor: FakeRekor, trust_files: Path, tmp_path: Path
) -> None:
    repo = unique_repository("interop")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
    flags, env = logged(cosign_cli, rekor, trust_files)
    cosign_cli.run("sign", *flags, f"{registry.host}/{repo}@{digest}", env=env)
    other = tmp_path / "other"
    other.mkdir()
    stranger = CosignCli(cosign_cli.binary, other)
    stranger.run("generate-key-pair")

    report, error = verify_image(f"{registry.host}/{repo}@{digest}", "--key", str(other / "cosign.pub"),
                                 "--trusted-root", str(trust_files / "trusted_root.json"), "--insecure-registry")

    assert "not verified" in error
    assert report["verified"] is False
    codes = [r["code"] for r in report["signatures"][0]["reasons"]]
    assert codes == ["signature_invalid", "tlog_body_mismatch"]


def test_unlogged_cosign_signature_is_not_trusted_by_default(
    registry: RegistryServer, cosign_cli: CosignCli, trust_files: Path, tmp_path: Path
) -> None:
    repo = unique_repository("interop")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
    cosign_cli.sign(f"{registry.host}/{repo}@{digest}")  # --tlog-upload=false
    (tmp_path / "cosign.pub").write_bytes(cosign_cli.public_key)

    report, error = verify_image(f"{registry.host}/{repo}@{digest}", "--key", str(tmp_path / "cosign.pub"),
                                 "--trusted-root", str(trust_files / "trusted_root.json"), "--insecure-registry")

    assert report["verified"] is False and error
    assert [r["code"] for r in report["signatures"][0]["reasons"]] == ["tlog_missing"]


@pytest.mark.parametrize("bundle_format", ["legacy", "new-bundle-format"])
def test_unlogged_key_signatures_verify_only_with_the_insecure_opt_in(
    registry: RegistryServer, cosign_cli: CosignCli, trust_files: Path, tmp_path: Path, bundle_format: str
) -> None:
    # cosign sign/attest --key --tlog-upload=false (air-gapped signers): no log entry at all.
    repo = unique_repository("unlogged")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
    reference = f"{registry.host}/{repo}@{digest}"
    # cosign 2.5 writes the new bundle format (an OCI referrer) for attestations; `sign` has legacy .sig only.
    extra = ["--new-bundle-format"] if bundle_format == "new-bundle-format" else []
    cosign_cli.sign(reference)
    cosign_cli.attest(reference, SLSA_PREDICATE, "slsaprovenance1", *extra)
    (tmp_path / "cosign.pub").write_bytes(cosign_cli.public_key)
    args = (reference, "--key", str(tmp_path / "cosign.pub"), "--trusted-root", str(trust_files / "trusted_root.json"),
            "--insecure-registry")

    strict, strict_error = verify_image(*args)
    relaxed, relaxed_error = verify_image(*args, "--insecure-ignore-tlog")

    assert strict["verified"] is False and strict_error
    assert strict["signatures"] and all(["tlog_missing"] == [r["code"] for r in s["reasons"]]
                                        for s in strict["signatures"]), strict["signatures"]
    assert relaxed_error == "" and relaxed["verified"] is True
    assert relaxed["signatures"] and all(s["verified"] and s["tlog"] == "not_logged" for s in relaxed["signatures"])
    assert relaxed["attestations"] and all(a["verified"] for a in relaxed["attestations"]), relaxed["attestations"]
    assert {s["format"] for s in relaxed["signatures"]} == {"cosign-sig"}
    assert {a["format"] for a in relaxed["attestations"]} == ({"sigstore-bundle"} if extra else {"cosign-att"})
    assert all(not a["verified"] for a in strict["attestations"])


# -- Provenance's test Sigstore signs, cosign verifies ---------------------------------------------------------


def push_cosign_layer(client: RegistryClient, repo: str, digest: Digest, suffix: str, layer: SignedLayer) -> None:
    """Attach a .sig/.att manifest holding one layer, as cosign does."""
    config = b"{}"
    client.push_blob(repo, config)
    client.push_blob(repo, layer.payload)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                   "digest": str(Digest.of(config))},
        "layers": [{"mediaType": layer.media_type, "size": len(layer.payload), "digest": str(layer.digest),
                    "annotations": layer.annotations}],
    }
    client.push_manifest(repo, f"{digest.tag_prefix}{suffix}", json.dumps(manifest).encode(), MediaType.OCI_MANIFEST)


def test_test_sigstore_keyless_image_signatures_verify_with_real_cosign(
    registry: RegistryServer, cosign_cli: CosignCli, sigstore: TestSigstore, trust_files: Path
) -> None:
    repo = unique_repository("interop")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
        image = f"{registry.host}/{repo}"
        signature = sigstore.cosign_signature_layer(str(digest), image, identity=IDENTITY, issuer=ISSUER)
        push_cosign_layer(client, repo, digest, ".sig", signature)
        statement = in_toto_statement(image, digest.hex, SLSA_V1, SLSA_PREDICATE, statement_type=IN_TOTO_STATEMENT_V01)
        push_cosign_layer(client, repo, digest, ".att",
                          sigstore.cosign_attestation_layer(statement, identity=IDENTITY, issuer=ISSUER))
    env = {"SIGSTORE_REKOR_PUBLIC_KEY": str(trust_files / "rekor.pub"),
           "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(trust_files / "ctlog.pub")}
    trust = ["--offline", "--allow-insecure-registry", "--ca-roots", str(trust_files / "root.pem"),
             "--ca-intermediates", str(trust_files / "intermediate.pem"), "--certificate-oidc-issuer", ISSUER]

    verified = cosign_cli.run("verify", *trust, "--certificate-identity", IDENTITY, f"{image}@{digest}", env=env,
                              check=False)
    attested = cosign_cli.run("verify-attestation", *trust, "--certificate-identity", IDENTITY, "--type",
                              "slsaprovenance1", f"{image}@{digest}", env=env, check=False)
    stranger = cosign_cli.run("verify", *trust, "--certificate-identity", "https://github.com/evil/x",
                              f"{image}@{digest}", env=env, check=False)
    ours, error = verify_image(f"{image}@{digest}", "--certificate-identity", IDENTITY, "--certificate-oidc-issuer",
                               ISSUER, "--trusted-root", str(trust_files / "trusted_root.json"),
                               "--insecure-registry")

    assert verified.returncode == 0, verified.stderr
    assert attested.returncode == 0, attested.stderr
    assert stranger.returncode != 0
    assert ours["verified"] is True and error == ""  # and Provenance agrees
    assert [a["verified"] for a in ours["attestations"]] == [True]


def test_test_sigstore_bundles_verify_with_real_cosign_and_the_trusted_root(
    cosign_cli: CosignCli, sigstore: TestSigstore, trust_files: Path
) -> None:
    artifact = trust_files / "artifact.bin"
    artifact.write_bytes(b"bundle interop\n")
    (trust_files / "blob.json").write_bytes(sigstore.sign_blob_bundle(artifact.read_bytes(), identity=IDENTITY,
                                                                      issuer=ISSUER))
    common = ["--new-bundle-format", "--trusted-root", str(trust_files / "trusted_root.json"),
              "--certificate-oidc-issuer", ISSUER, "--certificate-identity", IDENTITY]

    done = cosign_cli.run("verify-blob", *common, "--bundle", str(trust_files / "blob.json"), str(artifact),
                          check=False)

    assert done.returncode == 0, done.stderr
