"""``manage.py verify-image``: discover, verify, store and report one image, against a real registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from provenance.artifacts.models import Artifact
from provenance.core.testsigstore import TestSigstore, in_toto_statement
from provenance.core.types import Digest, MediaType
from provenance.sources.models import Source
from tests.interop.fake_rekor import FakeRekor
from tests.interop.test_cosign_interop import SLSA_PREDICATE, push_cosign_layer
from tests.plugins.registry import (
    CosignCli,
    RegistryServer,
    make_image,
    make_index,
    push_image,
    unique_repository,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
SLSA_V1 = "https://slsa.dev/provenance/v1"
REPORT_KEYS = {"reference", "digest", "verified", "signatures", "attestations", "platforms"}
SIGNATURE_KEYS = {"format", "digest", "level", "verified", "identity", "issuer", "key", "tlog", "reasons"}
ATTESTATION_KEYS = {"predicate_type", "format", "digest", "verified", "reasons"}
REASON_KEYS = {"stage", "code", "message", "hint"}


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore.create(name="verify-image")


@pytest.fixture
def root_file(sigstore: TestSigstore, tmp_path: Path) -> Path:
    path = tmp_path / "trusted_root.json"
    path.write_bytes(sigstore.trusted_root_json())
    return path


def run(*args: str) -> tuple[str, str]:
    """Run verify-image in-process; return stdout and the CommandError text ("" when it exited 0)."""
    out = StringIO()
    try:
        call_command("verify-image", *args, stdout=out)
    except CommandError as err:
        return out.getvalue(), str(err)
    return out.getvalue(), ""


def keyless(root_file: Path, identity: str = IDENTITY) -> list[str]:
    return ["--certificate-identity", identity, "--certificate-oidc-issuer", ISSUER, "--trusted-root",
            str(root_file), "--insecure-registry"]


@pytest.fixture
def signed_index(registry: RegistryServer, sigstore: TestSigstore) -> Iterator[tuple[str, Digest, list[Digest]]]:
    """A two-platform index: the index and amd64 signed keylessly, arm64 unsigned; an attestation on the index."""
    repo = unique_repository("verify")
    amd64, arm64 = make_image(), make_image()
    with registry.client() as client:
        push_image(client, repo, amd64)
        push_image(client, repo, arm64)
        index = client.push_manifest(repo, "v1", make_index((amd64, "linux/amd64"), (arm64, "linux/arm64")),
                                     MediaType.OCI_INDEX)
        image = f"{registry.host}/{repo}"
        for digest in (index, amd64.digest):
            layer = sigstore.cosign_signature_layer(str(digest), image, identity=IDENTITY, issuer=ISSUER)
            push_cosign_layer(client, repo, digest, ".sig", layer)
        statement = in_toto_statement(image, index.hex, SLSA_V1, SLSA_PREDICATE)
        push_cosign_layer(client, repo, index, ".att",
                          sigstore.cosign_attestation_layer(statement, identity=IDENTITY, issuer=ISSUER))
    yield f"{image}:v1", index, [amd64.digest, arm64.digest]


def test_json_report_of_a_signed_multi_arch_image(signed_index: tuple[str, Digest, list[Digest]],
                                                  root_file: Path) -> None:
    reference, index, (amd64, _arm64) = signed_index

    out, error = run(reference, *keyless(root_file), "--json")
    report: dict[str, Any] = json.loads(out)

    assert error == ""
    assert set(report) == REPORT_KEYS
    assert (report["reference"], report["digest"], report["verified"]) == (reference, str(index), True)
    assert sorted((s["level"], s["digest"], s["verified"]) for s in report["signatures"]) == sorted([
        ("index", str(index), True), ("platform", str(amd64), True)])
    for signature in report["signatures"]:
        assert set(signature) == SIGNATURE_KEYS
        assert (signature["identity"], signature["issuer"], signature["tlog"]) == (IDENTITY, ISSUER,
                                                                                   "inclusion_promise")
        assert signature["format"] == "cosign-sig" and signature["reasons"] == []
    [attestation] = report["attestations"]
    assert set(attestation) == ATTESTATION_KEYS
    assert (attestation["predicate_type"], attestation["verified"], attestation["digest"]) == (SLSA_V1, True,
                                                                                             str(index))
    platforms = {p["platform"]: p for p in report["platforms"]}
    assert platforms["linux/amd64"] == {"digest": str(amd64), "platform": "linux/amd64", "verified": True}
    assert platforms["linux/arm64"]["verified"] is False


def test_results_are_stored_against_a_cli_source(signed_index: tuple[str, Digest, list[Digest]],
                                                 root_file: Path) -> None:
    reference, index, _ = signed_index

    run(reference, *keyless(root_file))
    run(reference, *keyless(root_file))  # twice: still one row per artifact

    source = Source.objects.get(name=f"cli:{reference}")
    assert source.expected_identity == IDENTITY and source.trust_root.name.startswith("cli-")
    artifact = Artifact.objects.get(source=source, digest=str(index))
    assert artifact.status == "verified"
    assert artifact.children.count() == 2
    assert artifact.evidence.count() == 2  # the index's signature and attestation


def test_wrong_identity_fails_with_reasons(signed_index: tuple[str, Digest, list[Digest]], root_file: Path) -> None:
    reference, _, _ = signed_index

    out, error = run(reference, *keyless(root_file, identity="https://github.com/evil/x"), "--json")
    report = json.loads(out)

    assert "not verified" in error
    assert report["verified"] is False
    reasons = report["signatures"][0]["reasons"]
    assert reasons and set(reasons[0]) == REASON_KEYS
    assert reasons[0]["code"] == "identity_mismatch" and "https://github.com/evil/x" in reasons[0]["message"]


def test_regexp_identity_and_text_report(signed_index: tuple[str, Digest, list[Digest]], root_file: Path) -> None:
    reference, index, _ = signed_index

    out, error = run(reference, "--certificate-identity-regexp", r"https://github\.com/acme/.*",
                     "--certificate-oidc-issuer", ISSUER, "--trusted-root", str(root_file), "--insecure-registry")

    assert error == ""
    assert "verdict: VERIFIED" in out and str(index) in out
    assert "platform linux/arm64" in out


def test_unsigned_image_is_not_verified(registry: RegistryServer, root_file: Path) -> None:
    repo = unique_repository("verify")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")

    out, error = run(f"{registry.host}/{repo}:v1", *keyless(root_file), "--json")

    assert json.loads(out) == {"reference": f"{registry.host}/{repo}:v1", "digest": str(digest), "verified": False,
                               "signatures": [], "attestations": [], "platforms": []}
    assert "no_signature" in error


def test_usage_errors_are_clear(registry: RegistryServer, root_file: Path, tmp_path: Path) -> None:
    _, bad_ref = run("not a reference!", *keyless(root_file))
    _, missing = run(f"{registry.host}/{unique_repository()}:v1", *keyless(root_file))
    _, half_policy = run(f"{registry.host}/x:v1", "--certificate-identity", IDENTITY)
    (tmp_path / "bad.pub").write_text("not a key")
    _, bad_key = run(f"{registry.host}/x:v1", "--key", str(tmp_path / "bad.pub"), "--insecure-registry")
    (tmp_path / "bad_root.json").write_text("{}")
    _, bad_root = run(f"{registry.host}/x:v1", "--trusted-root", str(tmp_path / "bad_root.json"))

    assert bad_ref.startswith("bad_reference")
    assert missing.startswith("not_found")
    assert "--certificate-oidc-issuer" in half_policy
    assert bad_key.startswith("public_key_invalid")
    assert bad_root.startswith("trust_root_malformed")


def test_new_bundle_format_attestation_from_real_cosign(registry: RegistryServer, cosign_cli: CosignCli,
                                                        sigstore: TestSigstore, root_file: Path,
                                                        tmp_path: Path) -> None:
    rekor = FakeRekor(sigstore)
    try:
        repo = unique_repository("verify")
        with registry.client() as client:
            digest = push_image(client, repo, make_image(), "v1")
        reference = f"{registry.host}/{repo}@{digest}"
        (tmp_path / "rekor.pub").write_bytes(sigstore.rekor_public_key_pem)
        env = {"SIGSTORE_REKOR_PUBLIC_KEY": str(tmp_path / "rekor.pub")}
        flags = ["--key", str(cosign_cli.home / "cosign.key"), "--rekor-url", rekor.url, "--allow-insecure-registry",
                 "--yes"]
        cosign_cli.run("sign", *flags, reference, env=env)
        (tmp_path / "predicate.json").write_text(json.dumps(SLSA_PREDICATE))
        cosign_cli.run("attest", *flags, "--new-bundle-format", "--predicate", str(tmp_path / "predicate.json"),
                       "--type", "slsaprovenance1", reference, env=env)
        (tmp_path / "cosign.pub").write_bytes(cosign_cli.public_key)
    finally:
        rekor.close()

    out, error = run(reference, "--key", str(tmp_path / "cosign.pub"), "--trusted-root", str(root_file),
                     "--insecure-registry", "--json")
    report = json.loads(out)

    assert error == "" and report["verified"] is True
    bundles = [a for a in report["attestations"] if a["format"] == "sigstore-bundle"]
    assert [b["verified"] for b in bundles] == [True], bundles
    assert bundles[0]["predicate_type"] == SLSA_V1


def test_exit_status_from_the_command_line(signed_index: tuple[str, Digest, list[Digest]], root_file: Path,
                                           tmp_path: Path) -> None:
    reference, _, _ = signed_index
    # A user's shell: the embedded SQLite in a fresh data dir, not the suite's test database.
    inherited = {k: v for k, v in os.environ.items()
                 if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "PROVENANCE_DB_NAME"}}
    env = {**inherited, "PROVENANCE_DEBUG": "1", "PROVENANCE_DATA_DIR": str(tmp_path)}
    manage = Path(__file__).resolve().parents[2] / "manage.py"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        subprocess.run([sys.executable, str(manage), "migrate", "-v", "0"], env=env, check=True, timeout=120)
        return subprocess.run([sys.executable, str(manage), "verify-image", reference, *args], env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    good = cli(*keyless(root_file), "--json")
    bad = cli(*keyless(root_file, identity="https://github.com/evil/x"))

    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["verified"] is True
    assert bad.returncode == 1 and "identity" in bad.stdout + bad.stderr
