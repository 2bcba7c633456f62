"""The framework-free pieces: CSV neutralisation, the JSON schema, the PDF, VSAs, DSSE and the signing keyring."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import jsonschema
import pytest
from cryptography.fernet import Fernet
from pypdf import PdfReader

from provenance.core import exports, vsa
from provenance.core.credentials import CredentialBox
from provenance.core.errors import MalformedEvidenceError, VerificationError
from provenance.core.exports import ExportRow, PolicyVerdict

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def _row(**changes: object) -> ExportRow:
    values: dict[str, object] = dict(
        image="ghcr.io/acme/app", digest="sha256:" + "a" * 64, tags=("v1",), signature_status="verified",
        policy_status="trusted", policies=(PolicyVerdict("release", 3, "b" * 64, "enforce", True),),
        signer_identity="https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
        signer_issuer="https://token.actions.githubusercontent.com", builder="https://github.com/actions/runner",
        source_repository="git+https://github.com/acme/app", source_commit="c" * 40, sbom_present=True,
        sbom_signed=True, trust_root="public-good", trust_root_version=2, verified_at=NOW)
    values.update(changes)
    return ExportRow(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_starting_a_formula_are_neutralised(start: str) -> None:
    evil = f"{start}HYPERLINK(\"https://evil.test\",\"x\")"
    row = _row(tags=(evil,), signer_identity=evil, builder=evil, source_repository=evil, source_commit=evil)

    [header, cells] = list(csv.reader(io.StringIO("".join(exports.csv_lines([row])))))

    record = dict(zip(header, cells, strict=True))
    for column in ("tags", "signer_identity", "builder", "source_repository", "source_commit"):
        assert record[column] == "'" + evil, column
    assert record["digest"] == "sha256:" + "a" * 64 and record["policies"] == "release v3 (enforce): allowed"


def test_safe_cell_leaves_ordinary_text_alone() -> None:
    assert exports.safe_cell("ghcr.io/acme/app") == "ghcr.io/acme/app"
    assert exports.safe_cell(12) == "12" and exports.safe_cell(None) == ""
    assert exports.safe_cell("a=b") == "a=b"


def test_json_export_validates_against_the_published_schema() -> None:
    rows = [_row(), _row(digest="sha256:" + "d" * 64, verified_at=None, trust_root_version=None, policies=())]

    document = json.loads("".join(exports.json_chunks(rows, generated_at=NOW, scope={"status": "verified"},
                                                      batch=1)))

    jsonschema.Draft202012Validator(exports.EXPORT_SCHEMA,
                                    format_checker=jsonschema.FormatChecker()).validate(document)
    assert [a["digest"] for a in document["artifacts"]] == [r.digest for r in rows]
    assert document["artifacts"][0]["policy"]["policies"][0] == {
        "name": "release", "version": 3, "sha256": "b" * 64, "mode": "enforce", "allowed": True, "reason": ""}


def test_the_schema_rejects_what_it_should() -> None:
    document = json.loads("".join(exports.json_chunks([_row()], generated_at=NOW, scope={})))
    document["artifacts"][0]["signature"]["status"] = "probably fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, exports.EXPORT_SCHEMA)


def test_an_empty_json_export_is_valid() -> None:
    document = json.loads("".join(exports.json_chunks([], generated_at=NOW, scope={})))
    jsonschema.validate(document, exports.EXPORT_SCHEMA)
    assert document["artifacts"] == []


def test_the_pdf_parses_and_holds_every_row() -> None:
    digests = [f"sha256:{i:064x}" for i in range(40)]
    document = exports.PdfDocument(title="Export", sections=(exports.PdfSection(
        heading="Artifacts", header=("Image", "Digest"), rows=[("ghcr.io/acme/app \u2603", d) for d in digests],
        bars=(("signed", 3, 4),)),))

    reader = PdfReader(io.BytesIO(exports.pdf_document(document)))

    text = "".join(page.extract_text() for page in reader.pages).replace("\n", "")
    assert all(d in text for d in digests)
    assert "ghcr.io/acme/app ?" in text  # outside Latin-1: replaced, never interpreted


def _statement() -> dict[str, object]:
    return vsa.vsa_statement(
        subject_name="ghcr.io/acme/app", subject_digest="sha256:" + "a" * 64, verifier_id="https://prov.test/",
        time_verified=NOW, resource_uri="oci://ghcr.io/acme/app@sha256:" + "a" * 64,
        policy_uri="https://prov.test/policies/1/?version=3", policy_digest={"sha256": "b" * 64},
        input_attestations=[vsa.InputAttestation("oci://ghcr.io/acme/app:sha256-aa.sig", {"sha256": "c" * 64})],
        passed=True, verified_levels=["SLSA_BUILD_LEVEL_1"])


def test_a_vsa_names_policy_subject_inputs_and_result() -> None:
    statement = _statement()
    predicate = statement["predicate"]
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/verification_summary/v1"
    assert statement["subject"] == [{"name": "ghcr.io/acme/app", "digest": {"sha256": "a" * 64}}]
    assert predicate == {  # type: ignore[comparison-overlap]
        "verifier": {"id": "https://prov.test/"}, "timeVerified": "2026-05-01T12:00:00Z",
        "resourceUri": "oci://ghcr.io/acme/app@sha256:" + "a" * 64,
        "policy": {"uri": "https://prov.test/policies/1/?version=3", "digest": {"sha256": "b" * 64}},
        "inputAttestations": [{"uri": "oci://ghcr.io/acme/app:sha256-aa.sig", "digest": {"sha256": "c" * 64}}],
        "verificationResult": "PASSED", "verifiedLevels": ["SLSA_BUILD_LEVEL_1"], "slsaVersion": "1.0"}


def test_a_vsa_needs_a_digest_with_its_algorithm() -> None:
    with pytest.raises(MalformedEvidenceError) as err:
        vsa.vsa_statement(subject_name="x", subject_digest="a" * 64, verifier_id="v", time_verified=NOW,
                          resource_uri="r", policy_uri="p", policy_digest={}, input_attestations=[], passed=False,
                          verified_levels=[])
    assert err.value.code == "vsa_invalid"


@pytest.fixture
def ring(tmp_path):  # type: ignore[no-untyped-def]
    return vsa.SigningKeyring(tmp_path / "signing", CredentialBox([Fernet.generate_key()]))


def test_a_signed_vsa_verifies_and_a_changed_one_does_not(ring) -> None:  # type: ignore[no-untyped-def]
    key = ring.current()
    envelope = vsa.sign_envelope(_statement(), key)

    assert vsa.verify_envelope(envelope, key.public_pem) == _statement()
    data = json.loads(envelope)
    forged = dict(_statement(), predicate={"verificationResult": "PASSED"})
    import base64
    data["payload"] = base64.b64encode(json.dumps(forged).encode()).decode()
    with pytest.raises(VerificationError) as err:
        vsa.verify_envelope(json.dumps(data).encode(), key.public_pem)
    assert err.value.code == "signature_invalid"
    with pytest.raises(VerificationError):
        vsa.verify_envelope(envelope, ring.rotate().public_pem)
    with pytest.raises(MalformedEvidenceError):
        vsa.verify_envelope(b"{not json", key.public_pem)


def test_the_signing_key_is_made_once_kept_encrypted_and_rotates(ring) -> None:  # type: ignore[no-untyped-def]
    first = ring.current()
    assert ring.current().fingerprint == first.fingerprint  # made on first use only
    stored = (ring.directory / "vsa-signing-1.key").read_text()
    assert "PRIVATE KEY" not in stored and (ring.directory / "vsa-signing-1.key").stat().st_mode & 0o077 == 0
    second = ring.rotate()
    assert (second.version, ring.current().version) == (2, 2) and second.fingerprint != first.fingerprint
    assert ring.public_pem(1) == first.public_pem and ring.versions() == [1, 2]
    other = vsa.SigningKeyring(ring.directory, CredentialBox([Fernet.generate_key()]))
    with pytest.raises(Exception) as err:
        other.current()
    assert getattr(err.value, "code", "") == "credentials_undecryptable"


def test_readme_commands_quote_attacker_text() -> None:
    item = exports.PackItem(title="t", format="sigstore-bundle", subject_digest="sha256:" + "a" * 64,
                            files={"bundle": "a/bundle.json"}, trust_config="trust/c.json", trust_root="trust/r.json",
                            identity="x'; rm -rf / #", issuer="https://issuer.test")
    [sigstore_command, cosign_command] = exports.item_commands(item)
    assert "'x'\"'\"'; rm -rf / #'" in sigstore_command and sigstore_command.startswith("sigstore --trust-config")
    assert "'x'\"'\"'; rm -rf / #'" in cosign_command
