"""May this image run? One answer for the CI gate (``GET /api/v1/check/``) and the Kubernetes admission webhook
(``POST /api/v1/admission/``), read from stored verdicts.

Nothing here fetches evidence or verifies a signature: scans and re-evaluations store verdicts
(:class:`ArtifactTrust`), and this module reads them. An answer is per *place*: the registry host and repository
the image is pulled from, and its digest. The same digest stored for another repository (or another registry, or
an OCI layout) is never used.

1. The reference is parsed; a tag is resolved to a digest, first from the tags the scans stored for that place,
   else by asking the registry (with the credentials of a source for that place).
2. The stored verdict for that place and digest is read. A verdict older than a change that may affect it (an
   applicable policy edited, added, disabled or deleted since, or a trust-root re-evaluation still running) is
   recomputed in memory from stored evidence, as the re-evaluation would, and not written.
3. ``allowed`` is true only when the verdict is *trusted* (or *warn*: only warn-mode policies refuse it); with
   ``policy=``, only when that policy passes (a warn-mode policy never denies). Anything else, and an image with
   no verdict, is not allowed.
4. A digest never seen in that place queues a scan (an image source for exactly that reference, with the
   settings of a source for the same repository) and is *pending*, not allowed.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F
from django.utils import timezone

from provenance.artifacts.models import Artifact, Tag
from provenance.core import policy as core
from provenance.core.errors import MalformedEvidenceError, NotFoundError, ProvenanceError
from provenance.core.names import DOCKER_HUB, normalize_registry
from provenance.core.oci import RegistryClient, validate_repository
from provenance.core.types import Digest, ImageRef
from provenance.policies import services as policy_services
from provenance.policies.models import ArtifactTrust, Cause, Policy, Reevaluation, Status
from provenance.sources import services as source_services
from provenance.sources.models import Scan, Source, registry_host
from provenance.trust import services as trust_services
from provenance.trust.models import TrustRoot

MAX_WAIT_SECONDS = 60
POLL_SECONDS = 0.25
# A scan the gate queued that finished without storing the image is not queued again before this.
RESCAN_AFTER = timedelta(minutes=5)
# Asking a registry which digest a tag names happens while a CI job or the API server waits: fail fast.
RESOLVE_TIMEOUT_SECONDS = 5.0
DEFAULT_TRUST_ROOT = "sigstore-public-good"

_ALLOWING = frozenset({Status.TRUSTED, Status.WARN})


def _host(registry: str) -> str:
    """The host a place is reached at: Docker Hub's aliases are one, served by registry-1.docker.io."""
    normalized = normalize_registry(registry)
    return "registry-1.docker.io" if normalized == DOCKER_HUB else normalized


@functools.lru_cache(maxsize=4096)
def _source_host(kind: str, location: str) -> str | None:
    """The registry host a source's artifacts were pulled from; None for an OCI layout (no registry)."""
    if kind not in {Source.Kind.IMAGE, Source.Kind.REPOSITORY}:
        return None
    return _host(registry_host(kind, location)) or None


def _is_same_place(source: Source, host: str) -> bool:
    return _source_host(source.kind, source.location) == host


# -- answers ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyAnswer:
    name: str
    mode: str  # "enforce" | "warn"
    result: str  # "pass" | "fail"
    reasons: tuple[str, ...] = ()
    matched: str = ""  # the authority that admitted it

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode, "result": self.result, "reasons": list(self.reasons),
                "matched": self.matched}


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one image: whether it may run, the stored verdict it comes from, and why."""

    image: str  # as asked
    reference: str  # normalized, with the digest when known
    digest: str
    allowed: bool
    status: str  # a policies Status, or "unknown" (never seen) / "error" (could not be answered)
    code: str
    reason: str
    pending: bool = False
    resolved: str = ""  # how the digest was found: "digest", "stored_tag", "registry"
    verified_at: datetime | None = None  # when the evidence was last verified (the scan)
    evaluated_at: datetime | None = None  # when the policy verdict was computed
    is_recomputed: bool = False  # the stored verdict was out of date and was recomputed from stored evidence
    policies: tuple[PolicyAnswer, ...] = ()
    platforms: tuple[dict[str, str], ...] = ()
    scan: int | None = None  # the scan queued (or already running) for an unknown digest

    @property
    def warnings(self) -> list[str]:
        """Failures of warn-mode policies (they never deny)."""
        return [f"{p.name} (warn mode): {'; '.join(p.reasons) or 'not passed'}" for p in self.policies
                if p.mode == Policy.Mode.WARN and p.result == "fail"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image, "reference": self.reference, "digest": self.digest or None,
            "allowed": self.allowed, "status": self.status, "code": self.code, "reason": self.reason,
            "pending": self.pending, "resolved": self.resolved or None, "verified_at": self.verified_at,
            "evaluated_at": self.evaluated_at, "recomputed": self.is_recomputed,
            "policies": [p.as_dict() for p in self.policies], "platforms": list(self.platforms),
            "warnings": self.warnings, "scan": self.scan,
        }

    def as_text(self) -> str:
        """One line a CI log shows (``allowed``/``denied``/``pending``), then one per policy."""
        word = "allowed" if self.allowed else ("pending" if self.pending else "denied")
        lines = [f"{word} {_printable(self.reference)}: {self.status} ({self.code}): {_printable(self.reason)}"]
        for p in self.policies:
            why = f": {_printable('; '.join(p.reasons))}" if p.reasons else ""
            lines.append(f"  policy {p.name} ({p.mode}): {p.result}{why}")
        return "\n".join(lines) + "\n"


def _printable(text: str, limit: int = 2000) -> str:
    """Evidence-derived text on one line, without control characters, bounded."""
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "…"


# -- 1. the reference -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed reference and the digest it names (None: a tag not resolved)."""

    image: str
    ref: ImageRef
    host: str
    digest: Digest | None
    resolved: str


def parse_image(image: object) -> ImageRef:
    """Parse ``registry/repository:tag`` or ``registry/repository@sha256:<hex>``; raises
    :class:`MalformedEvidenceError` ``image_reference_invalid``."""
    if not isinstance(image, str) or not image.strip():
        raise MalformedEvidenceError("give the image as ?image=registry/repository:tag or "
                                     "registry/repository@sha256:<hex>", code="image_reference_invalid")
    try:
        ref = ImageRef.parse(image)
        validate_repository(ref.repository)
        return ref
    except MalformedEvidenceError as err:
        raise MalformedEvidenceError(f"{err.message}: expected registry/repository:tag or "
                                     "registry/repository@sha256:<hex>", code="image_reference_invalid") from err


def resolve(image: str, *, resolve_tags: bool = True) -> Target:
    """Parse ``image`` and find its digest (a digest in the reference wins over its tag, as for a runtime).

    A tag is resolved from the tags stored for that place, else by asking the registry; ``resolve_tags=False``
    leaves it unresolved. Raises :class:`MalformedEvidenceError` for a bad reference, :class:`NotFoundError`
    ``image_not_found`` when the registry has no such tag, and registry errors (access, transient) as they come.
    """
    ref = parse_image(image)
    host = _host(ref.registry)
    if ref.digest is not None:
        return Target(image, ref, host, ref.digest, "digest")
    if not resolve_tags:
        return Target(image, ref, host, None, "")
    assert ref.tag is not None
    stored = _stored_tag(host, ref.repository, ref.tag)
    if stored is not None:
        return Target(image, ref, host, stored, "stored_tag")
    digest = _registry_digest(host, ref)
    if digest is None:
        raise NotFoundError(f"{ref} does not exist in its registry", code="image_not_found")
    return Target(image, ref, host, digest, "registry")


def _stored_tag(host: str, repository: str, tag: str) -> Digest | None:
    rows = (Tag.objects.filter(name=tag, artifact__repository=repository, artifact__parent__isnull=True)
            .order_by("-last_seen", "-pk").values_list("artifact__digest", "artifact__source__kind",
                                                       "artifact__source__location")[:20])
    for digest, kind, location in rows:
        if _source_host(kind, location) == host:
            return Digest.parse(digest)
    return None


def _place_sources(host: str, repository: str) -> tuple[list[Source], list[Source]]:
    """Registry sources for this repository, and others on the same host, most recently scanned first."""
    last = repository.rsplit("/", 1)[-1]
    candidates = (Source.objects.filter(kind__in=[Source.Kind.IMAGE, Source.Kind.REPOSITORY],
                                        location__contains=last)
                  .select_related("trust_root")
                  .order_by(F("last_scanned_at").desc(nulls_last=True), "-pk")[:200])
    same, host_only = [], []
    for source in candidates:
        try:
            ref = ImageRef.parse(source.location)
        except MalformedEvidenceError:
            continue
        if _host(ref.registry) != host:
            continue
        (same if ref.repository == repository else host_only).append(source)
    if not host_only:
        host_only = [s for s in Source.objects.filter(kind__in=[Source.Kind.IMAGE, Source.Kind.REPOSITORY])
                     .exclude(pk__in=[s.pk for s in same]).order_by("-pk")[:200] if _is_same_place(s, host)][:1]
    return same, host_only


def _client(host: str, same: list[Source], host_only: list[Source]) -> RegistryClient:
    """A client for ``host`` with a short timeout: credentials only from a source for the same repository (never
    from a source for another one), TLS settings from any source on the host."""
    template = same[0] if same else (host_only[0] if host_only else None)
    password = source_services.registry_password(same[0]) if same else None
    return RegistryClient(
        host,
        username=same[0].username if password is not None else None,
        password=password,
        insecure=template.is_insecure if template is not None else False,
        ca_certificates=(template.ca_certificates or None) if template is not None else None,
        timeout=min(RESOLVE_TIMEOUT_SECONDS, float(settings.PROVENANCE_HTTP_TIMEOUT)),
        retries=1,
        **source_services.registry_limits(),  # image names come from CI jobs and clusters: the egress rules hold
    )


def _registry_digest(host: str, ref: ImageRef) -> Digest | None:
    same, host_only = _place_sources(host, ref.repository)
    with _client(host, same, host_only) as client:
        return client.head_manifest(ref.repository, ref.tag or ref.digest or "latest")


# -- 2. the stored verdict --------------------------------------------------------------------------------------


def _stored_artifact(host: str, repository: str, digest: str) -> Artifact | None:
    """The artifact for this place and digest (most recently verified, when several sources hold it)."""
    rows = (Artifact.objects.filter(repository=repository, digest=digest)
            .select_related("source", "trust")
            .only("pk", "digest", "repository", "media_type", "checked_at", "status", "source__kind",
                  "source__location", "trust__status", "trust__code", "trust__reason", "trust__details",
                  "trust__evaluated_at")
            .order_by(F("checked_at").desc(nulls_last=True), "-pk")[:20])
    for artifact in rows:
        if _is_same_place(artifact.source, host):
            return artifact
    return None


def _trust(artifact: Artifact) -> ArtifactTrust | None:
    try:
        return artifact.trust
    except ArtifactTrust.DoesNotExist:
        return None


@dataclass(slots=True)
class _Snapshot:
    """What current verdicts depend on: the enabled policies and unfinished trust-root re-evaluations."""

    policies: dict[str, tuple[str, datetime, str]] = field(default_factory=dict)  # name -> (mode, updated, yaml)
    trust_root_job: datetime | None = None  # the newest unfinished trust-root re-evaluation

    @classmethod
    def load(cls) -> _Snapshot:
        policies = {name: (mode, updated, source) for name, mode, updated, source in
                    Policy.objects.filter(is_enabled=True).values_list("name", "mode", "updated_at", "source")}
        job = (Reevaluation.objects.filter(cause=Cause.TRUST_ROOT, state__in=[Reevaluation.State.PENDING,
                                                                            Reevaluation.State.RUNNING])
               .order_by("-created_at").values_list("created_at", flat=True).first())
        return cls(policies, job)

    def is_stale(self, artifact: Artifact, trust: ArtifactTrust) -> bool:
        """Whether something that may change this verdict happened after it was computed."""
        at = trust.evaluated_at
        if at is None:
            return True
        if self.trust_root_job is not None and self.trust_root_job > at:
            return True
        named = {p.get("policy") for p in (trust.details or {}).get("policies", ())}
        if named - set(self.policies):
            return True  # a policy it was judged by is gone or disabled
        changed = [(name, source) for name, (_, updated, source) in self.policies.items() if updated > at]
        if not changed:
            return False
        if any(name in named for name, _ in changed):
            return True
        names = _image_names(artifact)
        return any(_applies(source, names) for _, source in changed)


def _applies(source: str, names: tuple[str, ...]) -> bool:
    try:
        return policy_services.parse(source).applies_to(names)
    except ProvenanceError:
        return True  # an unreadable policy covers every image it may cover: recompute


def _image_names(artifact: Artifact) -> tuple[str, ...]:
    """The names the evaluator matched policy globs against (see policies.services.load_facts)."""
    tags = list(Tag.objects.filter(artifact_id=artifact.pk).values_list("name", flat=True))
    return core.image_names(artifact.source.registry_host, artifact.repository, artifact.digest, tags)


def _recompute(artifact: Artifact) -> tuple[core.Verdict, list[_Child]]:
    """The verdict under the enabled policies now, from stored evidence (nothing is written)."""
    ids = [artifact.pk, *Artifact.objects.filter(parent_id=artifact.pk).values_list("pk", flat=True)]
    policies = policy_services.enabled_policies()
    wanted = {url for p in policies for a in p.authorities for r in a.attestations for url in r.predicate_urls}
    rows = policy_services.load_facts(ids, statement_types=wanted)
    verdicts = policy_services.judge(rows, policies)
    children = [_Child(rows[pk].platform, str(verdicts[pk].status), verdicts[pk].as_dict()) for pk in ids[1:]
                if pk in verdicts]
    return verdicts[artifact.pk], children


@dataclass(frozen=True, slots=True)
class _Child:
    """A platform of an index and its verdict (``status`` empty: not evaluated yet)."""

    platform: str
    status: str
    details: dict[str, Any]


# -- 3. allowed? ------------------------------------------------------------------------------------------------


def _answers(details: dict[str, Any]) -> tuple[PolicyAnswer, ...]:
    answers = []
    for p in details.get("policies", ()):
        reasons = tuple(str(f.get("message", "")) for f in p.get("findings", ()))
        answers.append(PolicyAnswer(str(p.get("policy", "")), str(p.get("mode", "enforce")),
                                    "pass" if p.get("allowed") else "fail", reasons, str(p.get("matched", ""))))
    return tuple(answers)


@dataclass(frozen=True, slots=True)
class _Verdict:
    status: str
    code: str
    reason: str
    details: dict[str, Any]
    evaluated_at: datetime | None


def decide(target: Target, *, policy: str | None = None, queue: bool = True,
           snapshot: _Snapshot | None = None) -> Decision:
    """The answer for a resolved target from the stored verdict (see the module docstring).

    ``queue=False`` never queues a scan for an unknown digest (dry-run admission requests). Raises
    :class:`NotFoundError` ``policy_not_found`` when ``policy`` names no enabled policy.
    """
    snapshot = snapshot or _Snapshot.load()
    if policy is not None and policy not in snapshot.policies:
        raise NotFoundError(f"no enabled policy is named {policy[:253]!r}", code="policy_not_found")
    ref = target.ref
    if target.digest is None:
        return Decision(target.image, str(ref), "", False, "unknown", "tag_not_resolved",
                        f"{ref} names a tag, not a digest, and tags are not resolved here: use "
                        f"{ref.repo_name}@sha256:<digest>")
    digest = str(target.digest)
    reference = str(ref.with_digest(target.digest))
    artifact = _stored_artifact(target.host, ref.repository, digest)
    if artifact is None:
        return _unknown(target, reference, queue=queue)
    trust = _trust(artifact)
    if trust is None or trust.status == Status.PENDING:
        return Decision(target.image, reference, digest, False, "pending", "not_evaluated",
                        "the image was found and its evidence is being verified; no verdict yet", pending=True,
                        resolved=target.resolved, verified_at=artifact.checked_at)
    recomputed = snapshot.is_stale(artifact, trust)
    children: list[_Child] | None = None
    if recomputed:
        fresh, children = _recompute(artifact)
        verdict = _Verdict(str(fresh.status), fresh.code, fresh.reason, fresh.as_dict(), timezone.now())
    else:
        verdict = _Verdict(trust.status, trust.code, trust.reason, trust.details or {}, trust.evaluated_at)
    answers = _answers(verdict.details)
    platforms = tuple({"platform": str(p.get("platform", "")), "status": str(p.get("status", "")),
                       "note": str(p.get("note", ""))} for p in verdict.details.get("platforms", ()))
    base = {"image": target.image, "reference": reference, "digest": digest, "resolved": target.resolved,
            "verified_at": artifact.checked_at, "evaluated_at": verdict.evaluated_at, "is_recomputed": recomputed,
            "policies": answers, "platforms": platforms}
    if policy is None:
        return Decision(allowed=verdict.status in _ALLOWING, status=verdict.status, code=verdict.code,
                        reason=verdict.reason, **base)
    return _under_policy(policy, artifact, verdict, children, base)


def _under_policy(name: str, artifact: Artifact, verdict: _Verdict, children: list[_Child] | None,
                  base: dict[str, Any]) -> Decision:
    """Allowed under one policy: it applies and passes (on the index and every platform with its own
    evidence), or it is a warn-mode policy."""
    answer = next((p for p in base["policies"] if p.name == name), None)
    base["policies"] = (answer,) if answer is not None else ()
    if answer is None:
        return Decision(allowed=False, status=Status.UNTRUSTED, code="policy_not_applicable",
                        reason=f"the policy {name} does not apply to this image", **base)
    failures = [] if answer.result == "pass" else [f"{name}: {'; '.join(answer.reasons) or 'not passed'}"]
    if artifact.is_index and answer.result == "pass":
        failures.extend(_platform_failures(name, artifact, children))
    if not failures:
        return Decision(allowed=True, status=Status.TRUSTED, code="trusted", reason=f"passes {name}", **base)
    if answer.mode == Policy.Mode.WARN:
        return Decision(allowed=True, status=Status.WARN, code="warn", reason="warn mode: " + "; ".join(failures),
                        **base)
    return Decision(allowed=False, status=Status.UNTRUSTED, code="policy_failed", reason="; ".join(failures), **base)


def _platform_failures(name: str, index: Artifact, children: list[_Child] | None) -> list[str]:
    """Platforms of a passing index that fail the policy on evidence of their own (see core.combine_index:
    a platform without signed evidence is covered by the index signature)."""
    if children is None:
        children = [_Child(platform, status or "", details or {}) for platform, status, details in
                    Artifact.objects.filter(parent_id=index.pk).order_by("platform", "pk")
                    .values_list("platform", "trust__status", "trust__details")]
    failures = []
    for child in children:
        where = f"platform {child.platform or '?'}"
        if not child.status or child.status == Status.PENDING:
            failures.append(f"{where}: not evaluated yet")
            continue
        if child.status == Status.UNSIGNED:
            continue
        result = next((p for p in child.details.get("policies", ()) if p.get("policy") == name), None)
        if result is not None and not result.get("allowed"):
            messages = "; ".join(str(f.get("message", "")) for f in result.get("findings", ()))
            failures.append(f"{where}: {messages or 'not passed'}")
    return failures


# -- 4. never seen: queue a scan --------------------------------------------------------------------------------


def _unknown(target: Target, reference: str, *, queue: bool) -> Decision:
    assert target.digest is not None
    digest = str(target.digest)
    scan = _queue_scan(target) if queue else _pending_scan(target)
    if scan is not None and scan.is_finished:
        why = f"{scan.error_code}: {scan.error}" if scan.error else "it did not store this image"
        return Decision(target.image, reference, digest, False, "error", "scan_failed",
                        f"scan #{scan.pk} of {reference} ended without a verdict ({_printable(why, 500)}); it is "
                        f"tried again after {int(RESCAN_AFTER.total_seconds() // 60)} minutes",
                        resolved=target.resolved, scan=scan.pk)
    where = f"scan #{scan.pk} queued" if scan is not None else "no scan queued (dry run)"
    return Decision(target.image, reference, digest, False, "unknown", "not_scanned",
                    f"Provenance has not verified this image yet ({where})", pending=True,
                    resolved=target.resolved, scan=scan.pk if scan is not None else None)


def _gate_source_name(reference: str) -> str:
    name = f"gate {reference}"
    return name if len(name) <= 200 else f"gate sha256:{hashlib.sha256(reference.encode()).hexdigest()}"


def _pending_scan(target: Target) -> Scan | None:
    assert target.digest is not None
    reference = f"{target.ref.repo_name}@{target.digest}"
    return Scan.objects.filter(source__name=_gate_source_name(reference)).order_by("-created_at", "-pk").first()


def _queue_scan(target: Target) -> Scan:
    """Start (or reuse) the scan of an image source for exactly this digest; the source takes its settings (trust
    root, expected signer, credentials, TLS) from a source for the same repository. Raises
    :class:`NotFoundError` ``image_not_found`` when the registry does not have the digest (nothing is created)."""
    assert target.digest is not None
    ref = target.ref
    reference = f"{ref.repo_name}@{target.digest}"
    name = _gate_source_name(reference)
    source = Source.objects.filter(name=name).first()
    if source is not None:
        last = source.scans.order_by("-created_at", "-pk").first()
        if last is not None and (not last.is_finished or last.created_at > timezone.now() - RESCAN_AFTER):
            return last
        return source_services.start_scan(source)
    same, host_only = _place_sources(target.host, ref.repository)
    with _client(target.host, same, host_only) as client:
        if client.head_manifest(ref.repository, target.digest) is None:
            raise NotFoundError(f"{reference} does not exist in its registry", code="image_not_found")
    template = same[0] if same else None
    settings_from = template or (host_only[0] if host_only else None)
    source = source_services.create_source(
        name=name, kind=Source.Kind.IMAGE, location=reference, trust_root=_trust_root(template),
        expected_identity=template.expected_identity if template else "",
        expected_identity_regexp=template.expected_identity_regexp if template else "",
        expected_issuer=template.expected_issuer if template else "",
        is_insecure=settings_from.is_insecure if settings_from else False,
        ignore_tlog=template.ignore_tlog if template else False,
        signature_repository=template.signature_repository if template else "",
        ca_certificates=settings_from.ca_certificates if settings_from else "",
    )
    if template is not None and template.has_credentials:
        # The ciphertext is copied as is: the same registry account reads the same repository.
        Source.objects.filter(pk=source.pk).update(username=template.username,
                                                   encrypted_password=template.encrypted_password)
    return source_services.start_scan(source)


def _trust_root(template: Source | None) -> TrustRoot:
    if template is not None:
        return template.trust_root
    trust_services.ensure_builtin_roots()
    return TrustRoot.objects.get(name=DEFAULT_TRUST_ROOT)


# -- the CI gate ------------------------------------------------------------------------------------------------


def check_image(image: str, *, policy: str | None = None, wait: float = 0, resolve_tags: bool = True,
                queue: bool = True) -> Decision:
    """May ``image`` run? Resolve it, answer from the stored verdict; with ``wait`` (seconds, at most
    :data:`MAX_WAIT_SECONDS`) poll the database while the answer is pending."""
    target = resolve(image, resolve_tags=resolve_tags)
    decision = decide(target, policy=policy, queue=queue)
    deadline = time.monotonic() + min(max(wait, 0), MAX_WAIT_SECONDS)
    while decision.pending and time.monotonic() < deadline:
        time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0)))
        decision = decide(target, policy=policy, queue=False)
    return decision


# -- Kubernetes admission ---------------------------------------------------------------------------------------

ADMISSION_API_VERSION = "admission.k8s.io/v1"
MAX_IMAGES = 256
MAX_MESSAGE_CHARS = 4000
MAX_WARNING_CHARS = 256  # the API server truncates longer warnings
MAX_WARNINGS = 20

# (group, kind) -> where the pod spec is; ReplicationController is core v1 with a template like ReplicaSet's.
_POD_SPEC_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): ("spec",),
    ("", "ReplicationController"): ("spec", "template", "spec"),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
# Sub-resources that carry images: ``kubectl debug`` adds ephemeral containers through pods/ephemeralcontainers.
_IMAGE_SUBRESOURCES = frozenset({"", "ephemeralcontainers"})


def admission_setting(name: str, choices: Iterable[str]) -> str:
    value = str(getattr(settings, name, "")).strip().lower()
    if value not in set(choices):
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(sorted(choices))}, not {value!r}")
    return value


def _invalid(message: str) -> MalformedEvidenceError:
    return MalformedEvidenceError(message, code="admission_review_invalid")


def _at(document: Any, path: Iterable[str], what: str) -> Any:
    node = document
    for key in path:
        if not isinstance(node, dict):
            raise _invalid(f"{what}: {key} is not inside an object")
        node = node.get(key)
    return node


def pod_images(kind: dict[str, Any], obj: Any) -> list[tuple[str, str]]:
    """``(container path, image)`` for every container, init container and ephemeral container of a Pod or of
    the pod template of a workload; raises ``admission_review_invalid`` for a malformed object."""
    key = (str(kind.get("group", "")), str(kind.get("kind", "")))
    path = _POD_SPEC_PATHS[key]
    spec = _at(obj, path, key[1])
    if not isinstance(spec, dict):
        raise _invalid(f"{key[1]} has no pod spec at {'.'.join(path)}")
    images: list[tuple[str, str]] = []
    for list_name in _CONTAINER_LISTS:
        containers = spec.get(list_name) or []
        if not isinstance(containers, list):
            raise _invalid(f"{'.'.join(path)}.{list_name} is not a list")
        for i, container in enumerate(containers):
            if not isinstance(container, dict):
                raise _invalid(f"{'.'.join(path)}.{list_name}[{i}] is not an object")
            name = container.get("name") if isinstance(container.get("name"), str) else str(i)
            image = container.get("image")
            images.append((f"{list_name}[{name[:63]}]", image if isinstance(image, str) else ""))
    if len(images) > MAX_IMAGES:
        raise _invalid(f"{len(images)} containers; at most {MAX_IMAGES} are checked")
    return images


@dataclass(slots=True)
class _ImageVerdict:
    is_allowed: bool
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


def _admit_image(image: str, *, unknown: str, tags: str, dry_run: bool, snapshot: _Snapshot) -> _ImageVerdict:
    if not image:
        return _ImageVerdict(False, "no image")
    try:
        target = resolve(image, resolve_tags=tags == "resolve")
        if target.digest is None:
            return _ImageVerdict(False, "a tag without a digest is not admitted (PROVENANCE_ADMISSION_TAGS=deny); "
                                        "use image@sha256:<digest>")
        decision = decide(target, queue=not dry_run, snapshot=snapshot)
    except MalformedEvidenceError as err:
        return _ImageVerdict(False, f"not an image reference: {err.message}")
    except NotFoundError as err:
        return _ImageVerdict(False, err.message)
    except ProvenanceError as err:  # the registry could not be asked: the image is unknown, not trusted
        if unknown == "allow":
            return _ImageVerdict(True, warnings=[f"{image}: admitted unverified, its digest could not be resolved "
                                                 f"({err.code}: {err.message})"])
        return _ImageVerdict(False, f"could not resolve its digest ({err.code}: {err.message})")
    warnings = [f"{image}: {w}" for w in decision.warnings]
    if decision.allowed:
        return _ImageVerdict(True, warnings=warnings)
    if decision.pending and unknown == "allow":
        return _ImageVerdict(True, warnings=[*warnings, f"{image}: admitted unverified "
                                                        f"(PROVENANCE_ADMISSION_UNKNOWN=allow): {decision.reason}"])
    return _ImageVerdict(False, f"{decision.status}: {decision.reason}", warnings)


def review_admission(review: Any) -> dict[str, Any]:
    """Answer an ``admission.k8s.io/v1`` AdmissionReview for Pods and workload pod templates.

    Returns the AdmissionReview response (same ``uid``): ``allowed``, a 403 ``status`` naming each refused image
    and why, and ``warnings`` for warn-mode policy failures and images admitted unverified. Settings:
    ``PROVENANCE_ADMISSION_UNKNOWN`` (``deny``, or ``allow`` and queue a scan) and ``PROVENANCE_ADMISSION_TAGS``
    (``resolve`` a tag as the gate does, or ``deny`` it). A dry-run request queues nothing. Raises
    :class:`MalformedEvidenceError` ``admission_review_invalid`` for a document that is not an AdmissionReview.
    """
    unknown = admission_setting("PROVENANCE_ADMISSION_UNKNOWN", ("deny", "allow"))
    tags = admission_setting("PROVENANCE_ADMISSION_TAGS", ("resolve", "deny"))
    if not isinstance(review, dict):
        raise _invalid("the body is not a JSON object")
    if review.get("apiVersion") != ADMISSION_API_VERSION or review.get("kind") != "AdmissionReview":
        raise _invalid(f"expected apiVersion {ADMISSION_API_VERSION} kind AdmissionReview, got "
                       f"{str(review.get('apiVersion'))[:80]!r} {str(review.get('kind'))[:80]!r}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise _invalid("request is missing")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > 128:
        raise _invalid("request.uid is missing")
    kind = request.get("kind")
    if not isinstance(kind, dict) or not isinstance(kind.get("kind"), str):
        raise _invalid("request.kind is missing")
    operation = request.get("operation")
    if operation not in {"CREATE", "UPDATE", "DELETE", "CONNECT"}:
        raise _invalid(f"request.operation {str(operation)[:40]!r} is not CREATE, UPDATE, DELETE or CONNECT")

    def answer(allowed: bool, *, message: str = "", warnings: Iterable[str] = ()) -> dict[str, Any]:
        response: dict[str, Any] = {"uid": uid, "allowed": allowed}
        if not allowed:
            response["status"] = {"code": 403, "reason": "Forbidden", "message": message[:MAX_MESSAGE_CHARS]}
        shown = list(dict.fromkeys(_printable(w, MAX_WARNING_CHARS) for w in warnings))[:MAX_WARNINGS]
        if shown:
            response["warnings"] = shown
        return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}

    key = (str(kind.get("group", "")), kind["kind"])
    subresource = str(request.get("subResource") or "")
    if operation not in {"CREATE", "UPDATE"} or subresource not in _IMAGE_SUBRESOURCES:
        return answer(True)
    if key not in _POD_SPEC_PATHS:
        return answer(True, warnings=[f"Provenance does not check {key[1]} objects"])
    obj = request.get("object")
    if not isinstance(obj, dict):
        raise _invalid("request.object is missing")
    images = pod_images(kind, obj)
    snapshot = _Snapshot.load()
    dry_run = request.get("dryRun") is True
    verdicts: dict[str, _ImageVerdict] = {}
    for _, image in images:
        if image not in verdicts:
            verdicts[image] = _admit_image(image, unknown=unknown, tags=tags, dry_run=dry_run, snapshot=snapshot)
    denied = []
    for container, image in images:
        verdict = verdicts[image]
        if not verdict.is_allowed:
            denied.append(f"{container} {_printable(image, 300) or '(none)'}: {_printable(verdict.reason, 1000)}")
    warnings = [w for v in verdicts.values() for w in v.warnings]
    if denied:
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        name = _printable(str(metadata.get("name") or metadata.get("generateName") or ""), 253)
        message = f"Provenance denied {key[1]} {name}: " + " | ".join(denied)
        return answer(False, message=message, warnings=warnings)
    return answer(True, warnings=warnings)
