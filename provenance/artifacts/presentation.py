"""What the artifact page shows about an artifact's evidence: the attestation graph, provenance and SBOMs.

Evidence content is attacker-controlled text. Only a verified attestation's statement is presented as what the
artifact *is*; anything else readable (a statement whose signer did not verify, an unsigned BuildKit attestation,
an unsigned ``.sbom`` attachment) is returned with ``is_verified=False`` and a basis saying why it proves nothing.
Every string returned is plain text bounded in length: templates auto-escape it and must never mark it safe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.urls import reverse

from provenance.artifacts.models import Artifact, Evidence
from provenance.core import statements
from provenance.core.policy import CommitFacts
from provenance.core.statements import ParsedStatement, Provenance, Sbom

MAX_NODE_TEXT = 90  # a fact in a graph node
MAX_WHY_TEXT = 300  # why a piece of evidence failed, in its graph node: the one thing a developer needs whole
MAX_TITLE_TEXT = 500  # the same fact in full, as a tooltip
MAX_FIELD_TEXT = 400  # a field in the provenance and SBOM sections
MAX_COMPONENTS_SHOWN = 200
MAX_MATERIALS_SHOWN = 25
MAX_PARAMETERS_SHOWN = 25
MAX_PROBLEMS_SHOWN = 10
MAX_EVIDENCE_NODES = 20  # per artifact in the graph; more become one "n more" node
MAX_PLATFORM_NODES = 16
_COMMIT_ID = re.compile(r"^[0-9a-fA-F]{40}$")

# Outcome (of one piece of evidence) or status (of an artifact) -> colour of its node and incoming edge.
_TONES = {
    "verified": "ok",
    "unsigned": "warn",
    "absent": "warn",
    "pending": "pending",
    "error": "error",
    "unsupported": "error",
}

_PREDICATE_NAMES = {
    "https://slsa.dev/provenance/v1": "SLSA provenance v1",
    "https://slsa.dev/provenance/v0.2": "SLSA provenance v0.2",
    "https://spdx.dev/Document": "SPDX SBOM",
    "https://spdx.dev/Document/v2.2": "SPDX SBOM",
    "https://spdx.dev/Document/v2.3": "SPDX SBOM",
    "https://sigstore.dev/cosign/sign/v1": "cosign signature",
    "https://cosign.sigstore.dev/attestation/vuln/v1": "vulnerability scan",
    "https://cosign.sigstore.dev/attestation/v1": "custom (cosign)",
    "https://in-toto.io/attestation/vulns/v0.1": "vulnerability scan",
    "https://openvex.dev/ns": "OpenVEX",
}

_BADGES = {"ok": "verified", "bad": "failed", "warn": "unsigned", "error": "error", "pending": "pending"}

_TLOG = {"inclusion_proof": "inclusion proven", "inclusion_promise": "inclusion promised (SET)",
         "timestamped_not_logged": "timestamped, not logged", "not_logged": "not logged (insecure opt-in)"}


def tone(outcome: str) -> str:
    """The colour class of an evidence outcome or artifact status: ok, warn, bad, error or pending."""
    return _TONES.get(outcome, "bad")


def predicate_name(predicate_type: str) -> str:
    """A short human name for an in-toto predicate type (the type itself, bounded, when unknown)."""
    if predicate_type in _PREDICATE_NAMES:
        return _PREDICATE_NAMES[predicate_type]
    if predicate_type.startswith("https://cyclonedx.org/bom"):
        return "CycloneDX SBOM"
    return _short(predicate_type, MAX_NODE_TEXT) or "unknown predicate"


def sbom_format(sbom: Sbom) -> str:
    """``SPDX 2.3``, ``CycloneDX 1.5``: the SBOM's format and version, bounded."""
    label = {"spdx": "SPDX", "cyclonedx": "CycloneDX"}.get(sbom.format, sbom.format)
    return _short(f"{label} {sbom.spec_version.removeprefix('SPDX-')}".strip(), MAX_NODE_TEXT)


# -- what one piece of evidence says -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """What could be read from one evidence row, and whether it is verified content or only diagnosis."""

    is_verified: bool
    basis: str  # why it may (or may not) be believed, for the reader
    parsed: ParsedStatement | None = None
    sbom: Sbom | None = None
    problems: tuple[str, ...] = ()

    @property
    def provenance(self) -> Provenance | None:
        return self.parsed.provenance if self.parsed else None


def read_evidence(evidence: Evidence) -> Reading | None:
    """Parse what an evidence row holds (statement or SBOM); None when nothing readable is there.

    ``is_verified`` is true only for an attestation whose outcome is *verified* and whose verified statement was
    stored; an attestation verified cryptographically but refused on identity keeps its statement, which is then
    diagnosis only.
    """
    if evidence.kind == Evidence.Kind.SBOM:
        if not evidence.payload:
            return None
        sbom, problems = statements.parse_sbom(bytes(evidence.payload))
        return Reading(False, "unsigned SBOM attachment (cosign .sbom): anyone who can push could have written it",
                       sbom=sbom, problems=_problems(problems))
    if evidence.kind != Evidence.Kind.ATTESTATION:
        return None
    statement: Any = evidence.statement
    if isinstance(statement, dict) and statement.get("_truncated"):
        return Reading(evidence.is_verified, "the statement was too large to keep; it is not shown",
                       problems=("statement_too_large: the stored statement was truncated",))
    if isinstance(statement, dict):
        parsed = statements.parse_statement(statement)
        if evidence.is_verified:
            basis = "verified attestation"
        else:
            basis = f"not verified ({evidence.outcome}): the signature or its signer was not accepted"
        return Reading(evidence.is_verified, basis, parsed, parsed.sbom, _problems(parsed.problems))
    if evidence.format == "buildkit-attestation" and evidence.payload:
        parsed = statements.parse_statement(bytes(evidence.payload))
        return Reading(False, "unsigned BuildKit attestation: anyone who can push could have written it",
                       parsed, parsed.sbom, _problems(parsed.problems))
    return None


def _problems(problems: Iterable[Any]) -> tuple[str, ...]:
    return tuple(_short(f"{p.code}: {p.message}", MAX_FIELD_TEXT) for p in list(problems)[:MAX_PROBLEMS_SHOWN])


# -- the attestation graph ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fact:
    label: str
    value: str
    full: str = ""  # the value unshortened (bounded), shown as a tooltip
    is_mono: bool = False


@dataclass(frozen=True, slots=True)
class Node:
    """One box of the graph; its incoming edge has its tone."""

    kind: str  # index, image, platform, signature, attestation, sbom, provenance, content, more
    heading: str
    tone: str
    badge: str = ""
    facts: tuple[Fact, ...] = ()
    note: str = ""
    href: str = ""
    is_current: bool = False
    children: tuple[Node, ...] = ()

    @property
    def badge_class(self) -> str:
        return _BADGES.get(self.tone, "pending")


def _fact(label: str, value: str, *, mono: bool = False, limit: int = MAX_NODE_TEXT) -> Fact:
    value = value or ""
    short = _short(value, limit)
    return Fact(label, short, _short(value, MAX_TITLE_TEXT) if short != value else "", mono)


def _signer(e: Evidence) -> tuple[str, str, str]:
    return (e.identity, e.issuer, e.key)


def _signer_facts(e: Evidence) -> list[Fact]:
    facts = []
    if e.identity:
        facts.append(_fact("signer", e.identity))
    if e.issuer:
        facts.append(_fact("issuer", e.issuer))
    if e.key:
        facts.append(_fact("key", e.key, mono=True))
    return facts


def _failure_fact(e: Evidence) -> list[Fact]:
    failures = e.failures
    if e.is_verified or not failures:
        return []
    first = failures[0]
    return [_fact("why", f"{first.get('code', '')}: {first.get('message', '')}", limit=MAX_WHY_TEXT)]


def _content_nodes(e: Evidence, reading: Reading | None) -> tuple[Node, ...]:
    if reading is None:
        return ()
    prefix = "" if reading.is_verified else ("Unsigned: " if e.outcome == "unsigned" else "Not verified: ")
    node_tone = "ok" if reading.is_verified else "warn"
    note = "" if reading.is_verified else "shown for diagnosis only"
    nodes = []
    if (p := reading.provenance) is not None:
        commit = p.source_commit[:12] if len(p.source_commit) >= 40 else p.source_commit
        source = f"{p.source_repository}@{commit}" if commit else p.source_repository
        facts = [_fact("builder", p.builder_id or "—", mono=True), _fact("source", source or "—", mono=True)]
        if p.workflow:
            facts.append(_fact("workflow", p.workflow, mono=True))
        nodes.append(Node("provenance", f"{prefix}SLSA v{p.slsa_version} provenance", node_tone, facts=tuple(facts),
                          note=note, href=f"#provenance-{e.pk}"))
    if (s := reading.sbom) is not None:
        count = f"{len(s.components)}{'+' if s.truncated else ''}"
        facts = [_fact("format", sbom_format(s))]
        if s.name:
            facts.append(_fact("document", s.name))
        noun = "component" if len(s.components) == 1 else "components"
        nodes.append(Node("sbom", f"{prefix}SBOM, {count} {noun}", node_tone, facts=tuple(facts), note=note,
                          href=f"#sbom-{e.pk}"))
    return tuple(nodes)


def _evidence_node(e: Evidence, reading: Reading | None, *, children: Sequence[Node] = (),
                   show_signer: bool = True) -> Node:
    facts: list[Fact] = []
    if e.kind == Evidence.Kind.SIGNATURE:
        heading = "Signature"
        facts += _signer_facts(e)
        facts.append(_fact("tlog", _TLOG.get(e.tlog, "no log entry")))
    elif e.kind == Evidence.Kind.ATTESTATION:
        heading = predicate_name(e.predicate_type) if e.predicate_type else "Attestation"
        if show_signer:
            facts += _signer_facts(e)
        else:
            facts.append(Fact("signer", "same as the signature"))
        if e.tlog:
            facts.append(_fact("tlog", _TLOG.get(e.tlog, e.tlog)))
    else:
        heading = "SBOM attachment"
    facts.append(_fact("format", e.format))
    facts += _failure_fact(e)
    return Node(e.kind, heading, tone(e.outcome), badge=e.outcome, facts=tuple(facts), href=f"#evidence-{e.pk}",
                children=(*children, *_content_nodes(e, reading)))


def _more(count: int, what: str) -> Node:
    return Node("more", f"{count} more {what}", "pending", note="listed below")


def _evidence_nodes(evidence: Sequence[Evidence], readings: dict[int, Reading | None]) -> list[Node]:
    """Signatures, each with the attestations by the same signer; then attestations and SBOMs by no such signer."""
    signatures = [e for e in evidence if e.kind == Evidence.Kind.SIGNATURE]
    attestations = [e for e in evidence if e.kind == Evidence.Kind.ATTESTATION]
    sboms = [e for e in evidence if e.kind == Evidence.Kind.SBOM]
    shown_signatures = signatures[:MAX_EVIDENCE_NODES]
    by_signer: dict[tuple[str, str, str], list[Evidence]] = {}
    loose: list[Evidence] = []
    signers = {_signer(s) for s in shown_signatures if any(_signer(s))}
    for a in attestations[:MAX_EVIDENCE_NODES]:
        if _signer(a) in signers:
            by_signer.setdefault(_signer(a), []).append(a)
        else:
            loose.append(a)
    nodes = []
    for s in shown_signatures:
        attached = by_signer.pop(_signer(s), [])  # under the first signature by that signer
        kids = [_evidence_node(a, readings.get(a.pk), show_signer=False) for a in attached]
        nodes.append(_evidence_node(s, readings.get(s.pk), children=kids))
    nodes += [_evidence_node(a, readings.get(a.pk)) for a in loose]
    nodes += [_evidence_node(b, readings.get(b.pk)) for b in sboms[:MAX_EVIDENCE_NODES]]
    hidden = (max(0, len(signatures) - MAX_EVIDENCE_NODES) + max(0, len(attestations) - MAX_EVIDENCE_NODES)
              + max(0, len(sboms) - MAX_EVIDENCE_NODES))
    if hidden:
        nodes.append(_more(hidden, "pieces of evidence"))
    if not signatures:
        nodes.insert(0, Node("signature", "No signature", "warn", badge="absent",
                             note="nothing signs this digest"))
    return nodes


def _artifact_facts(artifact: Artifact) -> tuple[Fact, ...]:
    # The artifact's own reason is in the panel above and in its evidence's nodes: not repeated here.
    facts = [_fact("digest", artifact.digest, mono=True, limit=20)]
    tags = [t.name for t in artifact.tags.all()]
    if tags:
        facts.append(_fact("tags", ", ".join(tags)))
    return tuple(facts)


def _artifact_node(artifact: Artifact, readings: dict[int, Reading | None], *, evidence: Sequence[Evidence],
                   platforms: Sequence[tuple[Artifact, Sequence[Evidence]]] = (), is_current: bool = False) -> Node:
    if artifact.is_index:
        kind, heading = "index", "Index"
    elif artifact.parent_id:
        kind, heading = "platform", f"Platform {artifact.platform or '?'}"
    else:
        kind, heading = "image", "Image"
    children = _evidence_nodes(evidence, readings)
    for child, child_evidence in platforms[:MAX_PLATFORM_NODES]:
        children.append(_artifact_node(child, readings, evidence=child_evidence))
    if len(platforms) > MAX_PLATFORM_NODES:
        children.append(_more(len(platforms) - MAX_PLATFORM_NODES, "platforms"))
    href = "" if is_current else reverse("artifact-detail", args=[artifact.digest])
    return Node(kind, heading, tone(artifact.status), badge=artifact.status, facts=_artifact_facts(artifact),
                href=href, is_current=is_current, children=tuple(children))


# -- the provenance and SBOM sections ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProvenanceView:
    evidence: Evidence
    is_verified: bool
    basis: str
    provenance: Provenance
    fields: tuple[tuple[str, str], ...]
    materials: tuple[tuple[str, str], ...]  # (uri, digests)
    material_count: int
    parameters: tuple[tuple[str, str], ...]
    problems: tuple[str, ...]
    commits: tuple[CommitFacts, ...] = ()  # the source commit in each git source mirroring the repository


@dataclass(frozen=True, slots=True)
class ComponentRow:
    name: str
    version: str
    purl: str
    licenses: str


@dataclass(frozen=True, slots=True)
class SbomView:
    evidence: Evidence
    is_verified: bool
    basis: str
    format: str
    name: str
    count: int
    is_truncated: bool  # the document listed more components than are read at all
    components: tuple[ComponentRow, ...]
    problems: tuple[str, ...]

    @property
    def shown(self) -> int:
        return len(self.components)


def _provenance_view(e: Evidence, reading: Reading, p: Provenance) -> ProvenanceView:
    def f(value: str) -> str:
        return _short(value, MAX_FIELD_TEXT)

    fields = [
        ("SLSA version", p.slsa_version),
        ("Builder", f(p.builder_id)),
        ("Build type", f(p.build_type)),
        ("Source repository", f(p.source_repository)),
        ("Source commit", f(p.source_commit)),
        ("Source ref", f(p.source_ref)),
        ("Workflow", f(p.workflow)),
        ("Invocation", f(p.invocation_id)),
    ]
    materials = tuple(
        (f(m.uri or m.name), f(", ".join(f"{k}:{v}" for k, v in m.digest.items())))
        for m in p.materials[:MAX_MATERIALS_SHOWN]
    )
    parameters = tuple((f(k), f(v)) for k, v in list(p.parameters.items())[:MAX_PARAMETERS_SHOWN])
    return ProvenanceView(e, reading.is_verified, reading.basis, p, tuple((k, v) for k, v in fields if v),
                          materials, len(p.materials), parameters, reading.problems, _source_commits(p))


def _source_commits(p: Provenance) -> tuple[CommitFacts, ...]:
    """The provenance's source commit as the git sources hold it: image -> provenance -> repository -> commit."""
    if not p.source_repository or not _COMMIT_ID.match(p.source_commit):
        return ()
    from provenance.gitsources import services as git_services

    return git_services.commit_facts(p.source_repository, p.source_commit) or ()


def _sbom_view(e: Evidence, reading: Reading, s: Sbom) -> SbomView:
    def f(value: str) -> str:
        return _short(value, MAX_FIELD_TEXT)

    rows = tuple(
        ComponentRow(f(c.name), f(c.version), f(c.purl), f(", ".join(c.licenses)))
        for c in s.components[:MAX_COMPONENTS_SHOWN]
    )
    return SbomView(e, reading.is_verified, reading.basis, sbom_format(s), f(s.name),
                    len(s.components), s.truncated, rows, reading.problems)


# -- everything the page needs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArtifactPage:
    evidence: tuple[Evidence, ...]
    graph: Node
    provenance: tuple[ProvenanceView, ...]
    sboms: tuple[SbomView, ...]
    # Attestations and SBOMs with no provenance or SBOM to show (unreadable, unverified, or another predicate).
    unread: tuple[Evidence, ...] = ()

    def of_kind(self, kind: str) -> list[Evidence]:
        return [e for e in self.evidence if e.kind == kind]


def describe_artifact(artifact: Artifact) -> ArtifactPage:
    """The attestation graph of ``artifact`` (with its index or platforms) and its parsed provenance and SBOMs.

    Verified content comes first in each section; unverified content follows, marked as such.
    """
    evidence = list(artifact.evidence.all())
    children = artifact.children.prefetch_related("evidence", "tags").order_by("platform", "pk")
    platforms = [(c, list(c.evidence.all())) for c in children[: MAX_PLATFORM_NODES + 1]]
    readings: dict[int, Reading | None] = {e.pk: read_evidence(e) for e in evidence}
    for _, child_evidence in platforms[:MAX_PLATFORM_NODES]:
        readings.update({e.pk: read_evidence(e) for e in child_evidence[:MAX_EVIDENCE_NODES * 3]})
    node = _artifact_node(artifact, readings, evidence=evidence, platforms=platforms, is_current=True)
    if artifact.parent_id and artifact.parent is not None:
        parent = artifact.parent
        node = Node("index", "Index", tone(parent.status), badge=parent.status,
                    facts=(_fact("digest", parent.digest, mono=True, limit=20),),
                    note="this image is one of its platforms", href=reverse("artifact-detail", args=[parent.digest]),
                    children=(node,))
    provenance, sboms, unread = [], [], []
    for e in evidence:
        reading = readings.get(e.pk)
        if reading is not None and reading.provenance is not None:
            provenance.append(_provenance_view(e, reading, reading.provenance))
        if reading is not None and reading.sbom is not None:
            sboms.append(_sbom_view(e, reading, reading.sbom))
        if e.kind != Evidence.Kind.SIGNATURE and (reading is None or (reading.sbom is None
                                                                      and reading.provenance is None)):
            unread.append(e)
    provenance.sort(key=lambda v: not v.is_verified)
    sboms.sort(key=lambda v: not v.is_verified)
    return ArtifactPage(tuple(evidence), node, tuple(provenance), tuple(sboms), tuple(unread))


def _short(value: str, limit: int) -> str:
    value = value or ""
    return value if len(value) <= limit else value[: limit - 1] + "…"
