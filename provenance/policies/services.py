"""Policies meet stored evidence here: import, dry-run, evaluate, re-evaluate, history, coverage.

Evaluation never refetches: it reads what the scan stored (evidence rows with their checks, statements and raw
layers) and hands it to :mod:`provenance.core.policy`. A status change is written with a :class:`TrustEvent`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import operator
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, Value
from django.utils import timezone

from provenance.accounts import services as audit
from provenance.artifacts.models import Artifact, Evidence, Tag
from provenance.core import policy as core
from provenance.core.errors import ProvenanceError, TrustRootError
from provenance.core.trustroot import TrustRoot as CoreTrustRoot
from provenance.core.types import SignedLayer
from provenance.policies.models import ArtifactTrust, Cause, Policy, Reevaluation, Status, TrustEvent
from provenance.sources.models import Source, registry_host
from provenance.trust import services as trust_services
from provenance.trust.models import TrustRoot

log = logging.getLogger(__name__)

CHUNK = 2000  # ids per IN (...) query: below SQLite's variable limit, large enough to stay fast
MAX_FLIPS_SHOWN = 500


# -- policies -------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _parse_cached(source: str) -> core.ClusterImagePolicy:
    return core.parse_policy(source)


def parse(source: str) -> core.ClusterImagePolicy:
    """Parse and validate a policy document; raises :class:`core.PolicyError` with the line of the problem."""
    return _parse_cached(source)


def enabled_policies(*, exclude: Policy | None = None) -> list[core.ClusterImagePolicy]:
    """The enabled policies, parsed. A stored policy that no longer parses stays in, as an unreadable policy that
    makes every image it may cover "error" (and is logged)."""
    result = []
    rows = Policy.objects.filter(is_enabled=True)
    if exclude is not None and exclude.pk:
        rows = rows.exclude(pk=exclude.pk)
    for row in rows:
        try:
            result.append(parse(row.source))
        except ProvenanceError as err:  # validated on save; a newer version may refuse what an older accepted
            log.error("stored policy %s no longer parses: %s", row.name, err)
            result.append(core.unreadable_policy(row.name, row.source, str(err)))
    return result


def _draft_set(draft: core.ClusterImagePolicy, *, replacing: Policy | None,
               enabled: bool = True) -> list[core.ClusterImagePolicy]:
    others = [p for p in enabled_policies(exclude=replacing) if p.name != draft.name]
    return [*others, draft] if enabled else others


def save_policy(source: str, *, policy: Policy | None = None, enabled: bool = True) -> Policy:
    """Validate and store a policy (new, or a new version of ``policy``), then re-evaluate in the background.

    Raises :class:`core.PolicyError` (nothing saved) when the document is refused, or when its name belongs to
    another policy.
    """
    parsed = parse(source)
    clash = Policy.objects.filter(name=parsed.name)
    if policy is not None and policy.pk:
        clash = clash.exclude(pk=policy.pk)
    if clash.exists():
        raise core.PolicyError(f"a policy named {parsed.name!r} exists already: edit it instead", line=0,
                               path="metadata.name", code="policy_exists")
    with transaction.atomic():
        if policy is None or not policy.pk:
            before_globs: list[str] = []
            policy = Policy(version=1)
            detail = f"policy {parsed.name} imported"
        else:
            policy = Policy.objects.select_for_update().get(pk=policy.pk)
            before_globs = list(parse(policy.source).images) if policy.is_enabled else []
            if policy.source == source and policy.is_enabled == enabled:
                return policy  # nothing changed: no new version, no re-evaluation
            policy.version += 1
            detail = f"policy {parsed.name} edited (version {policy.version})"
        policy.name = parsed.name
        policy.source = source
        policy.parsed = _as_json(parsed)
        policy.mode = parsed.mode
        policy.is_enabled = enabled
        policy.warnings = [str(w) for w in parsed.warnings]
        policy.sha256 = hashlib.sha256(source.encode()).hexdigest()
        policy.save()
        audit.record("policy.create" if policy.version == 1 else "policy.version", policy,
                     {"version": policy.version, "enabled": enabled, "mode": policy.mode, "sha256": policy.sha256})
        globs = sorted(set(before_globs) | (set(parsed.images) if enabled else set()))
        if globs:
            start_reevaluation(cause=Cause.POLICY, detail=detail, scope={"globs": globs})
    return policy


def delete_policy(policy: Policy) -> None:
    """Delete a policy and re-evaluate the artifacts it applied to."""
    with transaction.atomic():
        globs = list(parse(policy.source).images) if policy.is_enabled else []
        name = policy.name
        audit.record("policy.delete", policy, {"version": policy.version, "sha256": policy.sha256})
        policy.delete()
        if globs:
            start_reevaluation(cause=Cause.POLICY, detail=f"policy {name} deleted", scope={"globs": globs})


def _as_json(parsed: core.ClusterImagePolicy) -> dict[str, Any]:
    data = asdict(parsed)
    data["warnings"] = [str(w) for w in parsed.warnings]
    return data


def public_key_changed(name: str) -> Reevaluation:
    """Re-evaluate the images of the policies that name this key (``key: {secretRef: {name: ...}}``)."""
    globs = sorted({g for p in enabled_policies() for a in p.authorities if a.key and a.key.name == name
                    for g in p.images})
    return start_reevaluation(cause=Cause.TRUST_ROOT, detail=f"public key {name} changed", scope={"globs": globs})


# -- facts: stored evidence as the core sees it ---------------------------------------------------------------


@dataclass(slots=True)
class _Row:
    """An artifact row and where it sits: enough to evaluate it and to combine an index."""

    pk: int
    digest: str
    repository: str
    source_id: int
    parent_id: int | None
    platform: str
    is_index: bool
    facts: core.ArtifactFacts


class StoredEvidence:
    """A :class:`core.Resolver` over the database: raw layers, trust roots, named keys and git source commits,
    loaded on demand."""

    def __init__(self) -> None:
        self._roots: dict[str, CoreTrustRoot | None] = {}
        self._keys: dict[str, bytes | None] = {}
        self._commits: dict[tuple[str, str], tuple[core.CommitFacts, ...] | None] = {}

    def layer(self, evidence: core.EvidenceFacts) -> SignedLayer | None:
        row = Evidence.objects.filter(pk=evidence.ref).values_list("media_type", "payload", "annotations").first()
        if row is None or not row[1]:
            return None
        return SignedLayer(row[0], bytes(row[1]), dict(row[2] or {}))

    def trust_root(self, name: str) -> CoreTrustRoot | None:
        if name not in self._roots:
            row = TrustRoot.objects.filter(name=name).first()
            try:
                self._roots[name] = trust_services.load(row) if row is not None else None
            except TrustRootError:
                self._roots[name] = None
        return self._roots[name]

    def key(self, name: str) -> bytes | None:
        """A named public key of the trust app (``key.secretRef.name`` names it)."""
        if name not in self._keys:
            pems = trust_services.public_key_pems([name])
            self._keys[name] = pems[0] if pems else None
        return self._keys[name]

    def source_commits(self, repository: str, sha: str) -> tuple[core.CommitFacts, ...] | None:
        """The commit in the git sources mirroring ``repository`` (``spec.source.requireSignedCommit``)."""
        from provenance.gitsources import services as git_services

        key = (repository, sha)
        if key not in self._commits:
            self._commits[key] = git_services.commit_facts(repository, sha)
        return self._commits[key]


def _chunks(ids: Sequence[int], size: int = CHUNK) -> Iterator[Sequence[int]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def _source_info() -> dict[int, tuple[str, str]]:
    """Per source: the registry host its artifacts live on (``oci-layout`` for a layout) and its trust root's name."""
    return {pk: (registry_host(kind, location), root)
            for pk, kind, location, root in Source.objects.values_list("pk", "kind", "location", "trust_root__name")}


def load_facts(artifact_ids: Sequence[int] | None, *, statement_types: Iterable[str] = ()) -> dict[int, _Row]:
    """Read artifacts and their evidence as :class:`core.ArtifactFacts`, in a few queries per 2,000 artifacts.

    ``artifact_ids=None`` reads every artifact. Statements are loaded only for attestations whose predicate type
    is in ``statement_types`` (the ones a Rego policy will read); checks only for evidence that did not verify.
    """
    sources = _source_info()
    wanted_types = sorted(set(statement_types))
    if artifact_ids is None:
        artifact_ids = list(Artifact.objects.order_by("pk").values_list("pk", flat=True))
    rows: dict[int, _Row] = {}
    for chunk in _chunks(list(artifact_ids)):
        base = list(Artifact.objects.filter(pk__in=chunk).values_list(
            "pk", "digest", "repository", "source_id", "parent_id", "platform", "media_type"))
        tags: dict[int, list[str]] = defaultdict(list)
        for artifact_id, name in Tag.objects.filter(artifact_id__in=chunk).values_list("artifact_id", "name"):
            tags[artifact_id].append(name)
        evidence = list(Evidence.objects.filter(artifact_id__in=chunk).values_list(
            "pk", "artifact_id", "kind", "outcome", "covers_digest", "digest", "identity", "issuer", "key",
            "predicate_type", "format", "tlog"))
        unverified = [e[0] for e in evidence if e[3] != "verified"]
        checks: dict[int, list[dict[str, Any]]] = {}
        for sub in _chunks(unverified):
            checks.update(Evidence.objects.filter(pk__in=sub).values_list("pk", "checks"))
        statements: dict[int, Any] = {}
        if wanted_types:
            statements = dict(Evidence.objects.filter(
                artifact_id__in=chunk, kind=Evidence.Kind.ATTESTATION, outcome="verified",
                predicate_type__in=wanted_types).values_list("pk", "statement"))
            # Valid attestations by someone other than the source's expected signer: the scan stored no statement,
            # so read it from the raw layer here, in bulk, rather than one query per attestation later.
            unread = [e[0] for e in evidence if e[2] == Evidence.Kind.ATTESTATION and e[3] != "verified"
                      and e[9] in wanted_types and _only_identity_failed(checks.get(e[0], ()))]
            for sub in _chunks(unread):
                for pk, media_type, payload, annotations in Evidence.objects.filter(pk__in=sub).values_list(
                        "pk", "media_type", "payload", "annotations"):
                    statements[pk] = core.statement_from_layer(SignedLayer(media_type, bytes(payload), annotations))
        by_artifact: dict[int, list[core.EvidenceFacts]] = defaultdict(list)
        roots = {pk: sources.get(source_id, ("", ""))[1] for pk, _, _, source_id, *_ in base}
        for (pk, artifact_id, kind, outcome, covers, digest, identity, issuer, key, predicate_type, fmt,
             tlog) in evidence:
            failures = [c for c in checks.get(pk, ()) if not c.get("ok")]
            by_artifact[artifact_id].append(core.EvidenceFacts(
                ref=pk, kind=kind, outcome=outcome, covers=covers, layer_digest=digest,
                trust_root=roots.get(artifact_id, ""), identity=identity, issuer=issuer, key=key,
                predicate_type=predicate_type, failed_stages=frozenset(str(c.get("stage")) for c in failures),
                reason=str(failures[0].get("message", "")) if failures else "",
                failure_code=str(failures[0].get("code", "")) if failures else "", format=fmt,
                statement=statements.get(pk), tlog=tlog,
            ))
        for pk, digest, repository, source_id, parent_id, platform, media_type in base:
            registry = sources.get(source_id, ("", ""))[0]
            rows[pk] = _Row(
                pk, digest, repository, source_id, parent_id, platform,
                media_type in {"application/vnd.oci.image.index.v1+json",
                               "application/vnd.docker.distribution.manifest.list.v2+json"},
                core.ArtifactFacts(pk, digest, core.image_names(registry, repository, digest, tags.get(pk, ())),
                                   tuple(by_artifact.get(pk, ()))),
            )
    return rows


def _only_identity_failed(checks: Iterable[dict[str, Any]]) -> bool:
    stages = {str(c.get("stage")) for c in checks if not c.get("ok")}
    return bool(stages) and stages <= {"identity"}


def _statement_types(policies: Iterable[core.ClusterImagePolicy]) -> set[str]:
    """The predicate types whose statements evaluation reads (loaded in bulk with the facts)."""
    policies = list(policies)
    types = {url for p in policies for a in p.authorities for r in a.attestations for url in r.predicate_urls}
    if any(p.source is not None for p in policies):  # a source requirement reads the SLSA provenance
        types |= {"https://slsa.dev/provenance/v0.2", "https://slsa.dev/provenance/v1"}
    return types


def _expand(artifact_ids: Iterable[int]) -> list[int]:
    """The artifacts and, so an index's combined status stays right, their parents and children."""
    ids = set(artifact_ids)
    for chunk in _chunks(sorted(ids)):
        ids.update(p for p in Artifact.objects.filter(pk__in=chunk, parent__isnull=False)
                   .values_list("parent_id", flat=True))
    for chunk in _chunks(sorted(ids)):
        ids.update(Artifact.objects.filter(parent_id__in=chunk).values_list("pk", flat=True))
    return sorted(ids)


def judge(rows: dict[int, _Row], policies: Sequence[core.ClusterImagePolicy], *,
          resolver: core.Resolver | None = None) -> dict[int, core.Verdict]:
    """Verdicts for ``rows``: platforms and single images first, then each index from itself and its platforms.

    An index's platforms must be in ``rows`` (see :func:`_expand`).
    """
    evaluator = core.Evaluator(policies, resolver=resolver or StoredEvidence())
    own = {pk: evaluator.evaluate(row.facts) for pk, row in rows.items()}
    children: dict[int, list[_Row]] = defaultdict(list)
    for row in rows.values():
        if row.parent_id is not None:
            children[row.parent_id].append(row)
    verdicts = dict(own)
    for pk, row in rows.items():
        if row.is_index:
            platforms = [(c.platform, own[c.pk]) for c in sorted(children.get(pk, ()), key=lambda c: c.platform)]
            verdicts[pk] = core.combine_index(own[pk], platforms)
    return verdicts


# -- evaluation with history -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvaluationSummary:
    evaluated: int
    changed: int
    counts: dict[str, int] = field(default_factory=dict)


def evaluate_artifacts(artifact_ids: Iterable[int], *, cause: str, detail: str = "") -> EvaluationSummary:
    """(Re-)evaluate artifacts from stored evidence under the enabled policies; store status and history.

    Call it after a scan stored new evidence (``cause="evidence"``). Parents and platforms of the given artifacts
    are evaluated too. Every status change (status or code) gets a :class:`TrustEvent` with ``cause``.
    """
    ids = _expand(artifact_ids)
    if not ids:
        return EvaluationSummary(0, 0)
    policies = enabled_policies()
    rows = load_facts(ids, statement_types=_statement_types(policies))
    verdicts = judge(rows, policies)
    return _store(verdicts, cause=cause, detail=detail)


def _store(verdicts: dict[int, core.Verdict], *, cause: str, detail: str) -> EvaluationSummary:
    now = timezone.now()
    changed = 0
    counts: Counter[str] = Counter()
    with transaction.atomic():
        for chunk in _chunks(sorted(verdicts)):
            existing = {t.artifact_id: t for t in ArtifactTrust.objects.filter(artifact_id__in=chunk)}
            creates, updates, events = [], [], []
            for pk in chunk:
                verdict = verdicts[pk]
                counts[str(verdict.status)] += 1
                row = existing.get(pk)
                before = (row.status, row.code) if row else (Status.PENDING, "")
                if before != (str(verdict.status), verdict.code):
                    changed += 1
                    events.append(TrustEvent(artifact_id=pk, at=now, cause=cause, detail=detail[:300],
                                             previous_status=before[0], status=str(verdict.status),
                                             code=verdict.code[:60], reason=verdict.reason))
                values = {"status": str(verdict.status), "code": verdict.code[:60], "reason": verdict.reason,
                          "details": verdict.as_dict(), "evaluated_at": now}
                if row is None:
                    creates.append(ArtifactTrust(artifact_id=pk, **values))
                else:
                    for name, value in values.items():
                        setattr(row, name, value)
                    updates.append(row)
            # A concurrent evaluation may have created the row meanwhile: its verdict came from the same evidence.
            ArtifactTrust.objects.bulk_create(creates, batch_size=500, ignore_conflicts=True)
            ArtifactTrust.objects.bulk_update(updates, ["status", "code", "reason", "details", "evaluated_at"],
                                              batch_size=500)
            TrustEvent.objects.bulk_create(events, batch_size=500)
    return EvaluationSummary(len(verdicts), changed, dict(counts))


# -- dry run -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flip:
    artifact_id: int
    digest: str
    repository: str
    platform: str
    before: str
    after: str
    code: str
    reason: str


@dataclass(slots=True)
class DryRunReport:
    policy: core.ClusterImagePolicy
    total: int
    before: dict[str, int]
    after: dict[str, int]
    flips: list[Flip]
    flip_count: int
    transitions: list[tuple[str, str, int]]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.name,
            "warnings": [str(w) for w in self.policy.warnings],
            "total": self.total,
            "before": self.before,
            "after": self.after,
            "flip_count": self.flip_count,
            "transitions": [{"from": a, "to": b, "count": n} for a, b, n in self.transitions],
            "flips": [asdict(f) for f in self.flips],
            "seconds": round(self.seconds, 3),
        }


def dry_run(source: str, *, replacing: Policy | None = None, enabled: bool = True) -> DryRunReport:
    """Evaluate a draft policy over the whole fleet from stored evidence, without saving anything.

    The draft joins the enabled policies (replacing ``replacing``, or a policy of the same name). Returns which
    artifacts would change status and why. Raises :class:`core.PolicyError` when the draft is refused.
    """
    started = time.perf_counter()
    draft = parse(source)
    policies = _draft_set(draft, replacing=replacing, enabled=enabled)
    rows = load_facts(None, statement_types=_statement_types(policies))
    verdicts = judge(rows, policies)
    current = dict(ArtifactTrust.objects.values_list("artifact_id", "status"))
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    transitions: Counter[tuple[str, str]] = Counter()
    flips: list[Flip] = []
    for pk in sorted(rows):
        old = current.get(pk, str(Status.PENDING))
        new = verdicts[pk]
        before[old] += 1
        after[str(new.status)] += 1
        if old != new.status:
            transitions[(old, str(new.status))] += 1
            if len(flips) < MAX_FLIPS_SHOWN:
                row = rows[pk]
                flips.append(Flip(pk, row.digest, row.repository, row.platform, old, str(new.status), new.code,
                                  new.reason))
    return DryRunReport(
        policy=draft, total=len(rows), before=dict(before), after=dict(after), flips=flips,
        flip_count=sum(transitions.values()),
        transitions=[(a, b, n) for (a, b), n in transitions.most_common()],
        seconds=time.perf_counter() - started,
    )


# -- background re-evaluation ------------------------------------------------------------------------------------


def start_reevaluation(*, cause: str, detail: str = "", scope: dict[str, Any] | None = None) -> Reevaluation:
    """Create a pending re-evaluation job and nudge a worker once it is committed."""
    from provenance.policies.tasks import reevaluate

    with transaction.atomic():
        job = Reevaluation.objects.create(cause=cause, detail=detail[:300], scope=scope or {})
        reevaluate.delay_on_commit(job.pk)
    return job


def claim_reevaluation(job_id: int) -> bool:
    """Move a pending job to running; False when another worker has it, it is finished, or it is gone."""
    return Reevaluation.objects.filter(pk=job_id, state=Reevaluation.State.PENDING).update(
        state=Reevaluation.State.RUNNING, started_at=timezone.now()) == 1


def fail_reevaluation(job_id: int, message: str) -> None:
    Reevaluation.objects.filter(pk=job_id).update(state=Reevaluation.State.FAILED, error=message[:5000],
                                                  finished_at=timezone.now())


def scoped_artifacts(scope: dict[str, Any]) -> list[int]:
    """The artifact ids a job's scope selects (every artifact for an empty scope)."""
    if not scope:
        return list(Artifact.objects.order_by("pk").values_list("pk", flat=True))
    ids: set[int] = set(int(i) for i in scope.get("artifact_ids", ()))
    if scope.get("source_ids"):
        ids.update(Artifact.objects.filter(source_id__in=scope["source_ids"]).values_list("pk", flat=True))
    globs = [core.compile_glob(g) for g in scope.get("globs", ())]
    if globs:
        sources = _source_info()
        tags: dict[int, list[str]] = defaultdict(list)
        for artifact_id, name in Tag.objects.values_list("artifact_id", "name"):
            tags[artifact_id].append(name)
        for pk, digest, repository, source_id in Artifact.objects.values_list("pk", "digest", "repository",
                                                                                "source_id"):
            names = core.image_names(sources.get(source_id, ("", ""))[0], repository, digest, tags.get(pk, ()))
            if any(g.match(n) for g in globs for n in names):
                ids.add(pk)
    return sorted(ids)


def run_reevaluation(job_id: int) -> None:
    """Re-evaluate a job's artifacts in chunks, recording progress on the row."""
    job = Reevaluation.objects.get(pk=job_id)
    ids = scoped_artifacts(job.scope)
    Reevaluation.objects.filter(pk=job_id).update(total=len(ids))
    done = changed = 0
    for chunk in _chunks(ids, 1000):
        summary = evaluate_artifacts(chunk, cause=job.cause, detail=job.detail)
        done += len(chunk)
        changed += summary.changed
        Reevaluation.objects.filter(pk=job_id).update(done=done, changed=changed)
    Reevaluation.objects.filter(pk=job_id).update(state=Reevaluation.State.DONE, finished_at=timezone.now())


def trust_root_changed(trust_root: TrustRoot) -> Reevaluation:
    """Re-evaluate what depends on a trust root: its sources' artifacts and the images of policies naming it."""
    globs = sorted({g for p in enabled_policies() if trust_root.name in p.trust_root_refs for g in p.images})
    source_ids = list(trust_root.sources.values_list("pk", flat=True))
    return start_reevaluation(cause=Cause.TRUST_ROOT, detail=f"trust root {trust_root.name} changed",
                              scope={"source_ids": source_ids, "globs": globs})


def schedule_reevaluation() -> Reevaluation:
    """The periodic re-evaluation of the whole fleet (beat schedule)."""
    return start_reevaluation(cause=Cause.SCHEDULE, detail="scheduled re-evaluation", scope={})


def sweep_stuck_reevaluations(*, older_than_seconds: int = 3600) -> int:
    cutoff = timezone.now() - dt.timedelta(seconds=older_than_seconds)
    return Reevaluation.objects.filter(state=Reevaluation.State.RUNNING, started_at__lt=cutoff).update(
        state=Reevaluation.State.FAILED, error="the worker stopped before finishing; it will run again on schedule",
        finished_at=timezone.now())


# -- pages: trust panel and coverage ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceCoverage:
    source: Source
    images: int
    signed: int
    provenance: int
    sbom: int
    unsigned_sbom: int
    unknown_signers: int
    trusted: int

    def share(self, value: int) -> int:
        return round(100 * value / self.images) if self.images else 0

    @property
    def shares(self) -> dict[str, int]:
        return {name: self.share(getattr(self, name)) for name in
                ("signed", "provenance", "sbom", "unsigned_sbom", "unknown_signers", "trusted")}

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source.name, "images": self.images, "signed": self.signed,
                "provenance": self.provenance, "sbom": self.sbom, "unsigned_sbom": self.unsigned_sbom,
                "unknown_signers": self.unknown_signers, "trusted": self.trusted, "percent": self.shares}


def coverage() -> list[SourceCoverage]:
    """Per source, over its images (an index counts with its platforms' evidence): how many have a valid signature,
    SLSA provenance, a signed SBOM (and an unsigned one only), a signer no enabled policy knows, and are trusted.

    Counted in the database (one aggregate query plus one for the signers), whatever the fleet's size."""
    def having(condition: Q) -> Q:
        # Two index lookups (its own evidence, its platforms'), not one OR that no index serves.
        return Q(Exists(Evidence.objects.filter(condition, artifact_id=OuterRef("pk")))) | Q(
            Exists(Evidence.objects.filter(condition, artifact__parent_id=OuterRef("pk"))))

    sbom = Q(kind="attestation", predicate_type__in=list(core.SBOM_PREDICATE_TYPES))
    signed_sbom = having(Q(valid=True) & sbom)
    unknown = [Q(identity=identity, issuer=issuer) for identity, issuer, _ in _unknown_signer_pairs()]
    counts = {
        "images": Count("pk"),
        "signed": Count("pk", filter=having(Q(valid=True, kind="signature"))),
        "provenance": Count("pk", filter=having(Q(valid=True, kind="attestation",
                                                  predicate_type__startswith=core.SLSA_PROVENANCE_PREFIX))),
        "sbom": Count("pk", filter=signed_sbom),
        "unsigned_sbom": Count("pk", filter=~signed_sbom & having(
            Q(outcome="unsigned") & (Q(kind="sbom") | sbom | Q(format__contains="sbom")))),
        "unknown_signers": Count("pk", filter=having(Q(valid=True) & functools.reduce(operator.or_, unknown)))
        if unknown else Value(0),
        "trusted": Count("pk", filter=Q(trust__status=Status.TRUSTED)),
    }
    totals = {row["source_id"]: row for row in Artifact.objects.filter(parent__isnull=True).order_by()
              .values("source_id").annotate(**counts)}
    result = []
    for source in Source.objects.all():
        c = totals.get(source.pk, {})
        result.append(SourceCoverage(source, *(int(c.get(name) or 0) for name in counts)))
    return result


def _unknown_signer_pairs(source: Source | None = None) -> list[tuple[str, str, int]]:
    """(identity, issuer, artifacts) of valid keyless signatures no enabled policy's identities accept."""
    policies = enabled_policies()
    query = Evidence.objects.filter(valid=True).exclude(identity="", issuer="")
    if source is not None:
        query = query.filter(artifact__source=source)
    pairs = query.order_by().values_list("identity", "issuer").annotate(n=Count("artifact_id", distinct=True))
    unknown = []
    for identity, issuer, n in pairs:
        facts = core.EvidenceFacts(ref=0, kind="signature", outcome="verified", covers="", layer_digest="",
                                   trust_root="", identity=identity, issuer=issuer)
        if not core.is_known_signer(policies, facts):
            unknown.append((identity, issuer, n))
    return unknown


def unknown_signers(source: Source | None = None, *, limit: int = 50) -> list[tuple[str, str, int]]:
    """The (identity, issuer, images) of valid keyless signers no enabled policy knows, most frequent first."""
    return sorted(_unknown_signer_pairs(source), key=lambda item: (-item[2], item[0], item[1]))[:limit]


def recent_jobs(limit: int = 10) -> list[Reevaluation]:
    return list(Reevaluation.objects.all()[:limit])
