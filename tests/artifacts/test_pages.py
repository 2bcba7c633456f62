"""The artifact page's attestation graph, provenance and SBOM sections, and the fleet page's policy column."""

from __future__ import annotations

import json
import re

import pytest

from provenance.artifacts import presentation
from provenance.artifacts.models import Artifact, Evidence
from provenance.policies.models import ArtifactTrust, Policy
from provenance.sources import services
from provenance.sources.demo import load_demo
from provenance.sources.models import Source
from tests.factories import UserFactory, make_sigstore, trust_root_for

pytestmark = pytest.mark.django_db

SLSA_V1 = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"
SIGNER = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def demo(tmp_path):
    loaded = load_demo(tmp_path)
    services.claim_scan(loaded.scan.pk)
    services.run_scan(loaded.scan.pk)
    return loaded


@pytest.fixture
def user_client(client):
    client.force_login(UserFactory())
    return client


@pytest.fixture
def artifact():
    source = Source.objects.create(name="crafted", kind=Source.Kind.LAYOUT, location="/nowhere",
                                   trust_root=trust_root_for(make_sigstore()))
    return Artifact.objects.create(source=source, repository="acme/app", digest=DIGEST, status="verified",
                                   media_type="application/vnd.oci.image.manifest.v1+json")


def section(html: str, dom_id: str) -> str:
    """The HTML of the <section> with this id (sections on the page do not nest)."""
    match = re.search(rf'<section id="{dom_id}".*?</section>', html, re.S)
    assert match, f"no section #{dom_id}"
    return match.group(0)


def statement(predicate_type: str, predicate: dict) -> dict:
    return {"_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "acme/app", "digest": {"sha256": "ab" * 32}}],
            "predicateType": predicate_type, "predicate": predicate}


def slsa(builder: str = "https://github.com/actions/runner/github-hosted", commit: str = "c0ffee" * 6 + "c0ff") -> dict:
    return {
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {"workflow": {"repository": "https://github.com/acme/app",
                                                "path": ".github/workflows/release.yml", "ref": "refs/heads/main"}},
            "resolvedDependencies": [{"uri": "git+https://github.com/acme/app@refs/heads/main",
                                      "digest": {"gitCommit": commit}}],
        },
        "runDetails": {"builder": {"id": builder}},
    }


def spdx(*names: str) -> dict:
    return {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "acme/app",
            "packages": [{"SPDXID": f"SPDXRef-{n}", "name": n, "versionInfo": "1.0"} for n in names]}


def evidence(artifact: Artifact, kind: str, key: str, **fields) -> Evidence:
    defaults = {"format": "cosign-att" if kind == "attestation" else "cosign-sig", "location": "acme/app:sha256-ab.att",
                "digest": "sha256:" + "cd" * 32, "covers_digest": artifact.digest, "outcome": "verified",
                "identity": SIGNER, "issuer": ISSUER, "tlog": "inclusion_proof"}
    return Evidence.objects.create(artifact=artifact, kind=kind, evidence_key=key, **{**defaults, **fields})


# -- the demo fleet ---------------------------------------------------------------------------------------------


def test_signed_demo_image_shows_its_graph_provenance_and_sbom(demo, user_client):
    signed = next(i for i in demo.images if i.tag == "signed")
    html = user_client.get(f"/artifacts/{signed.digest}/", follow=True).content.decode()
    graph = section(html, "attestation-graph")
    assert "Signature" in graph and "SLSA provenance v1" in graph and "SPDX SBOM" in graph
    assert "https://github.com/actions/runner/github-hosted" in graph  # builder
    assert "https://github.com/provenance-demo/app@5f1c0de3a9b1" in graph  # source and short commit
    assert ".github/workflows/release.yml" in graph and "SBOM, 1 component" in graph
    assert "inclusion promised" in graph and "Not verified" not in graph
    provenance = section(html, "provenance")
    assert "✔ verified" in provenance and "not verified" not in provenance
    assert "5f1c0de3a9b1e7c2d4f6a8b0c2e4f6a8b0c2e4f6" in provenance
    assert "https://github.com/actions/runner/github-hosted" in provenance
    sbom = section(html, "sbom")
    assert "✔ verified" in sbom and "openssl" in sbom and "pkg:deb/debian/openssl@3.0.15" in sbom
    assert "Apache-2.0" in sbom


def test_index_graph_shows_its_platforms_and_their_signatures(demo, user_client):
    index = next(i for i in demo.images if i.tag == "multiarch")
    html = user_client.get(f"/artifacts/{index.digest}/", follow=True).content.decode()
    graph = section(html, "attestation-graph")
    assert "Platform linux/amd64" in graph and "Platform linux/arm64" in graph
    assert graph.count("<b>Signature</b>") + graph.count(">Signature</a>") == 3
    root = Artifact.objects.get(digest=index.digest)
    child = root.children.get(platform="linux/arm64")
    assert f'href="/artifacts/{child.pk}/"' in graph  # each platform's own place
    # and a platform's page leads back to its index
    assert f'href="/artifacts/{root.pk}/"' in section(
        user_client.get(f"/artifacts/{child.digest}/", follow=True).content.decode(), "attestation-graph")


def test_failed_signature_says_why_in_the_graph(demo, user_client):
    wrong = next(i for i in demo.images if i.tag == "wrong-identity")
    graph = section(user_client.get(f"/artifacts/{wrong.digest}/", follow=True).content.decode(), "attestation-graph")
    assert "untrusted" in graph and "identity_mismatch" in graph and "someone-else" in graph
    assert "edge-bad" in graph


# -- attacker-controlled content ---------------------------------------------------------------------------------


def test_malicious_statement_is_escaped_and_bounded(artifact, user_client):
    evil = '<script>alert("x")</script>'
    evidence(artifact, "signature", "s")
    evidence(artifact, "attestation", "p", predicate_type=SLSA_V1,
             statement=statement(SLSA_V1, slsa(builder=evil + "x" * 5000, commit=evil)))
    evidence(artifact, "attestation", "b", predicate_type=SPDX, statement=statement(SPDX, spdx(evil, "zlib")))
    evidence(artifact, "attestation", "t", predicate_type=evil, identity=evil)
    html = user_client.get(f"/artifacts/{DIGEST}/", follow=True).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in section(html, "provenance")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in section(html, "sbom")
    # bounded however long the builder id (the statement parser already stops at 1,000 characters)
    assert "x" * (max(presentation.MAX_FIELD_TEXT, presentation.MAX_TITLE_TEXT) + 1) not in html


def test_unverified_attestation_content_is_not_presented_as_verified(artifact, user_client):
    evidence(artifact, "signature", "s")
    # signed, but refused (e.g. verified without an identity policy): the statement is kept for diagnosis
    evidence(artifact, "attestation", "u", outcome="untrusted", identity="https://evil.example/attacker",
             predicate_type=SLSA_V1, statement=statement(SLSA_V1, slsa(builder="https://evil.example/builder")),
             checks=[{"stage": "identity", "code": "identity_mismatch", "ok": False, "message": "not the signer"}])
    # did not verify: no statement is kept at all
    evidence(artifact, "attestation", "i", outcome="invalid", predicate_type=SPDX, statement=None)
    html = user_client.get(f"/artifacts/{DIGEST}/", follow=True).content.decode()
    provenance = section(html, "provenance")
    assert "not verified — shown for diagnosis only" in provenance and "✔ verified" not in provenance
    assert "content-unverified" in provenance and "content-verified" not in provenance
    assert "Signer, not accepted: https://evil.example/attacker" in provenance
    graph = section(html, "attestation-graph")
    assert "Not verified: SLSA v1 provenance" in graph and "shown for diagnosis only" in graph
    assert "identity_mismatch" in graph
    sbom = section(html, "sbom")
    assert "No SBOM for this digest" in sbom  # the invalid SBOM attestation's content is not shown
    assert "(invalid)" in provenance  # ... and it is named as not shown


def test_verified_outcome_without_statement_shows_no_content():
    row = Evidence(kind="attestation", format="cosign-att", outcome="verified", statement=None, payload=b"")
    assert presentation.read_evidence(row) is None
    refused = Evidence(kind="attestation", format="cosign-att", outcome="untrusted",
                       statement=statement(SLSA_V1, slsa()), payload=b"")
    reading = presentation.read_evidence(refused)
    assert reading is not None and not reading.is_verified and reading.provenance is not None


def test_unsigned_sbom_attachment_is_listed_marked_unsigned_and_bounded(artifact, user_client):
    components = [{"type": "library", "name": f"lib{n}", "version": "1", "purl": f"pkg:npm/lib{n}@1",
                   "licenses": [{"license": {"id": "MIT"}}]} for n in range(250)]
    document = {"bomFormat": "CycloneDX", "specVersion": "1.5", "components": components}
    evidence(artifact, "sbom", "sbom", format="cosign-sbom", outcome="unsigned", identity="", issuer="", tlog="",
             location="acme/app:sha256-ab.sbom", payload=json.dumps(document).encode(),
             checks=[{"stage": "signature", "code": "unsigned_evidence", "ok": False, "message": "no signature"}])
    html = user_client.get(f"/artifacts/{DIGEST}/", follow=True).content.decode()
    sbom = section(html, "sbom")
    assert "○ unsigned — proves nothing" in sbom and "✔ verified" not in sbom
    assert "CycloneDX 1.5" in sbom and "250 components, the first 200 shown" in sbom
    assert "pkg:npm/lib199@1" in sbom and "pkg:npm/lib200@1" not in sbom and "MIT" in sbom
    assert "Unsigned: SBOM, 250 components" in section(html, "attestation-graph")
    assert "SBOM attachments" in html and "acme/app:sha256-ab.sbom" in html


# -- the fleet page ----------------------------------------------------------------------------------------------


def test_fleet_page_shows_policy_status_next_to_verification(demo, user_client):
    html = user_client.get("/").content.decode()
    assert "<th>Policy</th>" in html
    # the demo's policies: the release workflow must sign (enforced), SLSA provenance is warn-only
    assert "✔ trusted" in html and "✘ untrusted" in html
    signed = Artifact.objects.get(digest=str(next(i for i in demo.images if i.tag == "signed").digest))
    ArtifactTrust.objects.filter(artifact=signed).update(status="untrusted", code="no_policy",
                                                        reason="no policy applies")
    assert "no policy applies" in user_client.get("/").content.decode()


def test_fleet_page_says_no_policy_or_pending_when_not_evaluated(artifact, user_client):
    assert not ArtifactTrust.objects.filter(artifact=artifact).exists()
    assert ">no policy</span>" in user_client.get("/").content.decode()
    Policy.objects.create(name="p", source="apiVersion: policy.sigstore.dev/v1beta1", sha256="0" * 64)
    assert "… pending" in user_client.get("/").content.decode()


def test_status_filter_swaps_the_table_with_policy_column(demo, user_client):
    html = user_client.get("/").content.decode()
    for link in re.findall(r"<a [^>]*hx-get=[^>]*>", html):
        assert "href=" in link
    fragment = user_client.get("/?status=failed", HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith('<div id="artifact-table">') and "<html" not in fragment
    assert "<th>Policy</th>" in fragment and "wrong-identity" in fragment and ":signed<" not in fragment
