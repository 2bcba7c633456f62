"""Evidence discovery: find every signature, attestation and SBOM a registry holds for an image.

Where evidence lives (see ``shared/notes/oci-formats.md``):

* cosign legacy tags ``sha256-<hex>.sig``, ``.att`` and ``.sbom``, in the image's repository or in a separate
  signature repository (as ``COSIGN_REPOSITORY`` allows);
* OCI 1.1 referrers: the referrers API, and always the referrers tag schema ``sha256-<hex>`` (an index) as
  well, since most registries lack the API and evidence written before a registry gained it stays in the tag.
  Each referrer manifest is opened and judged by its own content: the fallback index's ``artifactType`` is not
  trusted (cosign writes the config media type there). Sigstore bundles v0.1-v0.3, Notation signatures and
  anything else attached are recognised and recorded as such;
* BuildKit's unsigned in-index provenance and SBOM (``vnd.docker.reference.type: attestation-manifest``).

Works over any :class:`provenance.core.oci.Registry` (a registry client or an OCI layout). For an index, the
index and every platform manifest are artifacts, and each piece of evidence records the digest and level it
covers. One image's requests overlap on a small thread pool. What could not be read is recorded as a problem or
as unreadable evidence, never silently dropped; transient and authentication errors propagate, because an
image whose evidence could not be looked at must not be reported as unsigned.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from provenance.core.errors import (
    AccessError,
    AuthenticationError,
    MalformedEvidenceError,
    NotFoundError,
    ProvenanceError,
    TransientError,
)
from provenance.core.oci import Descriptor, Manifest, Registry, load_json_object
from provenance.core.types import (
    INDEX_MEDIA_TYPES,
    CheckResult,
    Digest,
    Format,
    Kind,
    Level,
    MediaType,
    SignedLayer,
    Stage,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "Discovery",
    "Format",
    "FoundEvidence",
    "Kind",
    "Level",
    "ManifestNode",
    "build_tree",
    "discover",
    "discover_manifest",
    "evidence_fingerprint",
    "find_cosign_evidence",
    "find_referrers",
    "fingerprint_of",
    "image_created",
]

MAX_SIGNATURE_LAYERS = 64
MAX_SIGNATURE_LAYER_BYTES = 1024 * 1024  # a simple-signing payload, a Notation JWS/COSE envelope
MAX_ATTESTATION_BYTES = 8 * 1024 * 1024  # a DSSE envelope or a Sigstore bundle (SBOM attestations are large)
MAX_SBOM_BYTES = 16 * 1024 * 1024  # an unsigned SBOM attachment
MAX_PLATFORMS = 64
MAX_REFERRERS = 128
DEFAULT_CONCURRENCY = 8

COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
NOTATION_ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
IN_TOTO_MEDIA_TYPE = "application/vnd.in-toto+json"
BUILDKIT_REFERENCE_TYPE = "vnd.docker.reference.type"
BUILDKIT_REFERENCE_DIGEST = "vnd.docker.reference.digest"
BUILDKIT_ATTESTATION = "attestation-manifest"
SBOM_MEDIA_TYPES = frozenset({
    "text/spdx+json", "application/spdx+json", "text/spdx", "application/vnd.cyclonedx+json",
    "application/vnd.cyclonedx+xml", "application/vnd.cyclonedx", "application/vnd.syft+json",
})
_BUNDLE_MEDIA_TYPE = re.compile(
    r"^application/vnd\.dev\.sigstore\.bundle(?:\.v0\.[1-9]\+json|\+json;\s*version=0\.[1-9])$"
)
_PREDICATE_ANNOTATIONS = ("predicateType", "dev.sigstore.bundle.predicateType", "in-toto.io/predicate-type")


def is_bundle_media_type(media_type: str) -> bool:
    """Whether ``media_type`` names a Sigstore bundle (v0.1, v0.2 or v0.3 spelling)."""
    return bool(_BUNDLE_MEDIA_TYPE.match(media_type or ""))


@dataclass(frozen=True, slots=True)
class FoundEvidence:
    """One piece of evidence found for ``covers``; ``problem`` is set when it is unreadable.

    ``kind`` is "signature", "attestation" or "sbom"; ``format`` one of :class:`Format`. ``digest`` is the digest
    of the layer (blob) holding it, ``manifest`` that of the manifest that lists the layer. ``predicate`` is the
    predicate type read from the (unverified) content, when discovery had to read it to classify the evidence.
    """

    kind: Kind
    format: Format
    location: str  # where it was found, e.g. "repo:sha256-<hex>.sig"
    covers: Digest
    level: Level
    digest: Digest
    layer: SignedLayer | None = None
    problem: CheckResult | None = None
    manifest: Digest | None = None
    predicate: str = ""

    @property
    def predicate_type(self) -> str:
        if self.predicate:
            return self.predicate
        if self.layer is None:
            return ""
        for key in _PREDICATE_ANNOTATIONS:
            if self.layer.annotations.get(key):
                return self.layer.annotations[key]
        return ""


@dataclass(frozen=True, slots=True)
class ManifestNode:
    """An artifact: a manifest digest, its media type, and for an index its platform manifests."""

    digest: Digest
    media_type: str
    level: Level
    platform: str = ""
    children: tuple[ManifestNode, ...] = ()


@dataclass(slots=True)
class Discovery:
    """Everything found about one image: the manifest tree, its evidence, and what went wrong on the way.

    ``state`` maps each place looked at to what was there (a manifest digest, ``absent``, ...): two discoveries
    with the same :attr:`fingerprint` saw the same evidence, so it need not be fetched again.
    """

    root: ManifestNode
    evidence: list[FoundEvidence] = field(default_factory=list)
    problems: list[CheckResult] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)

    def evidence_for(self, digest: Digest) -> list[FoundEvidence]:
        return [e for e in self.evidence if e.covers == digest]

    @property
    def nodes(self) -> tuple[ManifestNode, ...]:
        return (self.root, *self.root.children)

    @property
    def fingerprint(self) -> str:
        """A digest of :attr:`state`; empty when there were problems (so that the next scan looks again)."""
        return "" if self.problems else fingerprint_of(self.state)

    def looked_at(self, digest: Digest) -> str:
        """Where evidence for ``digest`` was looked for, e.g. ``repo:sha256-<hex>.sig, ...``."""
        places = []
        for key in sorted(self.state):
            what, _, place = key.partition(" ")
            if what != "node" and (digest.tag_prefix in place or str(digest) in place):
                places.append(f"referrers API of {place}" if what == "api" else place)
        return ", ".join(places) or f"{digest.tag_prefix}.sig"


def fingerprint_of(state: Mapping[str, str]) -> str:
    """Return a stable digest of a discovery ``state`` mapping."""
    lines = "\n".join(f"{key}={value}" for key, value in sorted(state.items()))
    return str(Digest.of(lines.encode()))


# --------------------------------------------------------------------------------------------------------------
# Results of one lookup


@dataclass(slots=True)
class _Found:
    evidence: list[FoundEvidence] = field(default_factory=list)
    problems: list[CheckResult] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)

    def extend(self, other: _Found) -> None:
        self.evidence.extend(other.evidence)
        self.problems.extend(other.problems)
        self.state.update(other.state)


def _must_raise(err: ProvenanceError) -> bool:
    """Errors that mean "could not look at all" (retry later, or the source is unusable: TLS, egress), which
    must never turn into "found nothing". A refusal (401/403) of one place, when the image itself was readable,
    is recorded there as evidence that could not be checked: never "absent", never a reason to keep an old
    verdict (the image's own manifest is fetched first, so revoked credentials still fail the scan)."""
    if isinstance(err, AuthenticationError):
        return False
    return isinstance(err, TransientError | AccessError)


def _problem(code: str, message: str, hint: str = "") -> CheckResult:
    return CheckResult(Stage.FETCH, code, False, message[:1000], hint)


def _unreadable(kind: Kind, fmt: Format, location: str, covers: Digest, level: Level, digest: Digest, code: str,
                message: str, *, manifest: Digest | None = None) -> FoundEvidence:
    hint = "Re-sign or re-attest the image; the stored evidence cannot be read."
    return FoundEvidence(kind, fmt, location, covers, level, digest, manifest=manifest,
                         problem=CheckResult(Stage.FORMAT, code, False, message[:1000], hint))


def _limit(registry: Registry, name: str, default: int) -> int:
    """A per-manifest limit of this work: set on a :class:`provenance.core.oci.Metered` registry, else the
    module default."""
    value = getattr(registry, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _max_layers(registry: Registry) -> int:
    return _limit(registry, "max_layers", MAX_SIGNATURE_LAYERS)


def _string_map(value: object) -> dict[str, str] | None:
    if value is None:
        return {}
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    return None


# --------------------------------------------------------------------------------------------------------------
# The manifest tree


def _platform_of(platform: Mapping[str, Any] | None) -> str:
    if not isinstance(platform, Mapping):
        return ""
    parts = [str(platform.get("os", "")), str(platform.get("architecture", ""))]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)[:100]


def _index_entries(manifest: Manifest) -> tuple[list[Descriptor], list[Descriptor]]:
    """Split an index's entries into platform manifests and BuildKit attestation manifests."""
    manifests = manifest.json.get("manifests")
    if not isinstance(manifests, list):
        raise MalformedEvidenceError("index has no 'manifests' list", code="malformed_manifest")
    platforms: list[Descriptor] = []
    attestations: list[Descriptor] = []
    for item in manifests:
        descriptor = Descriptor.from_json(item)
        if descriptor.annotations.get(BUILDKIT_REFERENCE_TYPE) == BUILDKIT_ATTESTATION:
            attestations.append(descriptor)
        else:
            platforms.append(descriptor)
    return platforms, attestations


def build_tree(registry: Registry, repository: str, manifest: Manifest) -> tuple[ManifestNode, list[CheckResult]]:
    """Return the manifest tree rooted at ``manifest`` (an index's children fetched), and problems met.

    Raises :class:`MalformedEvidenceError` for an index without a list of descriptors, and transient and
    authentication errors; a platform manifest that cannot be fetched is a problem, not an error.
    """
    if manifest.media_type not in INDEX_MEDIA_TYPES:
        return ManifestNode(manifest.digest, manifest.media_type, Level.IMAGE), []
    platforms, _ = _index_entries(manifest)
    children: list[ManifestNode] = []
    problems: list[CheckResult] = []
    for descriptor in platforms[:MAX_PLATFORMS]:
        try:
            child = registry.get_manifest(repository, descriptor.digest)
        except ProvenanceError as err:
            if _must_raise(err):
                raise
            problems.append(_problem(err.code, f"platform manifest {descriptor.digest}: {err.message}"))
            continue
        children.append(ManifestNode(child.digest, child.media_type, Level.PLATFORM, _platform_of(descriptor.platform)))
    return ManifestNode(manifest.digest, manifest.media_type, Level.INDEX, children=tuple(children)), problems


# --------------------------------------------------------------------------------------------------------------
# cosign tags


@dataclass(frozen=True, slots=True)
class _TagKind:
    suffix: str
    kind: Kind
    format: Format
    media_type: str | None  # the only layer media type accepted, None for any (SBOMs)
    max_bytes: int


_COSIGN_TAGS = (
    _TagKind(".sig", Kind.SIGNATURE, Format.COSIGN_SIG, MediaType.COSIGN_SIMPLESIGNING, MAX_SIGNATURE_LAYER_BYTES),
    _TagKind(".att", Kind.ATTESTATION, Format.COSIGN_ATT, MediaType.DSSE_ENVELOPE, MAX_ATTESTATION_BYTES),
    _TagKind(".sbom", Kind.SBOM, Format.COSIGN_SBOM, None, MAX_SBOM_BYTES),
)


def _find_cosign_tag(registry: Registry, repository: str, digest: Digest, level: Level, spec: _TagKind) -> _Found:
    result = _Found()
    tag = f"{digest.tag_prefix}{spec.suffix}"
    location = f"{repository}:{tag}"
    key = f"tag {location}"
    try:
        manifest = registry.get_manifest(repository, tag)
    except NotFoundError:
        result.state[key] = "absent"
        return result
    except ProvenanceError as err:
        if _must_raise(err):
            raise
        result.state[key] = f"error:{err.code}"
        result.evidence.append(_unreadable(spec.kind, spec.format, location, digest, level, Digest.of(b""),
                                           err.code, f"{location}: {err.message}"))
        return result
    result.state[key] = str(manifest.digest)
    layers = manifest.json.get("layers")
    if not isinstance(layers, list) or not layers:
        result.evidence.append(_unreadable(spec.kind, spec.format, location, digest, level, manifest.digest,
                                           "malformed_manifest", f"{location} is not an image manifest with layers",
                                           manifest=manifest.digest))
        return result
    max_layers = _max_layers(registry)
    if len(layers) > max_layers:
        result.problems.append(_problem("too_many_layers", f"{location}: {len(layers)} layers, only the first "
                                                           f"{max_layers} were read (PROVENANCE_MAX_LAYERS)"))
    for descriptor in layers[:max_layers]:
        result.evidence.append(_read_layer(registry, repository, descriptor, spec=spec, location=location,
                                           covers=digest, level=level, manifest=manifest.digest))
    return result


def _read_layer(registry: Registry, repository: str, descriptor: object, *, spec: _TagKind, location: str,
                covers: Digest, level: Level, manifest: Digest) -> FoundEvidence:
    kind, fmt = spec.kind, spec.format

    def unreadable(digest: Digest, code: str, message: str) -> FoundEvidence:
        return _unreadable(kind, fmt, location, covers, level, digest, code, message, manifest=manifest)

    if not isinstance(descriptor, dict):
        return unreadable(Digest.of(b""), "malformed_manifest", f"{location}: a layer descriptor is not an object")
    try:
        layer_digest = Digest.parse(str(descriptor.get("digest", "")))
    except MalformedEvidenceError as err:
        return unreadable(Digest.of(json.dumps(descriptor).encode()), err.code, f"{location}: {err.message}")
    media_type = str(descriptor.get("mediaType", ""))
    if spec.media_type is not None and media_type != spec.media_type:
        return unreadable(layer_digest, "unexpected_media_type",
                          f"{location}: layer media type is {media_type[:100]!r}, expected {spec.media_type!r}")
    annotations = _string_map(descriptor.get("annotations"))
    if annotations is None:
        return unreadable(layer_digest, "malformed_annotations", f"{location}: layer annotations are not a string map")
    size = descriptor.get("size")
    if isinstance(size, int) and size > spec.max_bytes:
        return unreadable(layer_digest, "too_large",
                          f"{location}: layer is {size} bytes, over the {spec.max_bytes}-byte limit")
    try:
        payload = registry.get_blob(repository, layer_digest, max_bytes=spec.max_bytes)
    except ProvenanceError as err:
        if _must_raise(err):
            raise
        return unreadable(layer_digest, err.code, f"{location}: {err.message}")
    return FoundEvidence(kind, fmt, location, covers, level, layer_digest,
                         layer=SignedLayer(media_type, payload, annotations), manifest=manifest)


def find_cosign_evidence(
    registry: Registry, repository: str, digest: Digest, *, level: Level, signature_repository: str | None = None
) -> tuple[list[FoundEvidence], list[CheckResult]]:
    """Return the cosign ``.sig``, ``.att`` and ``.sbom`` layers stored for ``digest``, and problems met.

    Absent tags are not problems; unreadable manifests and layers are recorded as unreadable evidence.
    Raises :class:`TransientError` and :class:`AccessError`.
    """
    found = _Found()
    for spec in _COSIGN_TAGS:
        found.extend(_find_cosign_tag(registry, signature_repository or repository, digest, level, spec))
    return found.evidence, found.problems


# --------------------------------------------------------------------------------------------------------------
# OCI referrers


def _refused(found: _Found, err: ProvenanceError, location: str, covers: Digest, level: Level) -> None:
    """A referrers place the registry refused to show: it may hold signatures, so the image is not unsigned."""
    if isinstance(err, AuthenticationError):
        found.evidence.append(_unreadable(Kind.SIGNATURE, Format.REFERRER, location, covers, level, Digest.of(b""),
                                          err.code, f"{location}: {err.message}"))


def _referrer_digests(registry: Registry, repository: str, digest: Digest,
                      level: Level = Level.IMAGE) -> tuple[list[Digest], _Found]:
    """The manifest digests of ``digest``'s referrers: from the API when the registry has one, and the tag."""
    found = _Found()
    digests: list[Digest] = []
    api = getattr(registry, "referrers", None)
    if api is not None:
        key = f"api {repository}@{digest}"
        try:
            listed = api(repository, digest)
        except ProvenanceError as err:
            if _must_raise(err):
                raise
            found.state[key] = f"error:{err.code}"
            found.problems.append(_problem(err.code, f"referrers of {repository}@{digest}: {err.message}"))
            _refused(found, err, f"referrers API of {repository}@{digest}", digest, level)
            listed = None
        else:
            if listed is None:
                found.state[key] = "unsupported"
            else:
                listed_digests = _descriptor_digests(listed, f"referrers of {repository}@{digest}", found)
                found.state[key] = fingerprint_of({str(d): "" for d in listed_digests})
                digests.extend(listed_digests)
    # The referrers tag schema, always: registries without the API (most of them) keep referrers only there.
    tag = digest.tag_prefix
    location = f"{repository}:{tag}"
    key = f"fallback {location}"
    try:
        index = registry.get_manifest(repository, tag)
    except NotFoundError:
        found.state[key] = "absent"
    except ProvenanceError as err:
        if _must_raise(err):
            raise
        found.state[key] = f"error:{err.code}"
        found.problems.append(_problem(err.code, f"referrers index {location}: {err.message}"))
        _refused(found, err, location, digest, level)
    else:
        found.state[key] = str(index.digest)
        entries = index.json.get("manifests")
        if not index.is_index or not isinstance(entries, list):
            found.problems.append(_problem("malformed_manifest", f"referrers index {location} is not an index"))
        else:
            digests.extend(_descriptor_digests(entries, f"referrers index {location}", found))
    unique = list(dict.fromkeys(digests))
    max_referrers = _limit(registry, "max_referrers", MAX_REFERRERS)
    if len(unique) > max_referrers:
        found.problems.append(_problem("too_many_referrers", f"{repository}@{digest} has more than {max_referrers} "
                                                             f"referrers; only the first {max_referrers} were read "
                                                             "(PROVENANCE_MAX_REFERRERS)"))
    return unique[:max_referrers], found


def _descriptor_digests(entries: Iterable[object], what: str, found: _Found) -> list[Digest]:
    digests: list[Digest] = []
    for entry in entries:
        # Deliberately not filtered by artifactType: cosign writes the config media type there.
        try:
            digests.append(Descriptor.from_json(entry).digest)
        except MalformedEvidenceError as err:
            found.problems.append(_problem(err.code, f"{what}: an entry is unreadable: {err.message}"))
    return digests


def find_referrers(registry: Registry, repository: str, digest: Digest, *, level: Level) -> tuple[
        list[FoundEvidence], list[CheckResult]]:
    """Return the evidence attached to ``digest`` as OCI referrers (API and tag schema), and problems met.

    Raises :class:`TransientError` and :class:`AccessError`.
    """
    found = _find_referrers(registry, repository, digest, level)
    return found.evidence, found.problems


def _find_referrers(registry: Registry, repository: str, digest: Digest, level: Level) -> _Found:
    digests, found = _referrer_digests(registry, repository, digest, level)
    for manifest_digest in digests:
        found.extend(_read_referrer(registry, repository, manifest_digest, covers=digest, level=level))
    return found


def _read_referrer(registry: Registry, repository: str, manifest_digest: Digest, *, covers: Digest,
                   level: Level) -> _Found:
    found = _Found()
    location = f"{repository}@{manifest_digest}"
    try:
        manifest = registry.get_manifest(repository, manifest_digest)
        subject = manifest.subject
        layers = manifest.layers
    except ProvenanceError as err:
        if _must_raise(err):
            raise
        found.problems.append(_problem(err.code, f"referrer {location}: {err.message}"))
        return found
    if subject is None or subject.digest != covers:
        # A referrers index may list anything; only a manifest that names this digest as subject is about it.
        named = str(subject.digest) if subject is not None else "no subject"
        found.problems.append(_problem("referrer_subject_mismatch",
                                       f"referrer {location} is listed for {covers} but its subject is {named}"))
        return found
    artifact_type = manifest.artifact_type
    annotations = manifest.annotations
    bundle_layers = [d for d in layers if is_bundle_media_type(d.media_type)]
    if is_bundle_media_type(artifact_type) or bundle_layers:
        if not bundle_layers:
            found.evidence.append(_unreadable(Kind.SIGNATURE, Format.SIGSTORE_BUNDLE, location, covers, level,
                                              manifest_digest, "malformed_bundle",
                                              f"{location}: Sigstore bundle manifest without a bundle layer",
                                              manifest=manifest_digest))
        for descriptor in bundle_layers[:_max_layers(registry)]:
            found.evidence.append(_read_bundle(registry, repository, descriptor, annotations, location=location,
                                               covers=covers, level=level, manifest=manifest_digest))
        return found
    if artifact_type == NOTATION_ARTIFACT_TYPE:
        if not layers:
            found.evidence.append(_unreadable(Kind.SIGNATURE, Format.NOTATION, location, covers, level,
                                              manifest_digest, "malformed_manifest",
                                              f"{location}: Notation signature without a signature layer",
                                              manifest=manifest_digest))
        spec = _TagKind("", Kind.SIGNATURE, Format.NOTATION, None, MAX_SIGNATURE_LAYER_BYTES)
        for descriptor in layers[:_max_layers(registry)]:
            found.evidence.append(_read_layer(registry, repository, _with_annotations(descriptor, annotations),
                                              spec=spec, location=location, covers=covers, level=level,
                                              manifest=manifest_digest))
        return found
    # Something else (an SBOM pushed with oras, a vulnerability report, ...): recorded, never trusted. The
    # manifest itself is the payload, so that nothing large is fetched for a type nobody checks.
    kind = Kind.SBOM if artifact_type in SBOM_MEDIA_TYPES else Kind.ATTESTATION
    found.evidence.append(FoundEvidence(
        kind, Format.REFERRER, location, covers, level, manifest_digest,
        layer=SignedLayer(manifest.media_type, manifest.data, {**annotations, "artifactType": artifact_type[:200]}),
        manifest=manifest_digest,
    ))
    return found


def _with_annotations(descriptor: Descriptor, manifest_annotations: Mapping[str, str]) -> dict[str, Any]:
    entry = descriptor.as_json()
    entry["annotations"] = {**manifest_annotations, **descriptor.annotations}
    return entry


def _read_bundle(registry: Registry, repository: str, descriptor: Descriptor, manifest_annotations: dict[str, str],
                 *, location: str, covers: Digest, level: Level, manifest: Digest) -> FoundEvidence:
    annotations = {**manifest_annotations, **descriptor.annotations}
    hinted = Kind.SIGNATURE if annotations.get("dev.sigstore.bundle.content") == "message-signature" else (
        Kind.SIGNATURE if annotations.get("dev.sigstore.bundle.predicateType") == COSIGN_SIGN_PREDICATE
        else Kind.ATTESTATION)

    def unreadable(code: str, message: str) -> FoundEvidence:
        return _unreadable(hinted, Format.SIGSTORE_BUNDLE, location, covers, level, descriptor.digest, code, message,
                           manifest=manifest)

    if descriptor.size > MAX_ATTESTATION_BYTES:
        return unreadable("too_large", f"{location}: bundle is {descriptor.size} bytes, over the "
                                       f"{MAX_ATTESTATION_BYTES}-byte limit")
    try:
        payload = registry.get_blob(repository, descriptor.digest, max_bytes=MAX_ATTESTATION_BYTES)
        kind, predicate = _classify_bundle(payload)
    except ProvenanceError as err:
        if _must_raise(err):
            raise
        return unreadable(err.code, f"{location}: {err.message}")
    return FoundEvidence(kind, Format.SIGSTORE_BUNDLE, location, covers, level, descriptor.digest,
                         layer=SignedLayer(descriptor.media_type, payload, annotations), manifest=manifest,
                         predicate=predicate)


def _classify_bundle(payload: bytes) -> tuple[Kind, str]:
    """Return (kind, predicate type) of a Sigstore bundle, from its (not yet verified) content.

    Raises :class:`MalformedEvidenceError` (``malformed_bundle``) when it is neither a message signature nor a
    DSSE envelope.
    """
    bundle = load_json_object(payload, code="malformed_bundle", what="Sigstore bundle")
    if isinstance(bundle.get("messageSignature"), dict):
        return Kind.SIGNATURE, ""
    envelope = bundle.get("dsseEnvelope")
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), str):
        raise MalformedEvidenceError("Sigstore bundle holds neither a message signature nor a DSSE envelope",
                                     code="malformed_bundle")
    try:
        statement = load_json_object(base64.b64decode(envelope["payload"], validate=True), code="malformed_bundle",
                                     what="DSSE payload")
    except (binascii.Error, ValueError) as err:
        raise MalformedEvidenceError("Sigstore bundle DSSE payload is not base64", code="malformed_bundle") from err
    predicate = statement.get("predicateType")
    predicate = predicate[:300] if isinstance(predicate, str) else ""
    return (Kind.SIGNATURE if predicate == COSIGN_SIGN_PREDICATE else Kind.ATTESTATION), predicate


# --------------------------------------------------------------------------------------------------------------
# BuildKit in-index attestations


def _find_buildkit(registry: Registry, repository: str, index: Manifest, descriptor: Descriptor) -> _Found:
    found = _Found()
    location = f"{repository}@{index.digest} attestation-manifest {descriptor.digest}"
    try:
        covers = Digest.parse(descriptor.annotations.get(BUILDKIT_REFERENCE_DIGEST, ""))
    except MalformedEvidenceError:
        found.problems.append(_problem("malformed_manifest", f"{location}: no {BUILDKIT_REFERENCE_DIGEST} annotation"))
        return found
    try:
        manifest = registry.get_manifest(repository, descriptor.digest)
        layers = manifest.json.get("layers")
        if not isinstance(layers, list):
            raise MalformedEvidenceError("attestation manifest has no layers", code="malformed_manifest")
    except ProvenanceError as err:
        if _must_raise(err):
            raise
        found.evidence.append(_unreadable(Kind.ATTESTATION, Format.BUILDKIT, location, covers, Level.PLATFORM,
                                          descriptor.digest, err.code, f"{location}: {err.message}",
                                          manifest=descriptor.digest))
        return found
    spec = _TagKind("", Kind.ATTESTATION, Format.BUILDKIT, IN_TOTO_MEDIA_TYPE, MAX_ATTESTATION_BYTES)
    for layer in layers[:_max_layers(registry)]:
        found.evidence.append(_read_layer(registry, repository, layer, spec=spec, location=location, covers=covers,
                                          level=Level.PLATFORM, manifest=manifest.digest))
    return found


# --------------------------------------------------------------------------------------------------------------
# Everything for one image


class _Listed:
    """A registry seen through a tag listing taken a moment ago: tags not listed are absent without a request.

    A repository scan lists every tag anyway (evidence tags included); this saves the 404s for ``.sbom`` and
    referrers tags that most images do not have. Evidence added after the listing is found by the next scan.
    """

    def __init__(self, registry: Registry, listed: Mapping[str, Collection[str]]) -> None:
        self._registry = registry
        self._listed = listed

    def _is_unlisted(self, repository: str, reference: str | Digest) -> bool:
        tags = self._listed.get(repository)
        return tags is not None and isinstance(reference, str) and ":" not in reference and reference not in tags

    def get_manifest(self, repository: str, reference: str | Digest) -> Manifest:
        if self._is_unlisted(repository, reference):
            raise NotFoundError(f"manifest {repository}:{reference} is not in the tag listing")
        return self._registry.get_manifest(repository, reference)

    def head_manifest(self, repository: str, reference: str | Digest) -> Digest | None:
        if self._is_unlisted(repository, reference):
            return None
        head = getattr(self._registry, "head_manifest", None)
        if head is None:
            try:
                return self._registry.get_manifest(repository, reference).digest
            except NotFoundError:
                return None
        result: Digest | None = head(repository, reference)
        return result

    def get_blob(self, repository: str, digest: Digest, *, max_bytes: int | None = None) -> bytes:
        return self._registry.get_blob(repository, digest, max_bytes=max_bytes)

    def list_tags(self, repository: str) -> list[str]:
        return self._registry.list_tags(repository)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)  # referrers, where the registry has the API


def _through_listing(registry: Registry, signature_registry: Registry | None,
                     listed_tags: Mapping[str, Collection[str]] | None) -> tuple[Registry, Registry | None]:
    if not listed_tags:
        return registry, signature_registry
    listed = _Listed(registry, listed_tags)
    # The listing is of the image's registry: a signature registry elsewhere is asked directly.
    return listed, (listed if signature_registry is None or signature_registry is registry else signature_registry)



def _node_lookups(registry: Registry, repository: str, digest: Digest, level: Level, *, signature_registry: Registry,
                  signature_repository: str) -> list[Callable[[], _Found]]:
    """The independent lookups for one manifest digest (each may run on its own thread)."""
    calls: list[Callable[[], _Found]] = [
        lambda spec=spec: _find_cosign_tag(signature_registry, signature_repository, digest, level, spec)  # type: ignore[misc]
        for spec in _COSIGN_TAGS
    ]
    calls.append(lambda: _find_referrers(registry, repository, digest, level))
    if signature_registry is not registry or signature_repository != repository:
        calls.append(lambda: _find_referrers(signature_registry, signature_repository, digest, level))
    return calls


def discover(registry: Registry, repository: str, reference: str | Digest, *, signature_repository: str | None = None,
             signature_registry: Registry | None = None, concurrency: int = DEFAULT_CONCURRENCY,
             executor: Executor | None = None, listed_tags: Mapping[str, Collection[str]] | None = None) -> Discovery:
    """Resolve ``reference`` (a tag or digest) and find every piece of evidence for it and its platforms.

    ``signature_repository`` (on ``signature_registry``, default ``registry``) is where cosign tags are looked
    for, as ``COSIGN_REPOSITORY`` makes cosign write them; referrers are looked for in both repositories. At most
    ``concurrency`` requests overlap (or ``executor``'s worker count when one is given). ``listed_tags``
    (``{repository: every tag}``, from a listing just taken) saves requests for tags that do not exist.

    Raises :class:`ProvenanceError` subclasses when the image itself cannot be fetched, and
    :class:`TransientError` or :class:`AccessError` when any place could not be looked at.
    """
    manifest = registry.get_manifest(repository, reference)
    return discover_manifest(registry, repository, manifest, signature_repository=signature_repository,
                             signature_registry=signature_registry, concurrency=concurrency, executor=executor,
                             listed_tags=listed_tags)


def discover_manifest(registry: Registry, repository: str, manifest: Manifest, *,
                      signature_repository: str | None = None, signature_registry: Registry | None = None,
                      concurrency: int = DEFAULT_CONCURRENCY, executor: Executor | None = None,
                      listed_tags: Mapping[str, Collection[str]] | None = None) -> Discovery:
    """Like :func:`discover`, for a manifest already fetched."""
    registry, signature_registry = _through_listing(registry, signature_registry, listed_tags)
    sig_registry = signature_registry or registry
    sig_repo = signature_repository or repository
    own = executor is None
    pool = executor or ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="discovery")
    found = _Found()
    lookups: list[Future[_Found]] = []

    def look_for(digest: Digest, level: Level) -> None:
        found.state[f"node {digest}"] = level
        for call in _node_lookups(registry, repository, digest, level, signature_registry=sig_registry,
                                  signature_repository=sig_repo):
            lookups.append(pool.submit(call))

    try:
        if manifest.media_type not in INDEX_MEDIA_TYPES:
            root = ManifestNode(manifest.digest, manifest.media_type, Level.IMAGE)
            look_for(manifest.digest, Level.IMAGE)
        else:
            look_for(manifest.digest, Level.INDEX)
            platforms, attestations = _index_entries(manifest)
            if len(platforms) > MAX_PLATFORMS:
                found.problems.append(_problem("too_many_platforms", f"index {manifest.digest} lists "
                                               f"{len(platforms)} manifests; only {MAX_PLATFORMS} were read"))
            fetches = [(d, pool.submit(registry.get_manifest, repository, d.digest)) for d in platforms[:MAX_PLATFORMS]]
            buildkit = [pool.submit(_find_buildkit, registry, repository, manifest, d)
                        for d in attestations[:MAX_PLATFORMS]]
            children: list[ManifestNode] = []
            for descriptor, future in fetches:
                try:
                    child = future.result()
                except ProvenanceError as err:
                    if _must_raise(err):
                        raise
                    found.problems.append(_problem(err.code, f"platform manifest {descriptor.digest} "
                                                             f"({_platform_of(descriptor.platform) or '?'}) of "
                                                             f"{repository}@{manifest.digest}: {err.message}"))
                    continue
                children.append(ManifestNode(child.digest, child.media_type, Level.PLATFORM,
                                             _platform_of(descriptor.platform)))
                look_for(child.digest, Level.PLATFORM)
            root = ManifestNode(manifest.digest, manifest.media_type, Level.INDEX, children=tuple(children))
            platform_digests = {d.digest for d in platforms}
            for pending in buildkit:
                result = pending.result()
                for item in result.evidence:
                    if item.covers not in platform_digests:
                        found.problems.append(_problem("attestation_subject_unknown", f"{item.location} describes "
                                                       f"{item.covers}, which is not a platform of this index"))
                    else:
                        found.evidence.append(item)
                found.problems.extend(result.problems)
        for lookup in lookups:
            found.extend(lookup.result())
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
    return Discovery(root=root, evidence=_ordered(found.evidence, root), problems=found.problems, state=found.state)


def _ordered(evidence: list[FoundEvidence], root: ManifestNode) -> list[FoundEvidence]:
    """Evidence in a stable order: by node (root first), then kind, location and digest; duplicates dropped."""
    rank = {node.digest: i for i, node in enumerate((root, *root.children))}
    seen: set[tuple[Digest, str, Digest, tuple[tuple[str, str], ...]]] = set()
    unique = []
    for item in evidence:
        # Several signers' cosign layers share one payload blob: the annotations (signature, certificate) differ.
        annotations = tuple(sorted(item.layer.annotations.items())) if item.layer else ()
        key = (item.covers, item.kind, item.digest, annotations)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return sorted(unique, key=lambda e: (rank.get(e.covers, len(rank)), e.kind, e.location, str(e.digest)))


# --------------------------------------------------------------------------------------------------------------
# Image metadata


_CREATED_ANNOTATION = "org.opencontainers.image.created"
_FRACTION = re.compile(r"(\.\d{6})\d+")


def image_created(registry: Registry, repository: str, reference: str | Digest) -> str:
    """Return when an image says it was created, as a sortable UTC ISO timestamp, or "" when it does not say.

    Reads the ``org.opencontainers.image.created`` annotation, else the image config's ``created`` (for an
    index: of its first platform). The value is unverified metadata, fit for ordering tags only. Raises the
    registry's errors.
    """
    manifest = registry.get_manifest(repository, reference)
    for _ in range(2):
        created = manifest.annotations.get(_CREATED_ANNOTATION, "")
        if created:
            return _normalise_time(created)
        if not manifest.is_index:
            break
        platforms, _ = _index_entries(manifest)
        if not platforms:
            return ""
        manifest = registry.get_manifest(repository, platforms[0].digest)
    config = manifest.config
    if manifest.is_index or config is None or config.size > MAX_SIGNATURE_LAYER_BYTES:
        return ""
    data = registry.get_blob(repository, config.digest, max_bytes=MAX_SIGNATURE_LAYER_BYTES)
    value = load_json_object(data, code="malformed_config", what="image config").get("created")
    return _normalise_time(value) if isinstance(value, str) else ""


def _normalise_time(value: str) -> str:
    try:
        moment = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()[:64]))
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


# --------------------------------------------------------------------------------------------------------------
# Cheap re-scans


def evidence_fingerprint(registry: Registry, repository: str, digests: Sequence[tuple[Digest, str]], *,
                         signature_repository: str | None = None, signature_registry: Registry | None = None,
                         concurrency: int = DEFAULT_CONCURRENCY, executor: Executor | None = None,
                         listed_tags: Mapping[str, Collection[str]] | None = None) -> str:
    """Return what :attr:`Discovery.fingerprint` would be for these ``(digest, level)`` nodes, cheaply.

    Only HEADs the cosign and referrers tags (and lists referrers where the registry has the API): evidence is
    content-addressed, so the same manifest digests in the same places mean the same evidence. The requests
    overlap on ``executor`` (shared by many images of a scan) or on a pool of ``concurrency`` threads of its own.
    Raises :class:`TransientError` and :class:`AccessError`.
    """
    registry, signature_registry = _through_listing(registry, signature_registry, listed_tags)
    sig_registry = signature_registry or registry
    sig_repo = signature_repository or repository
    state: dict[str, str] = {}
    probes: list[tuple[str, Callable[[], str]]] = []
    for digest, level in digests:
        state[f"node {digest}"] = level
        for spec in _COSIGN_TAGS:
            location = f"{sig_repo}:{digest.tag_prefix}{spec.suffix}"
            probes.append((f"tag {location}", _head_probe(sig_registry, sig_repo, location.split(":", 1)[1])))
        places = [(registry, repository)]
        if sig_registry is not registry or sig_repo != repository:
            places.append((sig_registry, sig_repo))
        for place_registry, place_repo in places:
            if getattr(place_registry, "referrers", None) is not None:
                probes.append((f"api {place_repo}@{digest}", _api_probe(place_registry, place_repo, digest)))
            probes.append((f"fallback {place_repo}:{digest.tag_prefix}",
                           _head_probe(place_registry, place_repo, digest.tag_prefix)))
    pool = executor or ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="fingerprint")
    try:
        futures = [(key, pool.submit(probe)) for key, probe in probes]
        for key, future in futures:
            state[key] = future.result()
    finally:
        if executor is None:
            pool.shutdown(wait=True, cancel_futures=True)
    return fingerprint_of(state)


def _head_probe(registry: Registry, repository: str, tag: str) -> Callable[[], str]:
    def probe() -> str:
        head = getattr(registry, "head_manifest", None)
        try:
            if head is not None:
                digest = head(repository, tag)
                return "absent" if digest is None else str(digest)
            return str(registry.get_manifest(repository, tag).digest)
        except NotFoundError:
            return "absent"
        except ProvenanceError as err:
            if _must_raise(err):
                raise
            return f"error:{err.code}"

    return probe


def _api_probe(registry: Registry, repository: str, digest: Digest) -> Callable[[], str]:
    def probe() -> str:
        try:
            listed = registry.referrers(repository, digest)  # type: ignore[attr-defined]
        except ProvenanceError as err:
            if _must_raise(err):
                raise
            return f"error:{err.code}"
        if listed is None:
            return "unsupported"
        ignored = _Found()
        return fingerprint_of({str(d): "" for d in _descriptor_digests(listed, "", ignored)})

    return probe
