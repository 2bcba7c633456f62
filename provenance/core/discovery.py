"""Evidence discovery: find the cosign signatures and attestations a registry holds for an image.

Works over any :class:`provenance.core.oci.Registry` (a registry client or an OCI layout). For an index, the
index and every platform manifest are looked at, and each piece of evidence records the digest and level it
covers. What could not be read is recorded as a problem, never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from provenance.core.errors import MalformedEvidenceError, NotFoundError, ProvenanceError
from provenance.core.oci import Manifest, Registry
from provenance.core.types import (
    INDEX_MEDIA_TYPES,
    CheckResult,
    Digest,
    MediaType,
    SignedLayer,
    Stage,
)

MAX_SIGNATURE_LAYERS = 64
MAX_SIGNATURE_LAYER_BYTES = 1024 * 1024  # a simple-signing payload or a DSSE envelope
MAX_PLATFORMS = 64


class Level:
    IMAGE = "image"  # a single-platform manifest
    INDEX = "index"  # a multi-arch index itself
    PLATFORM = "platform"  # a platform manifest inside an index


@dataclass(frozen=True, slots=True)
class FoundEvidence:
    """One signature or attestation layer found for ``covers``; ``problem`` is set when it is unreadable."""

    kind: str  # "signature" or "attestation"
    format: str  # "cosign-sig" or "cosign-att"
    location: str  # where it was found, e.g. "repo:sha256-<hex>.sig"
    covers: Digest
    level: str
    digest: Digest  # the layer's digest
    layer: SignedLayer | None = None
    problem: CheckResult | None = None

    @property
    def predicate_type(self) -> str:
        return self.layer.annotations.get("predicateType", "") if self.layer else ""


@dataclass(frozen=True, slots=True)
class ManifestNode:
    """An artifact: a manifest digest, its media type, and for an index its platform manifests."""

    digest: Digest
    media_type: str
    level: str
    platform: str = ""
    children: tuple[ManifestNode, ...] = ()


@dataclass(slots=True)
class Discovery:
    """Everything found about one image: the manifest tree, its evidence, and what went wrong on the way."""

    root: ManifestNode
    evidence: list[FoundEvidence] = field(default_factory=list)
    problems: list[CheckResult] = field(default_factory=list)

    def evidence_for(self, digest: Digest) -> list[FoundEvidence]:
        return [e for e in self.evidence if e.covers == digest]


_TAG_SUFFIXES = ((".sig", "signature", "cosign-sig", MediaType.COSIGN_SIMPLESIGNING),
                 (".att", "attestation", "cosign-att", MediaType.DSSE_ENVELOPE))


def _platform_of(descriptor: dict) -> str:
    platform = descriptor.get("platform")
    if not isinstance(platform, dict):
        return ""
    parts = [str(platform.get("os", "")), str(platform.get("architecture", ""))]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)[:100]


def build_tree(registry: Registry, repository: str, manifest: Manifest) -> tuple[ManifestNode, list[CheckResult]]:
    """Return the manifest tree rooted at ``manifest`` (an index's children fetched), and problems met."""
    problems: list[CheckResult] = []
    if manifest.media_type not in INDEX_MEDIA_TYPES:
        return ManifestNode(manifest.digest, manifest.media_type, Level.IMAGE), problems
    children: list[ManifestNode] = []
    manifests = manifest.json.get("manifests")
    if not isinstance(manifests, list):
        raise MalformedEvidenceError("index has no 'manifests' list", code="malformed_manifest")
    for descriptor in manifests[:MAX_PLATFORMS]:
        if not isinstance(descriptor, dict):
            continue
        annotations = descriptor.get("annotations") or {}
        if isinstance(annotations, dict) and annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            continue  # BuildKit's in-index attestations are not platforms
        try:
            child_digest = Digest.parse(str(descriptor.get("digest", "")))
            child = registry.get_manifest(repository, str(child_digest))
        except ProvenanceError as err:
            problems.append(CheckResult(Stage.FETCH, err.code, False,
                                        f"platform manifest {descriptor.get('digest', '?')!s:.80}: {err.message}"))
            continue
        children.append(ManifestNode(child.digest, child.media_type, Level.PLATFORM, _platform_of(descriptor)))
    return ManifestNode(manifest.digest, manifest.media_type, Level.INDEX, children=tuple(children)), problems


def find_cosign_evidence(
    registry: Registry, repository: str, digest: Digest, *, level: str, signature_repository: str | None = None
) -> tuple[list[FoundEvidence], list[CheckResult]]:
    """Return the cosign ``.sig`` and ``.att`` layers stored for ``digest``, and problems met.

    Absent tags are not problems; unreadable manifests and layers are (recorded as malformed evidence).
    """
    repo = signature_repository or repository
    found: list[FoundEvidence] = []
    problems: list[CheckResult] = []
    for suffix, kind, fmt, expected_media_type in _TAG_SUFFIXES:
        tag = f"{digest.tag_prefix}{suffix}"
        location = f"{repo}:{tag}"
        try:
            manifest = registry.get_manifest(repo, tag)
        except NotFoundError:
            continue
        except ProvenanceError as err:
            if err.code in {"transient", "authentication_failed"}:
                raise
            problems.append(CheckResult(Stage.FETCH, err.code, False, f"{location}: {err.message}"))
            continue
        layers = manifest.json.get("layers")
        if not isinstance(layers, list) or not layers:
            found.append(_unreadable(kind, fmt, location, digest, level, manifest.digest,
                                     "malformed_manifest", f"{location} is not an image manifest with layers"))
            continue
        for descriptor in layers[:MAX_SIGNATURE_LAYERS]:
            found.append(_read_layer(registry, repo, descriptor, kind=kind, fmt=fmt, location=location,
                                     covers=digest, level=level, expected_media_type=expected_media_type))
    return found, problems


def _unreadable(kind: str, fmt: str, location: str, covers: Digest, level: str, digest: Digest,
                code: str, message: str) -> FoundEvidence:
    hint = "Re-sign or re-attest the image; the stored evidence cannot be read."
    return FoundEvidence(kind, fmt, location, covers, level, digest,
                         problem=CheckResult(Stage.FORMAT, code, False, message, hint))


def _read_layer(registry: Registry, repository: str, descriptor: object, *, kind: str, fmt: str, location: str,
                covers: Digest, level: str, expected_media_type: str) -> FoundEvidence:
    if not isinstance(descriptor, dict):
        return _unreadable(kind, fmt, location, covers, level, Digest.of(b""), "malformed_manifest",
                           f"{location}: a layer descriptor is not an object")
    try:
        layer_digest = Digest.parse(str(descriptor.get("digest", "")))
    except MalformedEvidenceError as err:
        return _unreadable(kind, fmt, location, covers, level, Digest.of(json.dumps(descriptor).encode()),
                           err.code, f"{location}: {err.message}")
    media_type = str(descriptor.get("mediaType", ""))
    if media_type != expected_media_type:
        return _unreadable(kind, fmt, location, covers, level, layer_digest, "unexpected_media_type",
                           f"{location}: layer media type is {media_type[:100]!r}, expected {expected_media_type!r}")
    annotations = descriptor.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        return _unreadable(kind, fmt, location, covers, level, layer_digest, "malformed_annotations",
                           f"{location}: layer annotations are not a string map")
    size = descriptor.get("size")
    if isinstance(size, int) and size > MAX_SIGNATURE_LAYER_BYTES:
        return _unreadable(kind, fmt, location, covers, level, layer_digest, "too_large",
                           f"{location}: layer is {size} bytes, over the {MAX_SIGNATURE_LAYER_BYTES}-byte limit")
    try:
        payload = registry.get_blob(repository, layer_digest, max_bytes=MAX_SIGNATURE_LAYER_BYTES)
    except ProvenanceError as err:
        if err.code in {"transient", "authentication_failed"}:
            raise
        return _unreadable(kind, fmt, location, covers, level, layer_digest, err.code, f"{location}: {err.message}")
    return FoundEvidence(kind, fmt, location, covers, level, layer_digest,
                         layer=SignedLayer(media_type, payload, dict(annotations)))


def discover(registry: Registry, repository: str, reference: str, *,
             signature_repository: str | None = None) -> Discovery:
    """Resolve ``reference`` and find the cosign evidence for it and, for an index, for each platform.

    Raises :class:`ProvenanceError` subclasses when the image itself cannot be fetched.
    """
    manifest = registry.get_manifest(repository, reference)
    root, problems = build_tree(registry, repository, manifest)
    discovery = Discovery(root=root, problems=problems)
    for node in (root, *root.children):
        evidence, node_problems = find_cosign_evidence(registry, repository, node.digest, level=node.level,
                                                       signature_repository=signature_repository)
        discovery.evidence.extend(evidence)
        discovery.problems.extend(node_problems)
    return discovery
