"""Server-side SVG pictures: verdict counts and coverage per source, escaped, no script, figures alongside."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from provenance.artifacts import charts
from provenance.artifacts.models import Artifact
from provenance.policies.models import ArtifactTrust
from provenance.sources.models import Source
from tests.artifacts.test_fleet_page import fill, make_source, user_client  # noqa: F401

pytestmark = pytest.mark.django_db

SVG = ""  # inline SVG in HTML: no namespace declared


def _svg(html: str, dom_id: str) -> ET.Element:
    match = re.search(rf'<figure class="chart" id="{dom_id}">\s*(<svg.*?</svg>)', html, re.S)
    assert match, f"no chart #{dom_id}"
    return ET.fromstring(match.group(1))  # noqa: S314 (our own page) well-formed XML, or this raises


def _widths(svg: ET.Element, key: str) -> list[float]:
    return [float(r.get("width", "0")) for r in svg.iter(f"{SVG}rect") if f"segment-{key}" in r.get("class", "")]


def test_verdict_counts_are_drawn_in_proportion(user_client):  # noqa: F811
    source = make_source("<b>evil</b> source", "ghcr.io/acme/app:v1")
    fill(source, 3)  # verified and trusted
    bad = Artifact.objects.create(source=source, repository="acme/x", digest="sha256:" + "f" * 64, status="failed")
    ArtifactTrust.objects.create(artifact=bad, status="untrusted")
    assert charts.verdict_counts()[source.pk] == {"signature": {"verified": 3, "failed": 1},
                                                  "policy": {"trusted": 3, "untrusted": 1}}
    fleet = user_client.get("/").content.decode()  # the fleet page loads the picture after itself, or links it
    assert 'hx-get="/charts/verdicts/" hx-trigger="load"' in fleet and 'href="/charts/verdicts/"' in fleet
    fragment = user_client.get("/charts/verdicts/", HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith('<figure class="chart" id="fleet-verdict-chart">')
    html = user_client.get("/charts/verdicts/").content.decode()
    assert "<b>evil</b>" not in html and "&lt;b&gt;evil&lt;/b&gt; source" in html
    svg = _svg(html, "fleet-verdict-chart")
    assert not list(svg.iter(f"{SVG}script")) and "on" not in "".join(
        k[:2] for e in svg.iter() for k in e.attrib)  # no script, no event handler
    assert _widths(svg, "verified") == [300.0] and _widths(svg, "failed") == [100.0]
    assert _widths(svg, "trusted") == [300.0] and _widths(svg, "untrusted") == [100.0]
    assert "signatures: 3 verified, 1 failed" in html


def test_coverage_chart_draws_each_measure_as_a_share(user_client):  # noqa: F811
    source = make_source("cov", "ghcr.io/acme/cov:v1")
    fill(source, 4)  # each with a verified signature and a trusted verdict
    Artifact.objects.create(source=source, repository="acme/none", digest="sha256:" + "e" * 64, status="unsigned")
    Source.objects.create(name="empty", kind=Source.Kind.IMAGE, location="ghcr.io/x/y:1",
                          trust_root=source.trust_root)
    html = user_client.get("/coverage/").content.decode()
    svg = _svg(html, "coverage-chart")
    assert _widths(svg, "signed") == [320.0] and _widths(svg, "trusted") == [320.0]  # 80 % of 400
    assert _widths(svg, "provenance") == [0.0] and _widths(svg, "sbom") == [0.0]
    assert "cov signed: 80% (4 of 5)" in html and "empty" not in html.split('id="coverage-chart"')[1].split(
        "</figure>")[0]  # a source without images is not drawn
    assert _svg(html, "verdict-chart") is not None
