"""``manage.py conformance verify-bundle``: the sigstore-conformance client protocol, exactly, offline."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management import CommandError, call_command

from provenance.core.testsigstore import TestSigstore, in_toto_statement
from tests.support import real_fixtures_dir

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
ARTIFACT = b"conformance artifact\n"
MANAGE = Path(__file__).resolve().parents[2] / "manage.py"


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore.create(name="conformance-tests")


@pytest.fixture
def files(sigstore: TestSigstore, tmp_path: Path) -> Path:
    (tmp_path / "trusted_root.json").write_bytes(sigstore.trusted_root_json())
    (tmp_path / "a.txt").write_bytes(ARTIFACT)
    (tmp_path / "blob.sigstore.json").write_bytes(sigstore.sign_blob_bundle(ARTIFACT, identity=IDENTITY, issuer=ISSUER))
    statement = in_toto_statement("a.txt", hashlib.sha256(ARTIFACT).hexdigest(), "https://slsa.dev/provenance/v1", {})
    (tmp_path / "dsse.sigstore.json").write_bytes(sigstore.sign_dsse_bundle(statement, identity=IDENTITY,
                                                                            issuer=ISSUER))
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "key.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "keyed.sigstore.json").write_bytes(sigstore.sign_blob_bundle_with_key(ARTIFACT, key))
    return tmp_path


def verify_bundle(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("conformance", "verify-bundle", *args, stdout=out)
    return out.getvalue()


def keyless(files: Path, bundle: str, artifact: str, identity: str = IDENTITY) -> list[str]:
    return ["--bundle", str(files / bundle), "--certificate-identity", identity, "--certificate-oidc-issuer", ISSUER,
            "--trusted-root", str(files / "trusted_root.json"), artifact]


def test_verifies_a_file_or_a_digest(files: Path) -> None:
    digest = f"sha256:{hashlib.sha256(ARTIFACT).hexdigest()}"

    assert "OK" in verify_bundle(*keyless(files, "blob.sigstore.json", str(files / "a.txt")))
    assert "OK" in verify_bundle(*keyless(files, "blob.sigstore.json", digest))
    assert "OK" in verify_bundle(*keyless(files, "dsse.sigstore.json", str(files / "a.txt")))
    assert "OK" in verify_bundle(*keyless(files, "dsse.sigstore.json", digest))  # a subject of the statement


def test_key_form(files: Path) -> None:
    args = ["--bundle", str(files / "keyed.sigstore.json"), "--key", str(files / "key.pub"),
            "--trusted-root", str(files / "trusted_root.json"), str(files / "a.txt")]
    assert "OK" in verify_bundle(*args)


def test_a_path_that_looks_like_a_digest_is_a_file(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(files)
    name = f"sha256:{'0' * 64}"
    (files / name).write_bytes(ARTIFACT)  # a file on disk wins over the digest reading
    assert "OK" in verify_bundle(*keyless(files, "blob.sigstore.json", name))


def test_malformed_digest_is_read_as_a_path(files: Path) -> None:
    with pytest.raises(CommandError, match="unreadable_file"):
        verify_bundle(*keyless(files, "blob.sigstore.json", "sha256:not-hex"))


def test_failure_names_stage_code_and_reason(files: Path) -> None:
    with pytest.raises(CommandError, match=r"untrusted: \[identity/identity_mismatch\] expected the identity "):
        verify_bundle(*keyless(files, "blob.sigstore.json", str(files / "a.txt"), identity="https://evil.test/x"))
    with pytest.raises(CommandError, match=r"invalid: \[subject/artifact_mismatch\]"):
        verify_bundle(*keyless(files, "blob.sigstore.json", f"sha256:{'0' * 64}"))
    with pytest.raises(CommandError, match="--certificate-identity and --certificate-oidc-issuer, or --key"):
        verify_bundle("--bundle", str(files / "blob.sigstore.json"), str(files / "a.txt"))


def test_malformed_trusted_root_is_a_clear_error(files: Path) -> None:
    (files / "bad_root.json").write_text(json.dumps({"mediaType": "nope"}))
    args = keyless(files, "blob.sigstore.json", str(files / "a.txt"))
    args[args.index("--trusted-root") + 1] = str(files / "bad_root.json")
    with pytest.raises(CommandError, match="trust_root_malformed"):
        verify_bundle(*args)


def test_shipped_roots_production_and_staging() -> None:
    real = real_fixtures_dir()
    prod = real / "sigstore-python__bundle_v3_github_whl"
    prod_case = json.loads((prod / "case.json").read_text())
    staging = real / "sigstore-python__staging_bundle_txt_v0.1"
    staging_case = json.loads((staging / "case.json").read_text())

    def args(folder: Path, case: dict[str, str]) -> list[str]:
        return ["--bundle", str(folder / "bundle.json"), "--certificate-identity", case["identity"],
                "--certificate-oidc-issuer", case["issuer"], str(folder / "artifact")]

    assert "OK" in verify_bundle(*args(prod, prod_case))
    assert "OK" in verify_bundle("--staging", *args(staging, staging_case))
    with pytest.raises(CommandError, match="chain_untrusted"):
        verify_bundle(*args(staging, staging_case))  # a staging signature under the production root


def test_exit_status_and_stderr_from_the_command_line(files: Path) -> None:
    env = {**os.environ, "PROVENANCE_DEBUG": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(MANAGE), "conformance", "verify-bundle", *args],
                              capture_output=True, text=True, env=env, timeout=60, check=False)

    good = run(*keyless(files, "blob.sigstore.json", str(files / "a.txt")))
    bad = run(*keyless(files, "blob.sigstore.json", str(files / "a.txt"), identity="https://evil.test/x"))

    assert good.returncode == 0, good.stderr
    assert bad.returncode == 1
    assert "identity_mismatch" in bad.stderr and "Traceback" not in bad.stderr
