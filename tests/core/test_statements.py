"""Parsing what was verified: SLSA provenance v0.2 and v1, SPDX and CycloneDX SBOMs; bounded and tolerant."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from provenance.core.statements import (
    MAX_COMPONENTS,
    MAX_DEPTH,
    parse_predicate,
    parse_sbom,
    parse_statement,
)
from tests.support import real_fixtures_dir


def _real_statement(case: str) -> bytes:
    bundle = json.loads((real_fixtures_dir() / case / "bundle.json").read_text())
    return base64.b64decode(bundle["dsseEnvelope"]["payload"])


def test_real_slsa_v1_from_github_actions() -> None:
    parsed = parse_statement(_real_statement("gh__sigstore_js_2.1.0_npm_provenance"))

    assert parsed.kind == "provenance" and not parsed.problems
    provenance = parsed.provenance
    assert provenance is not None
    assert provenance.slsa_version == "1"
    assert provenance.builder_id == "https://github.com/actions/runner/github-hosted"
    assert provenance.build_type == "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"
    assert provenance.source_repository == "https://github.com/sigstore/sigstore-js"
    assert provenance.source_commit == "26d16513386ffaa790b1c32f927544f1322e4194"
    assert provenance.source_ref == "refs/heads/main"
    assert provenance.workflow == ".github/workflows/release.yml"
    assert provenance.invocation_id.startswith("https://github.com/sigstore/sigstore-js/actions/runs/")
    assert parsed.subjects[0][1].keys() == {"sha512"}


def test_real_slsa_v02_from_the_generic_generator() -> None:
    parsed = parse_statement(_real_statement("slsa__generic_v2.1.0_workflow_dispatch"))

    provenance = parsed.provenance
    assert provenance is not None and provenance.slsa_version == "0.2"
    assert provenance.builder_id.endswith("generator_generic_slsa3.yml@refs/tags/v2.1.0")
    assert provenance.source_repository == "https://github.com/slsa-framework/example-package"
    assert provenance.source_commit == "4d329c75e7ec1725f7c9ce917a8799d408d06be3"
    assert provenance.source_ref == "refs/heads/main"
    assert provenance.materials and provenance.materials[0].digest["sha1"] == provenance.source_commit


def test_slsa_v02_with_invocation_parameters_and_materials() -> None:
    predicate = {
        "builder": {"id": "https://builder.example/v1"},
        "buildType": "https://example/build@v1",
        "invocation": {
            "configSource": {"uri": "git+https://git.example/acme/app.git@refs/tags/v2",
                             "digest": {"sha1": "c" * 40}, "entryPoint": "build.yml"},
            "parameters": {"target": "linux", "nested": {"a": [1, 2]}},
        },
        "metadata": {"buildInvocationId": "run-7"},
        "materials": [{"uri": "pkg:docker/golang@1.22", "digest": {"sha256": "d" * 64}}],
    }

    provenance = parse_predicate("https://slsa.dev/provenance/v0.2", predicate).provenance

    assert provenance is not None
    assert (provenance.source_repository, provenance.source_ref) == ("https://git.example/acme/app", "refs/tags/v2")
    assert provenance.source_commit == "c" * 40 and provenance.workflow == "build.yml"
    assert provenance.invocation_id == "run-7"
    assert provenance.parameters == {"target": "linux", "nested": '{"a": [1, 2]}'}
    assert provenance.materials[0].uri == "pkg:docker/golang@1.22"


SPDX = {
    "spdxVersion": "SPDX-2.3",
    "name": "app",
    "packages": [
        {"name": "openssl", "versionInfo": "3.0.13", "licenseConcluded": "Apache-2.0",
         "licenseDeclared": "Apache-2.0",
         "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                           "referenceLocator": "pkg:deb/debian/openssl@3.0.13"}]},
        {"name": "musl", "versionInfo": "1.2.4", "licenseConcluded": "NOASSERTION", "licenseDeclared": "MIT"},
        "not a package",
    ],
}
CYCLONEDX = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.5",
    "metadata": {"component": {"name": "app"}},
    "components": [
        {"name": "requests", "version": "2.32.0", "purl": "pkg:pypi/requests@2.32.0",
         "licenses": [{"license": {"id": "Apache-2.0"}}],
         "components": [{"name": "urllib3", "version": "2.2.1", "licenses": [{"expression": "MIT OR 0BSD"}]}]},
        {"name": "certifi", "licenses": [{"license": {"name": "Mozilla Public License"}}]},
    ],
}


def test_spdx_components() -> None:
    sbom, problems = parse_sbom(json.dumps(SPDX).encode())

    assert sbom is not None and not problems
    assert (sbom.format, sbom.spec_version, sbom.name) == ("spdx", "SPDX-2.3", "app")
    openssl, musl = sbom.components
    assert (openssl.name, openssl.version, openssl.purl, openssl.licenses) == (
        "openssl", "3.0.13", "pkg:deb/debian/openssl@3.0.13", ("Apache-2.0",))
    assert musl.licenses == ("MIT",)


def test_cyclonedx_components_including_nested_ones() -> None:
    sbom, problems = parse_sbom(CYCLONEDX)

    assert sbom is not None and not problems
    assert sbom.format == "cyclonedx" and sbom.name == "app"
    assert [(c.name, c.version, c.licenses) for c in sbom.components] == [
        ("requests", "2.32.0", ("Apache-2.0",)),
        ("urllib3", "2.2.1", ("MIT OR 0BSD",)),
        ("certifi", "", ("Mozilla Public License",)),
    ]


@pytest.mark.parametrize(
    ("predicate_type", "predicate"),
    [
        ("https://spdx.dev/Document", SPDX),
        ("https://spdx.dev/Document", json.dumps(SPDX)),  # some tools store the document as text
        ("https://cyclonedx.org/bom", CYCLONEDX),
        ("https://cyclonedx.org/bom/v1.5", {"Data": CYCLONEDX, "Timestamp": "x"}),  # cosign's old wrapper
    ],
)
def test_sbom_attestations(predicate_type: str, predicate: Any) -> None:
    statement = {"_type": "https://in-toto.io/Statement/v0.1", "subject": [{"name": "img", "digest": {"sha256": "a"}}],
                 "predicateType": predicate_type, "predicate": predicate}

    parsed = parse_statement(json.dumps(statement).encode())

    assert parsed.kind == "sbom" and parsed.sbom is not None and parsed.sbom.components
    assert not parsed.problems


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (b"not json", "document_not_json"),
        (b"[1, 2]", "statement_not_object"),
        (b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5), "document_too_deep"),
        (json.dumps({"predicateType": "https://slsa.dev/provenance/v1", "predicate": "text"}).encode(),
         "predicate_malformed"),
        (json.dumps({"predicateType": "https://spdx.dev/Document", "predicate": {"x": 1}}).encode(),
         "sbom_unrecognized"),
    ],
)
def test_malformed_input_is_a_result_not_a_crash(document: bytes, code: str) -> None:
    parsed = parse_statement(document)

    assert code in {p.code for p in parsed.problems}
    assert parsed.provenance is None and parsed.sbom is None


def test_deep_nesting_inside_strings_is_not_counted() -> None:
    statement = {"predicateType": "x", "predicate": {"note": "[" * 10_000}}
    assert not parse_statement(json.dumps(statement).encode()).problems


def test_odd_field_types_are_ignored() -> None:
    predicate = {"builder": ["not", "an", "object"], "buildType": 7, "materials": {"x": 1},
                 "invocation": {"configSource": {"uri": None, "digest": "nope"}}}

    provenance = parse_predicate("https://slsa.dev/provenance/v0.2", predicate).provenance

    assert provenance is not None
    assert (provenance.builder_id, provenance.build_type, provenance.materials) == ("", "7", ())


def test_component_count_is_bounded() -> None:
    many = {"bomFormat": "CycloneDX", "specVersion": "1.5",
            "components": [{"name": f"c{i}"} for i in range(MAX_COMPONENTS + 10)]}

    sbom, _ = parse_sbom(many)

    assert sbom is not None and sbom.truncated and len(sbom.components) == MAX_COMPONENTS


def test_long_strings_are_truncated() -> None:
    sbom, _ = parse_sbom({"bomFormat": "CycloneDX", "components": [{"name": "x" * 100_000}]})
    assert sbom is not None and len(sbom.components[0].name) == 1000
