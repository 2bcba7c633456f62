"""Exports, the report, evidence packs and VSAs over a fleet signed by the test Sigstore (real verification),
checked on their content; the pack's items re-verify offline with real cosign and sigstore, and a VSA pushed to
a real registry verifies with ``cosign verify-attestation --key``."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import jsonschema
import pytest
from django.test import Client
from pypdf import PdfReader

from provenance.artifacts.models import Artifact, Evidence
from provenance.compliance import services
from provenance.core import vsa
from provenance.core.discovery import FoundEvidence
from provenance.core.testsigstore import GITHUB_ACTIONS_ISSUER, in_toto_statement
from provenance.core.types import Digest, SignedLayer
from provenance.policies import services as policy_services
from provenance.policies.models import Policy
from provenance.sources.models import Source
from tests.plugins.registry import CosignCli, RegistryServer, make_image, push_image, unique_repository
from tests.policies.fleet import APP_WORKFLOW, INTRUDER, SLSA_V1, Fleet, make_fleet
from tests.support import missing_component

pytestmark = pytest.mark.django_db

POLICY = """apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: release-signature
spec:
  images:
    - glob: "{glob}"
  authorities:
    - keyless:
        url: https://fulcio.sigstore.dev
        identities:
          - issuer: https://token.actions.githubusercontent.com
            subject: {identity}
"""


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def fleet() -> Fleet:
    return make_fleet("compliance-fleet")


@pytest.fixture
def images(fleet: Fleet) -> dict[str, Artifact]:
    made = {
        "signed": fleet.image("myorg/app", signers=(APP_WORKFLOW,), build_type="https://actions.github.io/v1",
                              sbom_by=APP_WORKFLOW, tag="v1"),
        "keyed": fleet.image("myorg/keyed", key_signed=True, source_keys=True, tag="v2"),
        "intruder": fleet.image("myorg/app", signers=(INTRUDER,), tag="=cmd|' /C calc'!A0"),
        "unsigned": fleet.image("myorg/other", tag="v3"),
    }
    Artifact.objects.filter(pk=made["intruder"].pk).update(status="failed", status_code="identity_mismatch")
    Artifact.objects.filter(pk=made["unsigned"].pk).update(status="unsigned")
    policy_services.save_policy(POLICY.format(glob="ghcr.io/myorg/**", identity=APP_WORKFLOW))
    policy_services.evaluate_artifacts([a.pk for a in made.values()], cause="policy")
    return {k: Artifact.objects.get(pk=v.pk) for k, v in made.items()}


@pytest.fixture
def viewer() -> Client:
    from tests.factories import user_with_role

    client = Client()
    client.force_login(user_with_role("viewer"))
    return client


def _csv(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content[:500]
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_export_holds_what_the_api_lists_for_the_same_filter(images, viewer) -> None:  # type: ignore[no-untyped-def]
    for query in ("status=verified", "repository=myorg/app", "tag=v2", "policy=trusted", f"signer={APP_WORKFLOW}"):
        listed = viewer.get(f"/api/v1/artifacts/?{query}&limit=1000").json()["results"]
        rows = _csv(viewer.get(f"/compliance/export/?{query}&format=csv"))
        assert sorted(r["digest"] for r in rows) == sorted(a["digest"] for a in listed), query
        assert rows, query


def test_csv_rows_say_what_an_auditor_asks(images, viewer) -> None:  # type: ignore[no-untyped-def]
    rows = {r["digest"]: r for r in _csv(viewer.get("/compliance/export/?format=csv"))}
    signed = rows[images["signed"].digest]
    assert signed["image"] == "ghcr.io/myorg/app" and signed["tags"] == "v1"
    assert (signed["signature_status"], signed["policy_status"]) == ("verified", "trusted")
    assert signed["policies"] == "release-signature v1 (enforce): allowed"
    assert (signed["signer_identity"], signed["signer_issuer"]) == (APP_WORKFLOW, GITHUB_ACTIONS_ISSUER)
    assert signed["builder"] == "https://actions.github.io/v1/github-hosted"
    assert (signed["sbom_present"], signed["sbom_signed"]) == ("yes", "yes")
    assert (signed["trust_root"], signed["trust_root_version"]) == ("provenance-test", "1")
    assert signed["verified_at"].endswith("Z")
    intruder = rows[images["intruder"].digest]
    assert intruder["tags"] == "'=cmd|' /C calc'!A0"  # the tag a registry holds, neutralised
    assert intruder["policy_status"] == "untrusted" and "denied" in intruder["policies"]
    assert rows[images["unsigned"].digest]["sbom_present"] == "no"


def test_a_bad_filter_value_is_a_clear_400(images, viewer) -> None:  # type: ignore[no-untyped-def]
    page = viewer.get("/compliance/export/?status=sort-of&format=csv")
    assert page.status_code == 400 and b"status" in page.content
    api = viewer.get("/api/v1/compliance/export/?checked_since=yesterday&format=csv")
    assert api.status_code == 400 and api.json()["error"] == "export_invalid"


def test_json_export_from_the_api_validates_against_the_served_schema(images, viewer) -> None:  # type: ignore[no-untyped-def]
    schema = viewer.get("/compliance/export/schema.json").json()
    response = viewer.get("/api/v1/compliance/export/?format=json&repository_prefix=myorg/")
    document = json.loads(b"".join(response.streaming_content))
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(document)
    assert len(document["artifacts"]) == 4 and document["scope"] == {"repository_prefix": "myorg/"}
    [signed] = [a for a in document["artifacts"] if a["digest"] == images["signed"].digest]
    assert signed["policy"]["policies"][0]["name"] == "release-signature"
    assert signed["policy"]["policies"][0]["sha256"] == Policy.objects.get().sha256


def test_pdf_export_parses_and_holds_the_rows(images, viewer) -> None:  # type: ignore[no-untyped-def]
    for url in ("/compliance/export/?format=pdf", "/api/v1/compliance/export/?format=pdf"):
        response = viewer.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
        text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages).replace("\n", "")
        for artifact in images.values():
            assert artifact.digest in text, url
        assert "4 of 4 artifacts" in text


def test_the_report_shows_coverage_failing_images_and_who_changed_policies(images, viewer) -> None:  # type: ignore[no-untyped-def]
    page = viewer.get("/compliance/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "2 / 4 (50%)" in html  # signature verified: signed and keyed
    assert images["intruder"].digest[:19] in html and "policy.create" in html

    api = viewer.get(f"/api/v1/compliance/report/?source={images['signed'].source_id}").json()
    assert api["total"] == 4 and api["failing_total"] == 3
    assert [c["action"] for c in api["policy_changes"]] == ["policy.create"]
    assert ("policy.create", "release-signature") in {(a["action"], a["object"]) for a in api["approvals"]}

    pdf = viewer.get("/compliance/?policy=release-signature&format=pdf")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "policy.create" in text and "Failing images" in text and "release-signature" in text


def test_the_report_works_without_a_signing_key_and_says_why_summaries_cannot_be_signed(viewer, settings) -> None:  # type: ignore[no-untyped-def]
    # Production without PROVENANCE_FERNET_KEY: the key that would encrypt the signing key is missing (it was a 500).
    settings.TESTING, settings.DEBUG, settings.DEMO, settings.PROVENANCE_FERNET_KEY = False, False, False, ""
    page = viewer.get("/compliance/")
    assert page.status_code == 200
    assert b'id="signing-key-error"' in page.content and b"PROVENANCE_FERNET_KEY is not set" in page.content
    assert viewer.get("/compliance/signing-key.pub").status_code >= 400


def test_the_report_refuses_a_backwards_period(viewer) -> None:  # type: ignore[no-untyped-def]
    page = viewer.get("/compliance/?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z")
    assert page.status_code == 400 and b"since must not be after until" in page.content


def _pack(client: Client, query: str, into: Path) -> Path:
    response = client.get(f"/compliance/pack/?{query}")
    assert response.status_code == 200, response.content[:400]
    data = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(into)
    return into


def test_the_pack_holds_every_evidence_exactly_and_its_manifest_matches(images, viewer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = _pack(viewer, "repository_prefix=myorg/", tmp_path / "pack")
    manifest = json.loads((root / "manifest.json").read_text())
    for entry in manifest["files"]:
        assert hashlib.sha256((root / entry["path"]).read_bytes()).hexdigest() == entry["sha256"], entry["path"]
    listed = {line.split("  ", 1)[1] for line in (root / "MANIFEST.sha256").read_text().splitlines()}
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {"MANIFEST.sha256"}
    assert listed == on_disk
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=root, check=True)
    payloads = {p.read_bytes() for p in root.glob("artifacts/*/evidence/*/payload")}
    assert payloads == {bytes(e.payload) for e in Evidence.objects.all()}
    assert (root / "trust/roots/provenance-test-v1.trusted_root.json").exists()
    vsas = list(root.glob("artifacts/*/vsa/*.intoto.json"))
    assert len(vsas) == 4
    public = (root / services.SIGNING_KEY_PATH).read_bytes()
    statements = [vsa.verify_envelope(p.read_bytes(), public) for p in vsas]
    assert {s["predicate"]["policy"]["digest"]["sha256"] for s in statements} == {Policy.objects.get().sha256}
    results = {s["subject"][0]["digest"]["sha256"]: s["predicate"]["verificationResult"] for s in statements}
    assert results[Digest.parse(images["signed"].digest).hex] == "PASSED"
    assert results[Digest.parse(images["intruder"].digest).hex] == "FAILED"


def _commands(root: Path, marker: str) -> list[str]:
    readme = (root / "README.md").read_text()
    blocks = readme.split("```sh\n")[1:]
    commands = [line for block in blocks for line in block.split("```")[0].splitlines()]
    return [c for c in commands if marker in c]


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(cwd), "TUF_ROOT": str(cwd / ".tuf")}
    return subprocess.run(["sh", "-c", command.split("   #")[0]], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_real_cosign_verifies_a_key_based_signature_from_the_pack_offline(fleet, images, viewer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("cosign") is None:
        missing_component("cosign is not on PATH")
    from provenance.trust import services as trust_services

    trust_services.add_public_key(name="release-key", pem=fleet.public_key_pem.encode())
    root = _pack(viewer, f"digest={images['keyed'].digest}", tmp_path / "pack")
    commands = _commands(root, "cosign verify-blob --key")
    assert len(commands) == 2, (root / "README.md").read_text()
    for command in commands:
        done = _run(command, root)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        assert "Verified OK" in done.stderr
    # the same command over a changed payload fails
    payload = next(root.glob("artifacts/*/evidence/*signature*/payload"))
    payload.write_bytes(payload.read_bytes().replace(b"docker-manifest-digest", b"docker-manifest-digesT"))
    assert _run(commands[-1], root).returncode != 0


def test_sigstore_verifies_a_bundle_from_the_pack_offline(fleet, images, viewer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sigstore_cli = Path(os.sys.executable).with_name("sigstore")  # type: ignore[attr-defined]
    if not sigstore_cli.exists():
        missing_component("the sigstore command is not installed in the virtualenv")
    artifact = images["signed"]
    digest = Digest.parse(artifact.digest)
    statement = in_toto_statement("ghcr.io/myorg/app", digest.hex, SLSA_V1, {
        "buildDefinition": {"buildType": "https://actions.github.io/v1", "externalParameters": {}},
        "runDetails": {"builder": {"id": "https://actions.github.io/v1/github-hosted"}}})
    bundle = fleet.sigstore.sign_dsse_bundle(statement, identity=APP_WORKFLOW, issuer=GITHUB_ACTIONS_ISSUER)
    layer = SignedLayer("application/vnd.dev.sigstore.bundle.v0.3+json", bundle, {})
    found = FoundEvidence(kind="attestation", format="sigstore-bundle", location="referrers", covers=digest,
                          level="image", digest=layer.digest, layer=layer)
    from provenance.artifacts import services as artifact_services
    from provenance.core import verify
    from provenance.core.types import IdentityPolicy

    item = verify.verify_evidence(found, trust_root=fleet.core_root,
                                  identity=IdentityPolicy(issuer=GITHUB_ACTIONS_ISSUER, identity=APP_WORKFLOW))
    assert artifact_services.store_evidence(artifact, item).outcome == "verified"

    root = _pack(viewer, f"digest={artifact.digest}", tmp_path / "pack")
    [command] = _commands(root, "sigstore --trust-config")
    done = _run(command.replace("sigstore ", f"{sigstore_cli} ", 1), root)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    assert "OK" in done.stderr + done.stdout
    assert list(root.glob("artifacts/*/evidence/*sigstore-bundle*/checkpoint-1.txt"))


@pytest.mark.integration
def test_a_pushed_vsa_verifies_with_real_cosign_verify_attestation(
        registry: RegistryServer, cosign_cli: CosignCli, tmp_path: Path) -> None:
    fleet = make_fleet("compliance-registry")
    repo = unique_repository("vsa")
    with registry.client() as client:
        digest = push_image(client, repo, make_image(), "v1")
    Source.objects.filter(pk=fleet.source.pk).update(location=f"{registry.host}/{repo}:v1", is_insecure=True)
    fleet.source.refresh_from_db()
    artifact = Artifact.objects.create(source=fleet.source, repository=repo, digest=str(digest), status="verified")
    reference = f"{registry.host}/{repo}"
    layer = fleet.sigstore.cosign_signature_layer(str(digest), reference, identity=APP_WORKFLOW,
                                                  issuer=GITHUB_ACTIONS_ISSUER)
    fleet.store(artifact, "signature", layer)
    policy = policy_services.save_policy(POLICY.format(glob=f"{registry.host}/**", identity=APP_WORKFLOW))
    policy_services.evaluate_artifacts([artifact.pk], cause="policy")
    from tests.factories import user_with_role

    operator = Client()
    operator.force_login(user_with_role("operator"))

    pushed = operator.post(f"/artifacts/{digest}/vsa/push")
    assert pushed.status_code == 302, pushed.content[:500]

    key = tmp_path / "provenance.pub"
    key.write_bytes(operator.get("/compliance/signing-key.pub").content)
    done = cosign_cli.run("verify-attestation", "--key", str(key), "--insecure-ignore-tlog",
                          "--type", vsa.VSA_PREDICATE_TYPE, "--allow-insecure-registry", f"{reference}@{digest}",
                          check=False)
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(x) for x in done.stdout.splitlines() if x.strip()]
    import base64
    statement = json.loads(base64.b64decode(line["payload"]))
    assert statement["predicateType"] == vsa.VSA_PREDICATE_TYPE
    assert statement["predicate"]["policy"]["digest"] == {"sha256": policy.sha256}
    assert "release-signature" in statement["predicate"]["policy"]["uri"]
    assert statement["predicate"]["verificationResult"] == "PASSED"
    # another key does not verify it
    other = tmp_path / "other.pub"
    other.write_bytes(cosign_cli.public_key)
    assert cosign_cli.run("verify-attestation", "--key", str(other), "--insecure-ignore-tlog", "--type",
                          vsa.VSA_PREDICATE_TYPE, "--allow-insecure-registry", f"{reference}@{digest}",
                          check=False).returncode != 0
