"""Compliance: export rows, the report, evidence packs and verification summaries (VSAs), where the ORM meets
``provenance.core.exports`` and ``provenance.core.vsa``.

Row selection is the API's :class:`~provenance.api.filters.ArtifactFilter` (plus ``top_level`` and ``policy_name``),
so an export holds exactly what the same query parameters list. Rows are produced in batches of
:data:`BATCH` artifacts with a handful of queries per batch: an export of any size holds one batch in memory.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import tempfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from django import forms
from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_filters import rest_framework as filters

from provenance.accounts.models import AuditEvent
from provenance.api.filters import ArtifactFilter, UtcDateTimeField
from provenance.artifacts.models import Artifact, Evidence, Tag, TrustStatus
from provenance.core import exports, vsa
from provenance.core.errors import NotFoundError, ProvenanceError
from provenance.core.exports import ExportRow, PackItem, PdfDocument, PdfSection, PolicyVerdict
from provenance.core.names import full_name
from provenance.core.statements import CYCLONEDX_PREFIX, SLSA_V02, SLSA_V1, SPDX_TYPES, parse_statement
from provenance.core.types import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    ANNOTATION_PREDICATE_TYPE,
    ANNOTATION_SIGNATURE,
    Digest,
    MediaType,
)
from provenance.policies.models import ArtifactTrust, Policy, Status
from provenance.sources import services as source_services
from provenance.sources.models import Source, registry_host
from provenance.trust.models import PublicKeyVersion, TrustRoot, TrustRootVersion

BATCH = 1000
PDF_MAX_ROWS = 2000  # a PDF is built in memory (fpdf2): bigger selections are cut, and the PDF says so
PACK_MAX_ARTIFACTS = 500  # an evidence pack of more is refused: narrow the scope
REPORT_FAILING_SHOWN = 500
REPORT_EVENTS_SHOWN = 500
SIGNING_KEY_PATH = "trust/provenance-signing.pub"
PROVENANCE_PREDICATES = frozenset({SLSA_V02, SLSA_V1})


class ExportError(ProvenanceError):
    """An export's parameters are wrong (a 400) or its selection too large for the format."""

    code = "export_invalid"


# -- row selection -----------------------------------------------------------------------------------------------


class ExportFilter(ArtifactFilter):
    """The API's artifact filter, plus what the pages need: top-level artifacts only (the fleet page) and the
    artifacts a policy gave a verdict on."""

    top_level = filters.BooleanFilter(field_name="parent", lookup_expr="isnull",
                                      help_text="Only top-level artifacts (an index's platforms left out), as "
                                                "the fleet page shows them.")
    policy_name = filters.CharFilter(method="filter_policy_name", max_length=253,
                                     help_text="Artifacts the named policy gave a verdict on.")

    def filter_policy_name(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # details.policies is a list of {"policy": name, ...}: JSON containment works on PostgreSQL and SQLite.
        trusted = ArtifactTrust.objects.filter(details__policies__contains=[{"policy": value}])
        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            ids = [t.artifact_id for t in ArtifactTrust.objects.only("artifact_id", "details")
                   if any(p.get("policy") == value for p in (t.details or {}).get("policies", []))]
            return queryset.filter(pk__in=ids)
        return queryset.filter(pk__in=trusted.values("artifact_id"))


FILTER_PARAMETERS = tuple(ExportFilter.base_filters)


def select_artifacts(params: Mapping[str, str]) -> tuple[QuerySet, dict[str, str]]:
    """The artifacts ``params`` (query parameters of the API's artifact list, ``top_level`` and ``policy_name``)
    select, in the list's order, and the parameters that took part. Raises :class:`ExportError` naming a bad one.
    """
    data = {k: params[k] for k in FILTER_PARAMETERS if params.get(k) not in (None, "")}
    queryset = Artifact.objects.order_by("repository", "digest", "id")
    filterset = ExportFilter(data, queryset=queryset)
    if not filterset.is_valid():
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in filterset.errors.items())
        raise ExportError(problems, code="export_invalid")
    selected = filterset.qs
    if "ordering" not in data:
        selected = selected.order_by("repository", "digest", "id")
    return selected.distinct() if "tag" in data else selected, data


# -- rows --------------------------------------------------------------------------------------------------------


def export_rows(queryset: QuerySet) -> Iterator[ExportRow]:
    """One :class:`ExportRow` per artifact of ``queryset``, in its order, batch by batch."""
    policies = {p.name: (p.version, p.sha256) for p in Policy.objects.only("name", "version", "sha256")}
    roots = {r.pk: (r.name, r.version) for r in TrustRoot.objects.only("id", "name", "version")}
    sources = {s.pk: (s.kind, s.location, s.trust_root_id) for s in
               Source.objects.only("id", "kind", "location", "trust_root_id")}
    hosts = {pk: full_name(registry_host(kind, location), "") for pk, (kind, location, _) in sources.items()}
    columns = ("id", "source_id", "repository", "digest", "platform", "status", "status_code", "checked_at")
    batch: list[dict[str, Any]] = []
    for artifact in queryset.values(*columns).iterator(chunk_size=BATCH):
        batch.append(artifact)
        if len(batch) >= BATCH:
            yield from _rows(batch, policies, roots, sources, hosts)
            batch = []
    if batch:
        yield from _rows(batch, policies, roots, sources, hosts)


@dataclass
class _Facts:
    identity: str = ""
    issuer: str = ""
    builder: str = ""
    source_repository: str = ""
    source_commit: str = ""
    sbom_present: bool = False
    sbom_signed: bool = False


def _rows(batch: list[dict[str, Any]], policies: dict[str, tuple[int, str]], roots: dict[int, tuple[str, int]],
          sources: dict[int, tuple[str, str, int]], hosts: dict[int, str]) -> Iterator[ExportRow]:
    ids = [a["id"] for a in batch]
    tags: dict[int, list[str]] = defaultdict(list)
    for artifact_id, name in Tag.objects.filter(artifact_id__in=ids).order_by("name").values_list("artifact_id",
                                                                                                    "name"):
        tags[artifact_id].append(name)
    trust = {t["artifact_id"]: t for t in
             ArtifactTrust.objects.filter(artifact_id__in=ids).values("artifact_id", "status", "details")}
    facts: dict[int, _Facts] = defaultdict(_Facts)
    provenance_ids = []
    for e in (Evidence.objects.filter(artifact_id__in=ids).order_by("artifact_id", "kind", "location", "digest")
              .values("id", "artifact_id", "kind", "outcome", "identity", "issuer", "predicate_type")):
        fact = facts[e["artifact_id"]]
        verified = e["outcome"] == "verified"
        if verified and e["identity"] and not fact.identity:
            fact.identity, fact.issuer = e["identity"], e["issuer"]
        if e["kind"] == Evidence.Kind.SBOM or _is_sbom(e["predicate_type"]):
            fact.sbom_present = True
            fact.sbom_signed = fact.sbom_signed or (verified and e["kind"] == Evidence.Kind.ATTESTATION)
        if verified and e["kind"] == Evidence.Kind.ATTESTATION and e["predicate_type"] in PROVENANCE_PREDICATES:
            provenance_ids.append(e["id"])
    if provenance_ids:
        for artifact_id, statement in Evidence.objects.filter(pk__in=provenance_ids).values_list("artifact_id",
                                                                                                "statement"):
            fact = facts[artifact_id]
            if fact.builder or not isinstance(statement, dict) or statement.get("_truncated"):
                continue
            parsed = parse_statement(statement).provenance
            if parsed is not None:
                fact.builder, fact.source_repository = parsed.builder_id, parsed.source_repository
                fact.source_commit = parsed.source_commit
    for a in batch:
        fact = facts[a["id"]]
        verdict = trust.get(a["id"])
        root_name, root_version = roots.get(sources[a["source_id"]][2], ("", None))
        yield ExportRow(
            image=f"{hosts[a['source_id']]}{a['repository']}", digest=a["digest"], platform=a["platform"],
            tags=tuple(tags.get(a["id"], ())), signature_status=a["status"], signature_code=a["status_code"],
            policy_status=verdict["status"] if verdict else Status.PENDING,
            policies=_verdicts(verdict["details"] if verdict else {}, policies),
            signer_identity=fact.identity, signer_issuer=fact.issuer, builder=fact.builder,
            source_repository=fact.source_repository, source_commit=fact.source_commit,
            sbom_present=fact.sbom_present, sbom_signed=fact.sbom_signed, trust_root=root_name,
            trust_root_version=root_version, verified_at=a["checked_at"],
        )


def _verdicts(details: Any, policies: dict[str, tuple[int, str]]) -> tuple[PolicyVerdict, ...]:
    results = details.get("policies", []) if isinstance(details, dict) else []
    verdicts = []
    for result in results:
        if not isinstance(result, dict):
            continue
        name = str(result.get("policy", ""))
        version, sha256 = policies.get(name, (None, ""))
        findings = [f.get("message", "") for f in result.get("findings", []) if isinstance(f, dict)]
        verdicts.append(PolicyVerdict(name=name, version=version, sha256=sha256, mode=str(result.get("mode", "")),
                                      allowed=bool(result.get("allowed")), reason="; ".join(findings)[:1000]))
    return tuple(verdicts)


def _is_sbom(predicate_type: str) -> bool:
    return predicate_type in SPDX_TYPES or predicate_type.startswith(CYCLONEDX_PREFIX)


# -- formats -----------------------------------------------------------------------------------------------------


def export_csv(queryset: QuerySet) -> Iterator[str]:
    return exports.csv_lines(export_rows(queryset))


def export_json(queryset: QuerySet, scope: dict[str, str]) -> Iterator[str]:
    return exports.json_chunks(export_rows(queryset), generated_at=timezone.now(), scope=scope)


def export_pdf(queryset: QuerySet, scope: dict[str, str]) -> bytes:
    """The export as a PDF table; more than :data:`PDF_MAX_ROWS` rows are cut, and the PDF says how many."""
    total = queryset.count()
    rows = []
    for row in export_rows(queryset[:PDF_MAX_ROWS]):
        policies = "; ".join(p.as_text() for p in row.policies)
        build = f"{row.builder} {row.source_repository}@{row.source_commit[:12]}" if row.builder else ""
        sbom = "signed" if row.sbom_signed else "unsigned" if row.sbom_present else "none"
        rows.append((f"{row.image}\n{row.digest}\n{' '.join(row.tags)}", f"{row.signature_status}\n"
                     f"{row.signature_code}", f"{row.policy_status}\n{policies}",
                     f"{row.signer_identity}\n{row.signer_issuer}", build, sbom,
                     f"{row.trust_root} v{row.trust_root_version}" if row.trust_root else "",
                     row.verified_at.strftime("%Y-%m-%d %H:%M") if row.verified_at else ""))
    shown = f"{len(rows)} of {total} artifacts" + (
        f" (a PDF holds at most {PDF_MAX_ROWS}: export CSV or JSON for all)" if total > len(rows) else "")
    selection = ", ".join(f"{k}={v}" for k, v in sorted(scope.items())) or "the whole fleet"
    document = PdfDocument(
        title="Provenance export",
        subtitle=f"Generated {timezone.now():%Y-%m-%d %H:%M} UTC. Selection: {selection}. {shown}.",
        sections=(PdfSection(heading="Artifacts", header=(
            "Image, digest, tags", "Signatures", "Policies", "Signer", "Build (builder, source@commit)", "SBOM",
            "Trust root", "Verified"), rows=rows, widths=(3.2, 1.3, 2.2, 2.4, 2.2, 0.8, 1.1, 1.0)),),
    )
    return exports.pdf_document(document)


# -- the report --------------------------------------------------------------------------------------------------


class ReportForm(forms.Form):
    source = forms.ModelChoiceField(queryset=Source.objects.all(), required=False)
    policy = forms.ModelChoiceField(queryset=Policy.objects.all(), required=False, to_field_name="name")
    since = UtcDateTimeField(required=False)
    until = UtcDateTimeField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("since must not be after until", code="invalid")
        return data


@dataclass
class Report:
    """A compliance report: coverage of the scope, failing images, and the changes of the period."""

    scope: str
    since: dt.datetime | None
    until: dt.datetime
    total: int
    signatures: list[tuple[str, str, int]]  # (status, label, count)
    verdicts: list[tuple[str, str, int]]
    coverage: list[tuple[str, int, int]]  # (label, count, total)
    failing: list[dict[str, Any]]
    failing_total: int
    changes: list[AuditEvent]
    approvals: list[AuditEvent]
    params: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        def event(e: AuditEvent) -> dict[str, Any]:
            return {"at": e.at.isoformat(), "actor": e.actor_name, "action": e.action, "object_type": e.object_type,
                    "object_id": e.object_id, "object": e.object_repr, "detail": e.detail}
        return {"scope": self.scope, "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat(), "total": self.total,
                "signatures": {s: n for s, _, n in self.signatures}, "verdicts": {s: n for s, _, n in self.verdicts},
                "coverage": [{"label": label, "count": n, "total": t} for label, n, t in self.coverage],
                "failing": self.failing, "failing_total": self.failing_total,
                "policy_changes": [event(e) for e in self.changes], "approvals": [event(e) for e in self.approvals]}


APPROVAL_ACTIONS = ("policy.", "trust_root.", "public_key.", "user.", "role.", "signing_key.")


def build_report(form_data: Mapping[str, Any]) -> Report:
    """The report for the cleaned :class:`ReportForm` data: artifacts (top level) of the source or policy in
    scope, checked in the period; the policy changes and approvals of the audit trail in the period."""
    since, until = form_data.get("since"), form_data.get("until") or timezone.now()
    params: dict[str, str] = {"top_level": "true"}
    scope = "the whole fleet"
    if source := form_data.get("source"):
        params["source"], scope = str(source.pk), f"source {source.name}"
    if policy := form_data.get("policy"):
        params["policy_name"], scope = policy.name, f"policy {policy.name} (v{policy.version})"
    if since:
        params["checked_since"] = since.isoformat()
    artifacts, _ = select_artifacts(params)
    artifacts = artifacts.filter(Q(checked_at__lte=until) | Q(checked_at__isnull=True))
    signatures = Counter(artifacts.values_list("status", flat=True).order_by())
    verdict_rows = artifacts.values_list("trust__status", flat=True).order_by()
    verdicts = Counter(v or Status.PENDING for v in verdict_rows)
    total = sum(signatures.values())
    ids = artifacts.values("id")
    with_provenance = Evidence.objects.filter(artifact_id__in=ids, outcome="verified",
                                              predicate_type__in=PROVENANCE_PREDICATES).values("artifact_id")
    with_sbom = Evidence.objects.filter(Q(kind=Evidence.Kind.SBOM) | Q(predicate_type__in=SPDX_TYPES)
                                        | Q(predicate_type__startswith=CYCLONEDX_PREFIX),
                                        artifact_id__in=ids).values("artifact_id")
    coverage = [
        ("signature verified", signatures.get(TrustStatus.VERIFIED, 0), total),
        ("policy trusted", verdicts.get(Status.TRUSTED, 0), total),
        ("verified SLSA provenance", artifacts.filter(pk__in=with_provenance).count(), total),
        ("SBOM present", artifacts.filter(pk__in=with_sbom).count(), total),
    ]
    # Failing: what an enforcing admission would refuse (no valid signature, or a policy said no or could not say).
    failing_q = artifacts.filter(Q(status__in=[TrustStatus.FAILED, TrustStatus.ERROR, TrustStatus.UNSIGNED])
                                 | Q(trust__status__in=[Status.UNTRUSTED, Status.ERROR, Status.UNSIGNED]))
    failing = [{"image": a.repository, "digest": a.digest, "tags": [t.name for t in a.tags.all()],
                "signature": a.status, "signature_reason": a.status_reason,
                "policy": a.trust.status if hasattr(a, "trust") else Status.PENDING,
                "policy_reason": a.trust.reason if hasattr(a, "trust") else ""}
               for a in failing_q.select_related("trust").prefetch_related("tags")[:REPORT_FAILING_SHOWN]]
    events = AuditEvent.objects.filter(at__lte=until)
    if since:
        events = events.filter(at__gte=since)
    changes = events.filter(action__startswith="policy.")
    if policy:
        changes = changes.filter(object_repr=policy.name)
    approvals = events.filter(Q(*[Q(action__startswith=a) for a in APPROVAL_ACTIONS], _connector=Q.OR))
    return Report(
        scope=scope, since=since, until=until, total=total,
        signatures=[(s, label, signatures.get(s, 0)) for s, label in TrustStatus.choices],
        verdicts=[(s, label, verdicts.get(s, 0)) for s, label in Status.choices],
        coverage=coverage, failing=failing, failing_total=failing_q.count(),
        changes=list(changes[:REPORT_EVENTS_SHOWN]), approvals=list(approvals[:REPORT_EVENTS_SHOWN]),
        params={k: v for k, v in params.items() if k != "checked_since"},
    )


def report_pdf(report: Report) -> bytes:
    period = f"{report.since:%Y-%m-%d %H:%M} to " if report.since else "up to "
    def events(rows: Sequence[AuditEvent]) -> list[tuple[str, ...]]:
        return [(f"{e.at:%Y-%m-%d %H:%M}", e.actor_name, e.action, e.object_repr,
                 json.dumps(e.detail, sort_keys=True, default=str)) for e in rows]
    sections = (
        PdfSection(heading="Coverage", paragraphs=(f"{report.total} artifacts in scope.",), bars=tuple(
            report.coverage)),
        PdfSection(heading="Signatures", bars=tuple((label, n, report.total) for _, label, n in report.signatures)),
        PdfSection(heading="Policy verdicts", bars=tuple((label, n, report.total) for _, label, n in
                                                         report.verdicts)),
        PdfSection(heading=f"Failing images ({report.failing_total})",
                   paragraphs=() if report.failing else ("None.",),
                   header=("Image", "Digest", "Signatures", "Why", "Policy", "Why") if report.failing else (),
                   rows=[(f["image"] + (" :" + " :".join(f["tags"]) if f["tags"] else ""), f["digest"],
                          f["signature"], f["signature_reason"], f["policy"], f["policy_reason"])
                         for f in report.failing], widths=(2.5, 2.2, 0.9, 2.8, 0.9, 2.8)),
        PdfSection(heading=f"Policy changes in the period ({len(report.changes)})",
                   paragraphs=() if report.changes else ("None.",),
                   header=("At (UTC)", "Who", "Action", "Policy", "Detail") if report.changes else (),
                   rows=events(report.changes), widths=(1.2, 1.2, 1.2, 1.8, 4.0)),
        PdfSection(heading=f"Who approved what ({len(report.approvals)})",
                   paragraphs=("Every change of policies, trust roots, keys and roles in the period, from the "
                               "append-only audit trail.",),
                   header=("At (UTC)", "Who", "Action", "Object", "Detail") if report.approvals else (),
                   rows=events(report.approvals), widths=(1.2, 1.2, 1.2, 1.8, 4.0)),
    )
    return exports.pdf_document(PdfDocument(
        title=f"Compliance report: {report.scope}",
        subtitle=f"Period {period}{report.until:%Y-%m-%d %H:%M} UTC. Generated {timezone.now():%Y-%m-%d %H:%M} "
                 "UTC by Provenance.", sections=sections))


# -- the signing key and VSAs ------------------------------------------------------------------------------------


def keyring() -> vsa.SigningKeyring:
    """The dashboard's signing keys: ``<data dir>/signing``, each encrypted with the credentials' Fernet key."""
    return vsa.SigningKeyring(Path(settings.DATA_DIR) / "signing", source_services.credential_box())


def signing_public_pem(version: int | None = None) -> bytes:
    ring = keyring()
    return ring.current().public_pem if version is None else ring.public_pem(version)


def rotate_signing_key() -> vsa.SigningKey:
    from provenance.accounts import services as audit

    key = keyring().rotate()
    audit.record("signing_key.rotate", None, {"version": key.version, "fingerprint": key.fingerprint})
    return key


def artifact_vsas(artifact: Artifact, *, base_url: str) -> list[tuple[str, bytes]]:
    """One signed VSA (DSSE envelope bytes) per policy that gave ``artifact`` a verdict: (policy name, envelope).

    Raises :class:`ExportError` (``vsa_unavailable``) when no policy has judged the artifact yet.
    """
    trust = ArtifactTrust.objects.filter(artifact=artifact).first()
    results = (trust.details or {}).get("policies", []) if trust else []
    if not results:
        raise ExportError("no policy has given this artifact a verdict yet: there is nothing to summarise",
                          code="vsa_unavailable")
    key = keyring().current()
    host = artifact.source.registry_host
    name = full_name(host, artifact.repository)
    evidence = list(artifact.evidence.filter(outcome="verified").exclude(kind=Evidence.Kind.SBOM)
                    .only("location", "digest", "predicate_type"))
    inputs = [vsa.InputAttestation(uri=f"oci://{full_name(host, e.location)}", digest=_digest_map(e.digest))
              for e in evidence]
    has_provenance = any(e.predicate_type in PROVENANCE_PREDICATES for e in evidence)
    policies = {p.name: p for p in Policy.objects.filter(name__in=[r.get("policy") for r in results])}
    envelopes = []
    for result in results:
        policy = policies.get(result.get("policy", ""))
        if policy is None:
            continue  # deleted since: no policy document to name
        passed = bool(result.get("allowed")) and artifact.status == TrustStatus.VERIFIED
        levels = (["SLSA_BUILD_LEVEL_1"] if has_provenance else ["SLSA_BUILD_LEVEL_0"]) if passed else []
        statement = vsa.vsa_statement(
            subject_name=name, subject_digest=artifact.digest,
            verifier_id=f"{base_url}/", verifier_version={"provenance": _version()},
            time_verified=trust.evaluated_at or timezone.now() if trust else timezone.now(),
            resource_uri=f"oci://{name}@{artifact.digest}",
            policy_uri=f"{base_url}/policies/{policy.pk}/?version={policy.version}#{policy.name}",
            policy_digest={"sha256": policy.sha256}, input_attestations=inputs, passed=passed,
            verified_levels=levels)
        envelopes.append((policy.name, vsa.sign_envelope(statement, key)))
    if not envelopes:
        raise ExportError("the policies that judged this artifact no longer exist", code="vsa_unavailable")
    return envelopes


def _version() -> str:
    try:
        return metadata.version("provenance")
    except metadata.PackageNotFoundError:
        return "unknown"


def _digest_map(digest: str) -> dict[str, str]:
    algorithm, _, hex_value = digest.partition(":")
    return {algorithm: hex_value}


def push_vsas(artifact: Artifact, *, base_url: str) -> list[str]:
    """Attach the artifact's VSAs to its image as cosign attestations (the ``sha256-<hex>.att`` manifest, added to
    what is there), so ``cosign verify-attestation --key`` finds them. Returns the layer digests pushed.

    Raises :class:`ExportError` (``vsa_push_unavailable``) for an image not in a registry, and registry errors.
    """
    source = artifact.source
    if not source.is_registry:
        raise ExportError("the image is in an OCI layout, not a registry: there is nowhere to push to",
                          code="vsa_push_unavailable")
    envelopes = artifact_vsas(artifact, base_url=base_url)
    digest = Digest.parse(artifact.digest)
    host, repository = source.registry_host, artifact.repository
    if source.signature_repository:
        from provenance.core.oci import signature_place

        host, repository = signature_place(source.signature_repository, default_registry=host)
    tag = f"{digest.tag_prefix}.att"
    client = source_services._client(source, host, with_credentials=True)
    with client:
        try:
            manifest: dict[str, Any] | None = dict(client.get_manifest(repository, tag).json)
        except NotFoundError:
            manifest = None
        config = b"{}"
        if manifest is None:
            client.push_blob(repository, config)
            manifest = {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                                   "digest": str(Digest.of(config))}, "layers": []}
        have = {layer.get("digest") for layer in manifest.get("layers", [])}
        pushed = []
        for _, envelope in envelopes:
            layer_digest = str(client.push_blob(repository, envelope))
            pushed.append(layer_digest)
            if layer_digest not in have:
                manifest["layers"].append({
                    "mediaType": "application/vnd.dsse.envelope.v1+json", "size": len(envelope),
                    "digest": layer_digest,
                    "annotations": {ANNOTATION_SIGNATURE: "", ANNOTATION_PREDICATE_TYPE: vsa.VSA_PREDICATE_TYPE}})
        data = json.dumps(manifest, separators=(",", ":")).encode()
        client.push_manifest(repository, tag, data, manifest.get("mediaType", MediaType.OCI_MANIFEST))
    return pushed


# -- evidence packs ----------------------------------------------------------------------------------------------


class _Pack:
    """A zip being written, with the SHA-256 of every file for the manifest."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.zip = zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED)
        self.files: dict[str, tuple[str, str]] = {}  # path -> (sha256, role)

    def add(self, path: str, data: bytes | str, role: str) -> str:
        if path in self.files:
            return path
        raw = data.encode() if isinstance(data, str) else data
        self.zip.writestr(zipfile.ZipInfo(path, date_time=(2000, 1, 1, 0, 0, 0)), raw,
                          compress_type=zipfile.ZIP_DEFLATED)
        self.files[path] = (exports.sha256_hex(raw), role)
        return path


def evidence_pack(queryset: QuerySet, *, title: str, base_url: str, handle: IO[bytes]) -> int:
    """Write the evidence pack (zip) of the artifacts in ``queryset`` to ``handle``; return how many artifacts.

    Raises :class:`ExportError` (``pack_too_large``) above :data:`PACK_MAX_ARTIFACTS` artifacts.
    """
    count = queryset.count()
    if count > PACK_MAX_ARTIFACTS:
        raise ExportError(f"{count} artifacts selected; an evidence pack holds at most {PACK_MAX_ARTIFACTS}: "
                          "narrow the selection", code="pack_too_large")
    pack = _Pack(handle)
    signing = keyring().current()
    pack.add(SIGNING_KEY_PATH, signing.public_pem, f"dashboard signing key v{signing.version}")
    items: list[PackItem] = []
    key_files: dict[str, str] = {}
    root_files: dict[int, tuple[str, str, str]] = {}
    artifacts = list(queryset.select_related("source__trust_root").prefetch_related("tags"))
    for fingerprint in {e.key for e in Evidence.objects.filter(artifact__in=artifacts).exclude(key="")
                        .only("key")}:
        for version in PublicKeyVersion.objects.filter(fingerprint=fingerprint):
            key_files[fingerprint] = pack.add(f"trust/keys/{version.name}-v{version.version}.pub", version.pem,
                                              f"public key {version.name} v{version.version}")
    for artifact in artifacts:
        root = artifact.source.trust_root
        if root.pk not in root_files:
            root_files[root.pk] = _add_root(pack, root)
        trusted_root, trust_config, rekor_key = root_files[root.pk]
        base = f"artifacts/{artifact.digest.replace(':', '-')}"
        summary = {"image": full_name(artifact.source.registry_host, artifact.repository), "digest": artifact.digest,
                   "platform": artifact.platform, "tags": [t.name for t in artifact.tags.all()],
                   "signature_status": artifact.status, "signature_code": artifact.status_code,
                   "signature_reason": artifact.status_reason,
                   "checked_at": artifact.checked_at.isoformat() if artifact.checked_at else None,
                   "trust_root": {"name": root.name, "version": root.version, "sha256": root.sha256}}
        trust = ArtifactTrust.objects.filter(artifact=artifact).first()
        if trust:
            summary["policy"] = {"status": trust.status, "code": trust.code, "reason": trust.reason,
                                 "details": trust.details}
        pack.add(f"{base}/artifact.json", _json(summary), "what Provenance concluded")
        for number, e in enumerate(artifact.evidence.all(), start=1):
            items.append(_add_evidence(pack, f"{base}/evidence/{number:02d}-{e.kind}-{e.format}", artifact, e,
                                       key=key_files.get(e.key, ""), trusted_root=trusted_root,
                                       trust_config=trust_config, rekor_key=rekor_key))
        try:
            vsas = artifact_vsas(artifact, base_url=base_url)
        except ExportError:
            vsas = []
        for policy_name, envelope in vsas:
            path = pack.add(f"{base}/vsa/{_file_name(policy_name)}.intoto.json", envelope,
                            f"VSA for policy {policy_name}")
            items.append(PackItem(title=f"{artifact.repository}@{artifact.digest[:19]}: VSA for policy "
                                        f"{policy_name}", format="vsa", subject_digest=artifact.digest,
                                  files={"envelope": path}, outcome="signed by this dashboard",
                                  predicate_type=vsa.VSA_PREDICATE_TYPE, key=SIGNING_KEY_PATH))
    readme = exports.pack_readme(title=title, generated_at=timezone.now(), items=items,
                                 signing_key=SIGNING_KEY_PATH)
    pack.add("README.md", readme, "how to re-verify")
    entries = [{"path": p, "sha256": h, "role": r} for p, (h, r) in sorted(pack.files.items())]
    manifest_json = _json({"title": title, "generated_at": timezone.now().isoformat(), "files": entries})
    pack.add("manifest.json", manifest_json, "the manifest")
    pack.zip.writestr(zipfile.ZipInfo("MANIFEST.sha256", date_time=(2000, 1, 1, 0, 0, 0)),
                      exports.manifest_lines((p, h) for p, (h, _) in pack.files.items()))
    pack.zip.close()
    return len(artifacts)


def _add_root(pack: _Pack, root: TrustRoot) -> tuple[str, str, str]:
    """The current version of a trust root (every older one the pack's verdicts may have used is listed too)."""
    version = TrustRootVersion.objects.filter(trust_root=root, version=root.version).first()
    document = version.document if version else root.document
    path = pack.add(f"trust/roots/{root.name}-v{root.version}.trusted_root.json", document,
                    f"trust root {root.name} v{root.version}")
    for older in TrustRootVersion.objects.filter(trust_root=root).exclude(version=root.version)[:20]:
        pack.add(f"trust/roots/{root.name}-v{older.version}.trusted_root.json", older.document,
                 f"trust root {root.name} v{older.version} (older)")
    config = _trust_config(document, root.signing_config)
    config_path = pack.add(f"trust/roots/{root.name}-v{root.version}.trust-config.json", _json(config),
                           f"sigstore client trust configuration for {root.name} v{root.version}")
    rekor = ""
    try:
        logs = json.loads(document).get("tlogs", [])
        raw = base64.b64decode(logs[0]["publicKey"]["rawBytes"]) if logs else b""
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
        raw = b""
    if raw:
        pem = b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(raw) + b"-----END PUBLIC KEY-----\n"
        rekor = pack.add(f"trust/roots/{root.name}-v{root.version}.rekor.pub", pem,
                         f"transparency log key of {root.name} v{root.version}")
    return path, config_path, rekor


def _trust_config(document: str, signing_config: str) -> dict[str, Any]:
    """A sigstore ``ClientTrustConfig``: the trusted root and a signing configuration (the root's own when it has
    one; else one naming its CA and log, never used for verification)."""
    root = json.loads(document)
    if signing_config:
        signing = json.loads(signing_config)
    else:
        def services(entries: list[Any], key: str) -> list[dict[str, Any]]:
            return [{"url": e.get(key, ""), "majorApiVersion": 1, "validFor": _valid_for(e),
                     "operator": "provenance-pack"} for e in entries if isinstance(e, dict) and e.get(key)]
        signing = {"mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
                   "caUrls": services(root.get("certificateAuthorities", []), "uri"),
                   "oidcUrls": [], "rekorTlogUrls": services(root.get("tlogs", []), "baseUrl"),
                   "tsaUrls": [], "rekorTlogConfig": {"selector": "ANY"}, "tsaConfig": {"selector": "ANY"}}
    return {"mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json", "trustedRoot": root,
            "signingConfig": signing}


def _valid_for(entry: dict[str, Any]) -> dict[str, Any]:
    valid = entry.get("validFor") or (entry.get("publicKey") or {}).get("validFor")
    return valid if isinstance(valid, dict) and valid.get("start") else {"start": "1970-01-01T00:00:00Z"}


def _add_evidence(pack: _Pack, base: str, artifact: Artifact, e: Evidence, *, key: str, trusted_root: str,
                  trust_config: str, rekor_key: str) -> PackItem:
    payload = bytes(e.payload)
    files = {"payload": pack.add(f"{base}/payload", payload, f"{e.kind} exactly as fetched"),
             "annotations": pack.add(f"{base}/annotations.json", _json(e.annotations), "annotations as fetched"),
             "media_type": pack.add(f"{base}/media-type.txt", e.media_type + "\n", "media type as fetched"),
             "checks": pack.add(f"{base}/checks.json", _json({"outcome": e.outcome, "checks": e.checks,
                                                              "identity": e.identity, "issuer": e.issuer,
                                                              "key": e.key, "tlog": e.tlog}),
                                "Provenance's checks")}
    annotations = e.annotations if isinstance(e.annotations, dict) else {}
    if signature := annotations.get(ANNOTATION_SIGNATURE):
        files["signature"] = pack.add(f"{base}/signature.b64", signature, "the signature (base64)")
    if certificate := annotations.get(ANNOTATION_CERTIFICATE):
        files["certificate"] = pack.add(f"{base}/certificate.pem", certificate, "the signing certificate")
    if chain := annotations.get(ANNOTATION_CHAIN):
        files["chain"] = pack.add(f"{base}/chain.pem", chain, "the certificate chain")
    if bundle := annotations.get(ANNOTATION_BUNDLE):
        try:
            rekor_bundle = json.loads(bundle)
        except ValueError:
            rekor_bundle = None
        if isinstance(rekor_bundle, dict):  # cosign's LocalSignedPayload, as `cosign verify-blob --bundle` reads it
            local = {"base64Signature": signature or "", "rekorBundle": rekor_bundle}
            if certificate:
                local["cert"] = base64.b64encode(certificate.encode()).decode()
            files["cosign_bundle"] = pack.add(f"{base}/cosign-bundle.json", _json(local), "signature and log entry")
    if e.format == "cosign-att" or e.media_type == "application/vnd.dsse.envelope.v1+json":
        files["envelope"] = files["payload"]
    if e.format == "sigstore-bundle" or e.media_type.startswith("application/vnd.dev.sigstore.bundle"):
        files["bundle"] = pack.add(f"{base}/bundle.sigstore.json", payload, "the Sigstore bundle")
        for number, checkpoint in enumerate(_checkpoints(payload), start=1):
            files[f"checkpoint_{number}"] = pack.add(f"{base}/checkpoint-{number}.txt", checkpoint,
                                                     "signed log checkpoint")
    fmt = "sigstore-bundle" if "bundle" in files else "cosign-att" if "envelope" in files else e.format
    level = f" ({e.level})" if e.level != "image" else ""
    return PackItem(
        title=f"{artifact.repository}@{artifact.digest[:19]}: {e.kind} {e.format}{level} at {e.location}",
        format=fmt, subject_digest=e.covers_digest or artifact.digest, files=files, outcome=e.outcome,
        predicate_type=e.predicate_type, key=key, trust_root=trusted_root, trust_config=trust_config,
        rekor_key=rekor_key, identity=e.identity, issuer=e.issuer, is_logged=e.tlog not in ("", "not_logged"))


def _checkpoints(bundle: bytes) -> list[str]:
    try:
        data = json.loads(bundle)
        entries = data.get("verificationMaterial", {}).get("tlogEntries", [])
        return [str(t["inclusionProof"]["checkpoint"]["envelope"]) for t in entries
                if isinstance(t, dict) and isinstance(t.get("inclusionProof"), dict)
                and isinstance(t["inclusionProof"].get("checkpoint"), dict)]
    except (ValueError, AttributeError, KeyError, TypeError):
        return []


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100] or "policy"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


def pack_file() -> IO[bytes]:
    """Where a pack is written: memory up to 32 MiB, then a temporary file (removed when closed)."""
    return tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)

