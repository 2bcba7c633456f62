"""Read and write OCI image layout directories (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``).

:class:`OciLayout` implements the read side of :class:`~provenance.core.oci.Registry`, so verification can run
against a layout on disk (from ``skopeo copy ... oci:DIR``, ``docker save`` of Docker 25+, or a build tool)
exactly as against a registry.

**Repository argument:** a layout holds one set of tags, not repositories, so the ``repository`` argument of the
read methods is ignored. A tag is the value of the ``org.opencontainers.image.ref.name`` annotation of an
``index.json`` entry, matched exactly (skopeo writes a bare tag there; other tools sometimes write a full
reference, which then is the "tag" to ask for).

Every read is size-capped and checked against its digest, as for a registry: a layout is untrusted input.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from provenance.core.errors import MalformedEvidenceError, NotFoundError
from provenance.core.oci import (
    Descriptor,
    Manifest,
    RegistryClient,
    load_json_object,
    parse_manifest,
)
from provenance.core.types import Digest, MediaType

__all__ = ["REF_NAME_ANNOTATION", "OciLayout", "extract_layout_tar", "push_layout"]

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = "1.0.0"
_MAX_INDEX_BYTES = 4 * 1024 * 1024
_MAX_REFERRER_SCAN = 10_000  # index.json entries opened when looking for referrers


class OciLayout:
    """An OCI image layout directory, read and written in place.

    Opening checks the ``oci-layout`` marker; use :meth:`init` to create a new layout. Reads verify digests
    (``digest_mismatch``) and sizes (``too_large``). Writes are atomic per file (temporary file, then rename),
    and ``index.json`` updates are serialised within the process (not across processes).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_manifest_bytes: int = 4 * 1024 * 1024,
        max_blob_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        """Open the layout at ``path``.

        Raises :class:`NotFoundError` when there is no ``oci-layout`` file and :class:`MalformedEvidenceError`
        (``malformed_layout``) when it is not a layout this module understands.
        """
        self.path = Path(path)
        self.max_manifest_bytes = max_manifest_bytes
        self.max_blob_bytes = max_blob_bytes
        self._lock = threading.Lock()
        self._subject_cache: tuple[tuple[int, int], dict[str, list[dict[str, Any]]]] | None = None
        marker = self.path / "oci-layout"
        try:
            raw = _read_file(marker, 64 * 1024, what="oci-layout")
        except FileNotFoundError as err:
            raise NotFoundError(f"no OCI image layout at {self.path} (missing oci-layout)") from err
        content = load_json_object(raw, code="malformed_layout", what="oci-layout")
        version = content.get("imageLayoutVersion")
        if not isinstance(version, str) or not version.startswith("1."):
            raise MalformedEvidenceError(
                f"unsupported OCI layout version {str(version)[:20]!r} at {self.path}", code="malformed_layout"
            )

    @classmethod
    def init(cls, path: str | os.PathLike[str], **kwargs: int) -> OciLayout:
        """Create an empty layout at ``path`` (or open it if one is already there) and return it."""
        root = Path(path)
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        if not (root / "oci-layout").exists():
            _write_atomic(root / "oci-layout", json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
        if not (root / "index.json").exists():
            _write_atomic(root / "index.json", _dump_index({"schemaVersion": 2, "manifests": []}))
        return cls(root, **kwargs)

    def __repr__(self) -> str:
        return f"OciLayout({str(self.path)!r})"

    # -- read side (the Registry protocol) ------------------------------------------------------------------------

    def index(self) -> dict[str, Any]:
        """Return ``index.json`` parsed. Raises :class:`MalformedEvidenceError` (``malformed_layout``)."""
        try:
            raw = _read_file(self.path / "index.json", _MAX_INDEX_BYTES, what="index.json")
        except FileNotFoundError as err:
            raise MalformedEvidenceError(
                f"OCI layout at {self.path} has no index.json", code="malformed_layout"
            ) from err
        index = load_json_object(raw, code="malformed_layout", what="index.json")
        if not isinstance(index.get("manifests", []), list):
            raise MalformedEvidenceError("index.json 'manifests' is not a list", code="malformed_layout")
        return index

    def descriptors(self) -> list[Descriptor]:
        """Return the descriptors listed in ``index.json``, tagged or not, in file order."""
        try:
            return [Descriptor.from_json(item) for item in self.index().get("manifests", [])]
        except MalformedEvidenceError as err:
            raise MalformedEvidenceError(f"index.json: {err.message}", code="malformed_layout") from err

    def list_tags(self, repository: str = "") -> list[str]:
        """Return the tags (``ref.name`` annotations) in ``index.json``, in order, without duplicates.

        ``repository`` is ignored (see the module docstring).
        """
        tags: list[str] = []
        for descriptor in self.descriptors():
            name = descriptor.annotations.get(REF_NAME_ANNOTATION)
            if name and name not in tags:
                tags.append(name)
        return tags

    def resolve(self, tag: str) -> Descriptor:
        """Return the ``index.json`` descriptor tagged ``tag``. Raises :class:`NotFoundError`."""
        for descriptor in self.descriptors():
            if descriptor.annotations.get(REF_NAME_ANNOTATION) == tag:
                return descriptor
        raise NotFoundError(f"tag {tag!r} not found in OCI layout {self.path}")

    def referrers(self, repository: str, digest: Digest) -> list[dict[str, Any]]:
        """Return descriptors (JSON dicts) of the image manifests listed in ``index.json`` whose subject is ``digest``.

        This is how a layout holds OCI 1.1 referrers (``oras``, ``cosign save``); ``repository`` is ignored. The
        subject map is built once per version of ``index.json``. Unreadable entries are skipped here: they are
        not referrers of anything we can tell.
        """
        subjects = self._subjects()
        return [dict(d) for d in subjects.get(str(digest), [])]

    def _subjects(self) -> dict[str, list[dict[str, Any]]]:
        try:
            stat = (self.path / "index.json").stat()
        except FileNotFoundError:
            return {}
        version = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._subject_cache
            if cached is not None and cached[0] == version:
                return cached[1]
        subjects: dict[str, list[dict[str, Any]]] = {}
        for descriptor in self.descriptors()[:_MAX_REFERRER_SCAN]:
            if descriptor.media_type != MediaType.OCI_MANIFEST:
                continue
            try:
                manifest = self.get_manifest("", descriptor.digest)
                subject = manifest.subject
            except (MalformedEvidenceError, NotFoundError):
                continue
            if subject is not None:
                entry = descriptor.as_json()
                if manifest.artifact_type:
                    entry["artifactType"] = manifest.artifact_type
                subjects.setdefault(str(subject.digest), []).append(entry)
        with self._lock:
            self._subject_cache = (version, subjects)
        return subjects

    def get_manifest(self, repository: str, reference: str | Digest) -> Manifest:
        """Return the manifest for a tag (a ``ref.name``) or a digest; ``repository`` is ignored.

        Raises :class:`NotFoundError`, :class:`MalformedEvidenceError` (``digest_mismatch``, ``too_large``,
        ``malformed_manifest``, ``bad_reference``).
        """
        media_type = ""
        digest = _as_digest(reference)
        expected_size: int | None = None
        if digest is None:
            descriptor = self.resolve(str(reference))
            digest = descriptor.digest
            media_type = descriptor.media_type
            expected_size = descriptor.size
        data = self._read_blob(digest, self.max_manifest_bytes, what=f"manifest {digest}")
        if expected_size is not None and len(data) != expected_size:
            raise MalformedEvidenceError(
                f"manifest {digest} in {self.path} is {len(data)} bytes, index.json says {expected_size}",
                code="digest_mismatch",
            )
        return parse_manifest(data, digest=digest, media_type=media_type)

    def head_manifest(self, repository: str, reference: str | Digest) -> Digest | None:
        """Return the digest for a tag or digest, or None when the layout does not have it."""
        digest = _as_digest(reference)
        if digest is not None:
            return digest if self.has_blob(digest) else None
        try:
            return self.resolve(str(reference)).digest
        except NotFoundError:
            return None

    def get_blob(self, repository: str, digest: Digest, *, max_bytes: int | None = None) -> bytes:
        """Return a blob's bytes, checked against ``digest`` and capped at ``max_bytes`` (default
        ``max_blob_bytes``). Raises :class:`NotFoundError`, :class:`MalformedEvidenceError`
        (``too_large``, ``digest_mismatch``)."""
        return self._read_blob(digest, self.max_blob_bytes if max_bytes is None else max_bytes, what=f"blob {digest}")

    def has_blob(self, digest: Digest) -> bool:
        """Whether a blob file exists for ``digest`` (its content is not checked)."""
        return self._blob_path(digest).is_file()

    # -- write side -----------------------------------------------------------------------------------------------

    def write_blob(self, data: bytes) -> Digest:
        """Store ``data`` under its sha256 digest (no-op when present) and return the digest."""
        digest = Digest.of(data)
        path = self._blob_path(digest)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, data)
        return digest

    def add_referrer(self, data: bytes) -> Digest:
        """Store a referrer manifest (one with a ``subject``) and list it, untagged, in ``index.json``.

        Returns its digest. Raises :class:`MalformedEvidenceError` (``malformed_manifest``) when it has no subject.
        """
        manifest = parse_manifest(data, digest=Digest.of(data))
        if manifest.subject is None:
            raise MalformedEvidenceError("a referrer manifest needs a subject", code="malformed_manifest")
        digest = self.write_blob(data)
        descriptor: dict[str, Any] = {"mediaType": manifest.media_type, "digest": str(digest), "size": len(data)}
        if manifest.artifact_type:
            descriptor["artifactType"] = manifest.artifact_type
        with self._lock:
            index = self.index()
            entries = [
                e for e in index.get("manifests", []) if not (isinstance(e, dict) and e.get("digest") == str(digest))
            ]
            index["manifests"] = [*entries, descriptor]
            index.setdefault("schemaVersion", 2)
            _write_atomic(self.path / "index.json", _dump_index(index))
        return digest

    def write_manifest(self, data: bytes, media_type: str, *, tag: str | None = None) -> Digest:
        """Store a manifest blob and return its digest.

        With ``tag`` the manifest is also listed in ``index.json`` with the ``ref.name`` annotation (replacing
        whatever had that tag); untagged manifests (index children, referrers) are stored as blobs only.
        Raises :class:`MalformedEvidenceError` (``malformed_manifest``) when ``data`` is not a JSON object.
        """
        load_json_object(data)
        digest = self.write_blob(data)
        if tag is not None:
            if not tag or len(tag) > 512:
                raise MalformedEvidenceError(f"not a usable tag: {tag[:100]!r}", code="bad_reference")
            descriptor = {
                "mediaType": media_type,
                "digest": str(digest),
                "size": len(data),
                "annotations": {REF_NAME_ANNOTATION: tag},
            }
            with self._lock:
                index = self.index()
                kept = [
                    entry
                    for entry in index.get("manifests", [])
                    if not (
                        isinstance(entry, dict) and (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION) == tag
                    )
                ]
                index["manifests"] = [*kept, descriptor]
                index.setdefault("schemaVersion", 2)
                _write_atomic(self.path / "index.json", _dump_index(index))
        return digest

    # -- internals ------------------------------------------------------------------------------------------------

    def _blob_path(self, digest: Digest) -> Path:
        # Digest.parse has already restricted algorithm and hex to safe characters.
        return self.path / "blobs" / digest.algorithm / digest.hex

    def _read_blob(self, digest: Digest, max_bytes: int, *, what: str) -> bytes:
        if not isinstance(digest, Digest):
            raise TypeError("digest must be a Digest")
        try:
            data = _read_file(self._blob_path(digest), max_bytes, what=f"{what} in {self.path}")
        except FileNotFoundError as err:
            raise NotFoundError(f"{what} not found in OCI layout {self.path}") from err
        if not digest.matches(data):
            raise MalformedEvidenceError(
                f"{what} in {self.path}: content hashes to {Digest.of(data, digest.algorithm)}",
                code="digest_mismatch",
            )
        return data


def push_layout(
    layout: OciLayout, client: RegistryClient, repository: str, *, tags: Iterable[str] | None = None
) -> dict[str, Digest]:
    """Copy tagged manifests of ``layout`` into ``repository`` through ``client``, with everything they reference.

    Indexes are copied recursively: blobs first, then child manifests by digest, then the tagged manifest, the
    order a registry needs to accept them. ``tags`` limits the copy (default: every tag). Returns ``{tag: digest}``.
    Raises :class:`NotFoundError` when the layout lacks a referenced manifest or blob (foreign layers with
    ``urls`` excepted), and whatever :class:`RegistryClient` raises.
    """
    wanted = list(layout.list_tags()) if tags is None else list(tags)
    pushed: set[Digest] = set()
    result: dict[str, Digest] = {}
    for tag in wanted:
        descriptor = layout.resolve(tag)
        manifest = layout.get_manifest(repository, descriptor.digest)
        _push_manifest_tree(layout, client, repository, manifest, pushed)
        result[tag] = client.push_manifest(repository, tag, manifest.data, manifest.media_type)
    return result


def _push_manifest_tree(
    layout: OciLayout, client: RegistryClient, repository: str, manifest: Manifest, pushed: set[Digest]
) -> None:
    """Push what ``manifest`` references, then ``manifest`` itself by digest."""
    if manifest.digest in pushed:
        return
    if manifest.is_index:
        for child in manifest.manifests:
            _push_manifest_tree(layout, client, repository, layout.get_manifest(repository, child.digest), pushed)
    else:
        blobs = [manifest.config] if manifest.config is not None else []
        for blob in [*blobs, *manifest.layers]:
            if blob.digest in pushed:
                continue
            if blob.urls and not layout.has_blob(blob.digest):
                continue  # a foreign layer: the registry is not expected to hold it
            client.push_blob(repository, layout.get_blob(repository, blob.digest, max_bytes=client.max_blob_bytes))
            pushed.add(blob.digest)
    client.push_manifest(repository, manifest.digest, manifest.data, manifest.media_type)
    pushed.add(manifest.digest)


def extract_layout_tar(
    source: str | os.PathLike[str] | IO[bytes], dest: str | os.PathLike[str], *, max_total_bytes: int = 2 * 1024**3
) -> OciLayout:
    """Extract an OCI layout from a tar (optionally compressed) into ``dest`` and open it.

    Only ``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>`` regular files are extracted; links, devices,
    absolute or ``..`` paths and everything else are skipped, so a hostile tar cannot write outside ``dest``.
    Raises :class:`MalformedEvidenceError` (``malformed_layout`` for an unreadable tar, ``too_large`` past
    ``max_total_bytes``) and whatever :class:`OciLayout` raises on open.
    """
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    total = 0
    try:
        with _open_tar(source) as archive:
            for member in archive:
                name = _layout_member_name(member)
                if name is None:
                    continue
                total += member.size
                if total > max_total_bytes:
                    raise MalformedEvidenceError(
                        f"layout tar holds more than {max_total_bytes} bytes", code="too_large"
                    )
                extracted = archive.extractfile(member)
                if extracted is None:
                    continue
                target = root.joinpath(*name.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with extracted, tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as out:
                    while chunk := extracted.read(1024 * 1024):
                        out.write(chunk)
                os.replace(out.name, target)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise MalformedEvidenceError(f"not a readable layout tar: {err}", code="malformed_layout") from err
    return OciLayout(root)


# --------------------------------------------------------------------------------------------------------------
# Helpers


def _as_digest(reference: str | Digest) -> Digest | None:
    """The digest ``reference`` names, or None when it is a tag.

    Any string is a valid ``ref.name`` in a layout (some tools write ``name:tag`` there), so only a well-formed
    digest counts as one.
    """
    if isinstance(reference, Digest):
        return reference
    try:
        return Digest.parse(reference)
    except MalformedEvidenceError:
        return None


def _open_tar(source: str | os.PathLike[str] | IO[bytes]) -> tarfile.TarFile:
    if isinstance(source, str | os.PathLike):
        return tarfile.open(source, mode="r:*")
    return tarfile.open(fileobj=source, mode="r:*")


def _layout_member_name(member: tarfile.TarInfo) -> str | None:
    """The normalised name of a tar member we extract, or None to skip it."""
    if not member.isreg():
        return None
    parts = [p for p in member.name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or member.name.startswith("/"):
        return None
    if parts in (["oci-layout"], ["index.json"]):
        return parts[0]
    if len(parts) == 3 and parts[0] == "blobs":
        try:
            Digest.parse(f"{parts[1]}:{parts[2]}")
        except MalformedEvidenceError:
            return None
        return "/".join(parts)
    return None


def _read_file(path: Path, max_bytes: int, *, what: str) -> bytes:
    """Read a file, refusing one over ``max_bytes`` (``too_large``). FileNotFoundError passes through."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise MalformedEvidenceError(f"{what} is {size} bytes, over the {max_bytes} byte limit", code="too_large")
        # Read one byte more than allowed: the file may have grown since fstat.
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise MalformedEvidenceError(f"{what} is over the {max_bytes} byte limit", code="too_large")
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as out:
        out.write(data)
    os.replace(out.name, path)


def _dump_index(index: dict[str, Any]) -> bytes:
    index.setdefault("mediaType", MediaType.OCI_INDEX)
    return json.dumps(index, indent=2).encode()
