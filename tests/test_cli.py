"""The ``provenance`` command: ``verify`` against a real registry with no database and no settings; ``manage`` and
``manage.py`` with one-line messages instead of tracebacks.

Every ``provenance`` run here is the installed console script in a subprocess, in a fresh working directory, with
an environment that has no DATABASE_URL, SECRET_KEY, DJANGO_* or PROVENANCE_* variables.
"""

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

from provenance.core.demo import DEMO_IDENTITY, DEMO_ISSUER, build_demo_fleet
from provenance.core.ocilayout import OciLayout
from provenance.core.report import render_text
from provenance.core.testsigstore import TestSigstore, in_toto_statement
from provenance.core.types import Digest, MediaType
from tests.interop.fake_rekor import FakeRekor
from tests.interop.test_cosign_interop import SLSA_PREDICATE, push_cosign_layer
from tests.plugins.registry import CosignCli, RegistryServer, make_image, make_index, push_image, unique_repository
from tests.support import missing_component

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
SLSA_V1 = "https://slsa.dev/provenance/v1"
# The report's shape is verify-image's (tests/artifacts/test_verify_image.py pins the same keys).
REPORT_KEYS = {"reference", "digest", "verified", "signatures", "attestations", "platforms"}
SIGNATURE_KEYS = {"format", "digest", "level", "verified", "identity", "issuer", "key", "tlog", "reasons"}
ATTESTATION_KEYS = {"predicate_type", "format", "digest", "verified", "reasons"}
REASON_KEYS = {"stage", "code", "message", "hint"}


def clean_environment(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without anything that could point at a database or Django settings."""
    dropped = ("DATABASE_URL", "SECRET_KEY", "DJANGO_", "PROVENANCE_", "CELERY_", "COSIGN_", "SIGSTORE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    return {**env, "HOME": str(home), **extra}


def console_script() -> Path:
    path = Path(sys.executable).parent / "provenance"
    if not path.exists():
        missing_component("the provenance console script is not installed: run python3 scripts/dev.py venv")
    return path


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    """Run ``provenance ARGS`` in a fresh empty directory with a clean environment; returns the completed run."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(console_script()), *args], cwd=workdir, env=clean_environment(tmp_path, **env),
                              capture_output=True, text=True, timeout=120)

    return run


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore.create(name="cli")


@pytest.fixture
def root_file(sigstore: TestSigstore, tmp_path: Path) -> Path:
    path = tmp_path / "trusted_root.json"
    path.write_bytes(sigstore.trusted_root_json())
    return path


def keyless(root_file: Path, identity: str = IDENTITY, insecure: str = "--allow-insecure-registry") -> list[str]:
    return ["--certificate-identity", identity, "--certificate-oidc-issuer", ISSUER, "--trusted-root",
            str(root_file), insecure]


@pytest.fixture
def signed_index(registry: RegistryServer, sigstore: TestSigstore) -> Iterator[tuple[str, Digest, list[Digest]]]:
    """A two-platform index: the index and amd64 signed keylessly, arm64 unsigned; an attestation on the index."""
    repo = unique_repository("cli")
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


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- verify: verified, not verified ------------------------------------------------------------------------------


def test_keyless_signed_index_verifies_with_a_json_report(cli: Any, signed_index: tuple[str, Digest, list[Digest]],
                                                          root_file: Path) -> None:
    reference, index, (amd64, arm64) = signed_index

    done = cli("verify", reference, *keyless(root_file), "--output", "json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == REPORT_KEYS
    assert (report["reference"], report["digest"], report["verified"]) == (reference, str(index), True)
    assert sorted((s["level"], s["digest"], s["verified"]) for s in report["signatures"]) == sorted([
        ("index", str(index), True), ("platform", str(amd64), True)])
    for signature in report["signatures"]:
        assert set(signature) == SIGNATURE_KEYS
        assert (signature["identity"], signature["issuer"], signature["tlog"]) == (IDENTITY, ISSUER,
                                                                                   "inclusion_promise")
        assert signature["reasons"] == []
    [attestation] = report["attestations"]
    assert set(attestation) == ATTESTATION_KEYS
    assert (attestation["predicate_type"], attestation["verified"]) == (SLSA_V1, True)
    assert report["platforms"] == [
        {"digest": str(amd64), "platform": "linux/amd64", "verified": True},
        {"digest": str(arm64), "platform": "linux/arm64", "verified": False},
    ]


def test_wrong_identity_is_not_verified_and_names_the_failing_check(
    cli: Any, signed_index: tuple[str, Digest, list[Digest]], root_file: Path
) -> None:
    reference, _, _ = signed_index

    done = cli("verify", reference, *keyless(root_file, "https://github.com/evil/app/.github/workflows/x.yml@main"),
               "-o", "json")

    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["verified"] is False
    assert report["signatures"] and all(not s["verified"] for s in report["signatures"])
    for signature in report["signatures"]:
        [reason] = signature["reasons"]
        assert set(reason) == REASON_KEYS
        assert (reason["stage"], reason["code"]) == ("identity", "identity_mismatch")
        assert IDENTITY in reason["hint"]
    assert one_line(done.stderr).startswith("provenance: not verified: identity_mismatch: ")


def test_text_report_shows_each_piece_its_verdict_and_the_fix(
    cli: Any, signed_index: tuple[str, Digest, list[Digest]], root_file: Path
) -> None:
    reference, index, _ = signed_index

    good = cli("verify", reference, *keyless(root_file))
    bad = cli("verify", reference, *keyless(root_file, "https://example.test/someone-else"))

    assert good.returncode == 0, good.stderr
    lines = good.stdout.splitlines()
    assert lines[:3] == [reference, f"  digest: {index}", "  verdict: VERIFIED"]
    assert f"  [ok ] signature cosign-sig index {index} {IDENTITY}" in lines
    assert f"  [ok ] attestation cosign-att  {index} {SLSA_V1}" in lines
    assert bad.returncode == 1
    assert "  verdict: NOT VERIFIED" in bad.stdout
    assert "        identity/identity_mismatch: expected the identity https://example.test/someone-else" in bad.stdout
    assert f"          hint: re-sign with the identity https://example.test/someone-else, or change the policy's " \
           f"identity to {IDENTITY}" in bad.stdout


@pytest.fixture(scope="module")
def rekor(sigstore: TestSigstore) -> Iterator[FakeRekor]:
    server = FakeRekor(sigstore)
    yield server
    server.close()


def test_what_real_cosign_signs_with_a_key_verifies_and_another_key_does_not(
    cli: Any, registry: RegistryServer, cosign_cli: CosignCli, rekor: FakeRekor, sigstore: TestSigstore,
    root_file: Path, tmp_path: Path
) -> None:
    repo = unique_repository("cli-cosign")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
    (tmp_path / "rekor.pub").write_bytes(sigstore.rekor_public_key_pem)
    cosign_cli.run("sign", "--key", str(cosign_cli.home / "cosign.key"), "--rekor-url", rekor.url,
                   "--allow-insecure-registry", "--yes", f"{registry.host}/{repo}@{digest}",
                   env={"SIGSTORE_REKOR_PUBLIC_KEY": str(tmp_path / "rekor.pub")})
    (tmp_path / "cosign.pub").write_bytes(cosign_cli.public_key)
    stranger = CosignCli(cosign_cli.binary, tmp_path / "stranger")
    stranger.home.mkdir()
    stranger.run("generate-key-pair")
    image = f"{registry.host}/{repo}:v1"
    trust = ["--trusted-root", str(root_file), "--allow-insecure-registry", "-o", "json"]

    good = cli("verify", image, "--key", str(tmp_path / "cosign.pub"), *trust)
    bad = cli("verify", image, "--key", str(stranger.home / "cosign.pub"), *trust)
    either = cli("verify", image, "--key", str(stranger.home / "cosign.pub"), "--key", str(tmp_path / "cosign.pub"),
                 *trust)

    assert good.returncode == 0, good.stderr
    [signature] = json.loads(good.stdout)["signatures"]
    assert (signature["verified"], signature["digest"], signature["tlog"]) == (True, str(digest), "inclusion_promise")
    assert signature["key"].startswith("sha256:")
    assert bad.returncode == 1
    [signature] = json.loads(bad.stdout)["signatures"]
    assert [r["code"] for r in signature["reasons"]] == ["signature_invalid", "tlog_body_mismatch"]
    assert one_line(bad.stderr).startswith("provenance: not verified: signature_invalid: ")
    assert either.returncode == 0, either.stderr


def test_unlogged_key_signature_needs_the_insecure_flag(
    cli: Any, registry: RegistryServer, cosign_cli: CosignCli, root_file: Path, tmp_path: Path
) -> None:
    repo = unique_repository("cli-unlogged")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
    cosign_cli.sign(f"{registry.host}/{repo}@{digest}")  # --tlog-upload=false
    (tmp_path / "cosign.pub").write_bytes(cosign_cli.public_key)
    args = ("verify", f"{registry.host}/{repo}@{digest}", "--key", str(tmp_path / "cosign.pub"), "--trusted-root",
            str(root_file), "--insecure-registry", "-o", "json")

    strict = cli(*args)
    relaxed = cli(*args, "--insecure-ignore-tlog")

    assert strict.returncode == 1
    assert [r["code"] for r in json.loads(strict.stdout)["signatures"][0]["reasons"]] == ["tlog_missing"]
    assert relaxed.returncode == 0, relaxed.stderr
    assert json.loads(relaxed.stdout)["signatures"][0]["tlog"] == "not_logged"


def test_public_good_root_is_the_default_and_does_not_trust_the_test_sigstore(
    cli: Any, signed_index: tuple[str, Digest, list[Digest]]
) -> None:
    reference, _, _ = signed_index

    done = cli("verify", reference, "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER,
               "--allow-insecure-registry", "-o", "json")

    assert done.returncode == 1
    codes = {r["code"] for s in json.loads(done.stdout)["signatures"] for r in s["reasons"]}
    assert "chain_untrusted" in codes or "certificate_untrusted" in codes, codes


# -- verify: errors are one line, exit status 2 -----------------------------------------------------------------


def test_unreachable_registry_is_one_line_and_exit_status_2(cli: Any, closed_port: str, root_file: Path) -> None:
    done = cli("verify", f"{closed_port}/app:v1", *keyless(root_file), "--timeout", "2")

    assert done.returncode == 2
    assert one_line(done.stderr).startswith("provenance: transient: ")
    assert done.stdout == ""


def test_missing_image_is_exit_status_2(cli: Any, registry: RegistryServer, root_file: Path) -> None:
    done = cli("verify", f"{registry.host}/{unique_repository('cli-none')}:v1", *keyless(root_file))

    assert done.returncode == 2
    assert one_line(done.stderr).startswith("provenance: not_found: ")


@pytest.mark.parametrize(("args", "message"), [
    (["localhost:5000/app:v1"], "say whom to trust: --key PEM"),
    (["localhost:5000/app:v1", "--certificate-identity", IDENTITY], "give --certificate-oidc-issuer together"),
    (["localhost:5000/app:v1", "--key", "/nonexistent/cosign.pub"], "cannot read the key '/nonexistent/cosign.pub'"),
    (["not a reference", "--key", "/dev/null"], "bad_reference: not an image reference"),
    (["localhost:5000/app:v1", "--key", "/dev/null"], "public_key_invalid: not a PEM public key"),
    (["localhost:5000/app:v1", "--key", "/dev/null", "--registry-username", "u"],
     "give a registry user name and password together"),
])
def test_bad_input_is_one_line_and_exit_status_2(cli: Any, args: list[str], message: str) -> None:
    done = cli("verify", *args)

    assert done.returncode == 2
    assert message in one_line(done.stderr)


def test_malformed_trusted_root_is_exit_status_2(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "root.json").write_text('{"mediaType": "nonsense"}')

    done = cli("verify", "localhost:5000/app:v1", "--certificate-identity", IDENTITY, "--certificate-oidc-issuer",
               ISSUER, "--trusted-root", str(tmp_path / "root.json"))

    assert done.returncode == 2
    assert one_line(done.stderr).startswith("provenance: trust_root")


def test_registry_credentials_come_from_the_environment(
    cli: Any, basic_auth_registry: RegistryServer, sigstore: TestSigstore, root_file: Path
) -> None:
    repo = unique_repository("cli-auth")
    with basic_auth_registry.authed_client() as client:
        digest = push_image(client, repo, make_image(), "v1")
        image = f"{basic_auth_registry.host}/{repo}"
        push_cosign_layer(client, repo, digest, ".sig",
                          sigstore.cosign_signature_layer(str(digest), image, identity=IDENTITY, issuer=ISSUER))
    assert basic_auth_registry.username and basic_auth_registry.password

    anonymous = cli("verify", f"{image}:v1", *keyless(root_file))
    authed = cli("verify", f"{image}:v1", *keyless(root_file), "--registry-username", basic_auth_registry.username,
                 PROVENANCE_REGISTRY_PASSWORD=basic_auth_registry.password)

    assert anonymous.returncode == 2
    assert one_line(anonymous.stderr).startswith("provenance: authentication_failed: ")
    assert authed.returncode == 0, authed.stderr
    assert basic_auth_registry.password not in authed.stdout + authed.stderr


def test_registry_behind_a_private_ca(cli: Any, tls_registry: RegistryServer, sigstore: TestSigstore,
                                      root_file: Path, tmp_path: Path) -> None:
    repo = unique_repository("cli-tls")
    with tls_registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
        image = f"{tls_registry.host}/{repo}"
        push_cosign_layer(client, repo, digest, ".sig",
                          sigstore.cosign_signature_layer(str(digest), image, identity=IDENTITY, issuer=ISSUER))
    assert tls_registry.ca_pem
    (tmp_path / "ca.pem").write_text(tls_registry.ca_pem)
    trust = ["--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER, "--trusted-root", str(root_file)]

    untrusted = cli("verify", f"{image}:v1", *trust)
    trusted = cli("verify", f"{image}:v1", *trust, "--registry-cacert", str(tmp_path / "ca.pem"))

    assert untrusted.returncode == 2
    assert one_line(untrusted.stderr).startswith("provenance: tls_verify_failed: ")
    assert trusted.returncode == 0, trusted.stderr


# -- verify needs no database and no settings -------------------------------------------------------------------


def test_verify_never_loads_django_settings(signed_index: tuple[str, Digest, list[Digest]], root_file: Path,
                                            tmp_path: Path) -> None:
    reference, _, _ = signed_index
    code = (
        "import sys\n"
        "from provenance.cli import main\n"
        f"status = main({['verify', reference, *keyless(root_file), '-o', 'json']!r})\n"
        "from django.conf import settings\n"
        "import django.db\n"
        "print('settings-configured', settings.configured, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    done = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=clean_environment(tmp_path),
                          capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verified"] is True
    assert done.stderr.strip().splitlines()[-1] == "settings-configured False"
    assert list(workdir.iterdir()) == []


@pytest.mark.django_db
@pytest.mark.parametrize("identity", [IDENTITY, "https://example.test/nobody"])
def test_report_is_the_same_as_verify_image(cli: Any, signed_index: tuple[str, Digest, list[Digest]],
                                            root_file: Path, identity: str) -> None:
    reference, _, _ = signed_index
    flags = keyless(root_file, identity, insecure="--insecure-registry")
    out = StringIO()
    try:
        call_command("verify-image", reference, *flags, "--json", stdout=out)
        status = 0
    except CommandError as err:
        assert "not verified" in str(err)
        status = 1

    done = cli("verify", reference, *flags, "-o", "json")

    stored = json.loads(out.getvalue())
    assert stored["signatures"] and stored["attestations"] and stored["platforms"]
    assert stored["verified"] is (identity == IDENTITY)
    assert (done.returncode, json.loads(done.stdout)) == (status, stored)


def test_help_needs_nothing(cli: Any) -> None:
    top = cli("--help")
    verify = cli("verify", "--help")

    assert top.returncode == 0 and "verify" in top.stdout and "manage" in top.stdout
    assert verify.returncode == 0
    for flag in ("--key", "--certificate-identity", "--certificate-identity-regexp", "--certificate-oidc-issuer",
                 "--trusted-root", "--insecure-ignore-tlog", "--allow-insecure-registry", "--output"):
        assert flag in verify.stdout


def test_text_report_escapes_control_characters_from_evidence() -> None:
    hostile = "https://example.test/\x1b[2J\x1b]0;owned\x07\nverdict: VERIFIED"
    data = {
        "reference": "r", "digest": "sha256:" + "0" * 64, "verified": False, "platforms": [], "attestations": [],
        "signatures": [{"format": "cosign-sig", "digest": "d", "level": "image", "verified": False,
                        "identity": hostile, "issuer": "", "key": "", "tlog": "",
                        "reasons": [{"stage": "identity", "code": "identity_mismatch", "message": hostile,
                                     "hint": hostile}]}],
    }

    text = render_text(data)

    assert "\x1b" not in text and "\x07" not in text
    assert [line for line in text.splitlines() if line.strip().startswith("verdict:")] == ["  verdict: NOT VERIFIED"]
    assert "\\x1b[2J" in text


# -- manage.py and provenance manage: one-line messages --------------------------------------------------------


def manage(tmp_path: Path, *args: str, program: tuple[str, ...] | None = None, **env: str) -> (
        subprocess.CompletedProcess[str]):
    command = program or (sys.executable, str(ROOT / "manage.py"))
    return subprocess.run([*command, *args], cwd=ROOT, env=clean_environment(tmp_path, **env), capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args", [("ingest", "registry.example/app:v1"), ("setup",)])
def test_unmigrated_database_is_a_clear_message(tmp_path: Path, args: tuple[str, ...]) -> None:
    data_dir = tmp_path / "data"

    done = manage(tmp_path, *args, PROVENANCE_DATA_DIR=str(data_dir), PROVENANCE_DEBUG="1")

    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith("manage.py: the database is not set up (no such table: ")
    assert line.endswith("run `python manage.py migrate` (or `python3 scripts/dev.py run`)")


def test_provenance_manage_says_the_same(tmp_path: Path) -> None:
    done = manage(tmp_path, "manage", "setup", program=(str(console_script()),),
                  PROVENANCE_DATA_DIR=str(tmp_path / "data"), PROVENANCE_DEBUG="1")

    assert done.returncode == 2
    assert "run `provenance manage migrate`" in one_line(done.stderr)


def test_after_migrate_the_same_command_works(tmp_path: Path) -> None:
    env = {"PROVENANCE_DATA_DIR": str(tmp_path / "data"), "PROVENANCE_DEBUG": "1"}

    migrated = manage(tmp_path, "migrate", "--no-input", "--verbosity", "0", **env)
    done = manage(tmp_path, "setup", **env)

    assert migrated.returncode == 0, migrated.stderr
    assert done.returncode == 0, done.stderr


def test_missing_secret_key_names_the_variable(tmp_path: Path) -> None:
    done = manage(tmp_path, "migrate", PROVENANCE_DATA_DIR=str(tmp_path / "data"))

    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith("manage.py: configuration error: SECRET_KEY is required")
    assert "PROVENANCE_DEBUG" in line


@pytest.mark.parametrize("args", [("verify-image", "--help"), ("ingest", "-h"), ("help",), ()])
def test_help_works_without_secret_key(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = manage(tmp_path, *args, PROVENANCE_DATA_DIR=str(tmp_path / "data"))

    assert done.returncode == 0, done.stderr
    if args and args[0] != "help":
        assert done.stdout.startswith(f"usage: manage.py {args[0]}")
    else:
        assert "verify-image" in done.stdout and "ingest" in done.stdout


# -- verify --local-image: an OCI image layout on disk (the demo fleet) -----------------------------------------


@pytest.fixture(scope="module")
def demo_fleet(tmp_path_factory: pytest.TempPathFactory, sigstore: TestSigstore) -> tuple[Path, Path, dict[str, str]]:
    """The demo fleet layout, its trusted root, and ``{tag: expected status}``."""
    base = tmp_path_factory.mktemp("demo")
    images = build_demo_fleet(base / "demo-fleet", sigstore)
    (base / "trusted_root.json").write_bytes(sigstore.trusted_root_json())
    return base / "demo-fleet", base / "trusted_root.json", {i.tag: i.expected_status for i in images}


@pytest.mark.parametrize(("tag", "code"), [
    ("signed", None), ("multiarch", None), ("unsigned", "no_signature"), ("wrong-identity", "identity_mismatch"),
    ("tampered", "signature_invalid"), ("copied-signature", "digest_mismatch"),
])
def test_local_layout_gives_each_demo_image_its_verdict(cli: Any, demo_fleet: tuple[Path, Path, dict[str, str]],
                                                        tag: str, code: str | None) -> None:
    layout, root, expected = demo_fleet

    done = cli("verify", "--local-image", f"{layout}:{tag}", "--trusted-root", str(root), "--certificate-identity",
               DEMO_IDENTITY, "--certificate-oidc-issuer", DEMO_ISSUER, "-o", "json")

    report = json.loads(done.stdout)
    assert report["verified"] is (expected[tag] == "verified")
    if code is None:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 1
        assert one_line(done.stderr).startswith(f"provenance: not verified: {code}: ")


def test_local_layout_by_digest_and_needs_a_tag_when_it_holds_several(
    cli: Any, demo_fleet: tuple[Path, Path, dict[str, str]]
) -> None:
    layout, root, _ = demo_fleet
    digest = OciLayout(layout).resolve("signed").digest
    trust = ["--trusted-root", str(root), "--certificate-identity", DEMO_IDENTITY, "--certificate-oidc-issuer",
             DEMO_ISSUER]

    by_digest = cli("verify", "--local-image", f"{layout}@{digest}", *trust, "-o", "json")
    untagged = cli("verify", "--local-image", str(layout), *trust)
    missing = cli("verify", "--local-image", str(layout.parent / "nothing-here"), *trust)

    assert by_digest.returncode == 0, by_digest.stderr
    assert json.loads(by_digest.stdout)["digest"] == str(digest)
    assert untagged.returncode == 2
    assert "name the image in" in one_line(untagged.stderr) and "signed" in untagged.stderr
    assert missing.returncode == 2
    assert one_line(missing.stderr).startswith("provenance: not_found: no OCI image layout at ")


def test_signatures_in_another_repository_with_cosign_repository(
    cli: Any, registry: RegistryServer, sigstore: TestSigstore, root_file: Path
) -> None:
    repo, signatures = unique_repository("cli-image"), unique_repository("cli-signatures")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
        image = f"{registry.host}/{repo}"
        push_cosign_layer(client, signatures, digest, ".sig",
                          sigstore.cosign_signature_layer(str(digest), image, identity=IDENTITY, issuer=ISSUER))

    beside = cli("verify", f"{image}:v1", *keyless(root_file))
    elsewhere = cli("verify", f"{image}:v1", *keyless(root_file), "-o", "json",
                    COSIGN_REPOSITORY=f"{registry.host}/{signatures}")
    bad_name = cli("verify", f"{image}:v1", *keyless(root_file), COSIGN_REPOSITORY="../escape")

    assert beside.returncode == 1
    assert one_line(beside.stderr).startswith("provenance: not verified: no_signature: ")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert json.loads(elsewhere.stdout)["signatures"][0]["verified"] is True
    assert bad_name.returncode == 2
    assert one_line(bad_name.stderr).startswith("provenance: bad_reference: ")
