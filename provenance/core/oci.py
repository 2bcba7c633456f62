"""A thin client for the OCI Distribution API (registries), over a synchronous ``httpx.Client``.

Reads are what verification needs: manifests (by tag or digest, every fetched byte checked against its
digest), blobs, tag lists and the OCI referrers API. Writes (``push_blob``, ``push_manifest``) exist for tests,
the demo and benchmarks.

Security notes that shaped this module:

* Every response body is size-capped before and while it is read; every manifest and blob is hashed and
  compared with the digest that was asked for (or, for a tag, with the registry's ``Docker-Content-Digest``).
* Credentials and tokens never appear in messages or logs. Bearer tokens are only sent to the registry's own
  origin, credentials only to the registry and to the token realm it names, never over plain HTTP unless the
  client was built with ``insecure=True``.
* httpx exceptions are translated once, here, into :mod:`provenance.core.errors`.
* Egress: redirects are followed only within the registry's origin or to hosts named in ``redirect_hosts``
  (blob storage: Docker Hub, GHCR, ECR, GCR and Artifact Registry answer blob GETs with a redirect to a CDN or
  bucket), at most five, never from HTTPS to HTTP. Unless ``allow_private`` is set, every connection (to the
  registry, a redirect target, a token realm) is refused when the name resolves to a loopback, private,
  link-local or otherwise non-global address; the address is checked when the socket is opened, so a DNS answer
  that changes between check and use cannot get around it. Error bodies are never kept: a message carries the
  HTTP status and at most the registry's OCI error code.
* Budgets: tags and pages of a listing, referrers, bytes and seconds per request are capped; :class:`Budget` and
  :class:`Metered` cap bytes and seconds per image and per scan.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import fnmatch
import functools
import ipaddress
import json
import logging
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from provenance.core.errors import (
    AuthenticationError,
    EgressRefusedError,
    LimitExceededError,
    MalformedEvidenceError,
    NotFoundError,
    RegistryError,
    TLSVerificationError,
    TransientError,
)
from provenance.core.types import INDEX_MEDIA_TYPES, Digest, MediaType

logger = logging.getLogger(__name__)

__all__ = [
    "MANIFEST_ACCEPT",
    "Budget",
    "Descriptor",
    "ListingTruncatedError",
    "Manifest",
    "Metered",
    "Registry",
    "RegistryClient",
    "load_json_object",
    "parse_manifest",
    "validate_reference",
    "validate_repository",
]

# Strict registries (distribution 2.8) answer 404 for an OCI manifest unless its media type is accepted,
# so always send all four.
MANIFEST_ACCEPT = ", ".join(
    [MediaType.OCI_INDEX, MediaType.OCI_MANIFEST, MediaType.DOCKER_LIST, MediaType.DOCKER_MANIFEST]
)
DEFAULT_MAX_JSON_DEPTH = 64
# Error bodies are only read for their message; a registry cannot make us read more than this.
_MAX_ERROR_BODY = 8 * 1024
DEFAULT_MAX_PAGES = 1_000  # Docker Hub pages by 100
DEFAULT_MAX_TAGS = 100_000  # a repository of 10,000 signed and attested images lists 30,000+
DEFAULT_MAX_REFERRERS = 1_000
DEFAULT_MAX_REQUEST_SECONDS = 120.0
_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_OCI_ERROR_CODE_RE = re.compile(r"^[A-Z][A-Z_]{0,39}$")
_MAX_RETRY_WAIT = 30.0
_TOKEN_EXPIRY_MARGIN = 10.0
_DEFAULT_TOKEN_LIFETIME = 60.0  # what the token spec says to assume when expires_in is absent

_REPOSITORY_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_HOST_RE = re.compile(r"^(?:[a-zA-Z0-9.-]+|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$")
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]*))')
_LINK_NEXT_RE = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)
# What a first path component must look like to name a registry rather than a namespace (Docker's rule).
_HOST_LIKE_RE = re.compile(
    r"^(?:[a-zA-Z0-9-]+\.[a-zA-Z0-9.-]+|localhost|[a-zA-Z0-9.-]+:[0-9]+|\[[0-9a-fA-F:]+\](?::[0-9]+)?)$"
)
_REGISTRY_ALIASES = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}


# --------------------------------------------------------------------------------------------------------------
# Value types


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what a manifest says about content it points to."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    artifact_type: str = ""
    platform: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, value: object) -> Descriptor:
        """Build a descriptor from its JSON object; raises :class:`MalformedEvidenceError` (``malformed_manifest``)."""
        if not isinstance(value, dict):
            raise MalformedEvidenceError("descriptor is not a JSON object", code="malformed_manifest")
        media_type = value.get("mediaType", "")
        size = value.get("size")
        annotations = value.get("annotations") or {}
        platform = value.get("platform")
        urls = value.get("urls") or []
        if (
            not isinstance(media_type, str)
            or not isinstance(size, int)
            or isinstance(size, bool)
            or size < 0
            or not isinstance(annotations, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
            or not (platform is None or isinstance(platform, dict))
            or not (isinstance(urls, list) and all(isinstance(u, str) for u in urls))
            or not isinstance(value.get("artifactType", ""), str)
        ):
            raise MalformedEvidenceError("descriptor has missing or mistyped fields", code="malformed_manifest")
        digest = value.get("digest")
        if not isinstance(digest, str):
            raise MalformedEvidenceError("descriptor has no digest", code="malformed_manifest")
        return cls(
            media_type=media_type,
            digest=Digest.parse(digest),
            size=size,
            annotations=dict(annotations),
            artifact_type=value.get("artifactType", ""),
            platform=platform,
            urls=tuple(urls),
        )

    def as_json(self) -> dict[str, Any]:
        """Return the descriptor as a JSON-ready dict (only fields that are set)."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = dict(self.platform)
        if self.urls:
            out["urls"] = list(self.urls)
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index exactly as fetched: its verified digest, media type, raw bytes and parsed JSON.

    ``data`` is what the digest covers; ``json`` is parsed from it once, with size and depth limits.
    """

    digest: Digest
    media_type: str
    data: bytes = field(repr=False)
    json: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def is_index(self) -> bool:
        """Whether this is an OCI index or a Docker manifest list."""
        return self.media_type in INDEX_MEDIA_TYPES

    @property
    def manifests(self) -> tuple[Descriptor, ...]:
        """The child manifests of an index (empty for an image manifest)."""
        return self._descriptors("manifests")

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        """The layers of an image manifest (empty for an index)."""
        return self._descriptors("layers")

    @property
    def config(self) -> Descriptor | None:
        """The config descriptor of an image manifest, or None for an index."""
        value = self.json.get("config")
        return Descriptor.from_json(value) if value is not None else None

    @property
    def subject(self) -> Descriptor | None:
        """The ``subject`` of a referrer manifest, or None."""
        value = self.json.get("subject")
        return Descriptor.from_json(value) if value is not None else None

    @property
    def artifact_type(self) -> str:
        """``artifactType``, falling back to the config media type as the OCI 1.1 spec says."""
        value = self.json.get("artifactType")
        if isinstance(value, str) and value:
            return value
        config = self.config
        return config.media_type if config is not None else ""

    @property
    def annotations(self) -> dict[str, str]:
        """The manifest's own annotations (empty when absent or mistyped)."""
        value = self.json.get("annotations")
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return dict(value)
        return {}

    def _descriptors(self, key: str) -> tuple[Descriptor, ...]:
        value = self.json.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise MalformedEvidenceError(f"manifest field {key!r} is not a list", code="malformed_manifest")
        return tuple(Descriptor.from_json(item) for item in value)


def load_json_object(
    data: bytes, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH, code: str = "malformed_manifest", what: str = "manifest"
) -> dict[str, Any]:
    """Parse ``data`` as a JSON object no deeper than ``max_depth``.

    Returns the object. Raises :class:`MalformedEvidenceError` with ``code`` when the bytes are not UTF-8 JSON,
    not an object, or nested too deeply. The size is the caller's to cap (before reading).
    """
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise MalformedEvidenceError(f"{what} is not valid JSON: {str(err)[:200]}", code=code) from err
    if not isinstance(value, dict):
        raise MalformedEvidenceError(f"{what} is not a JSON object", code=code)
    # json.loads only stops at the interpreter's recursion limit; walk iteratively to apply our own.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise MalformedEvidenceError(f"{what} JSON is nested deeper than {max_depth}", code=code)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return value


def parse_manifest(data: bytes, *, digest: Digest, media_type: str = "") -> Manifest:
    """Build a :class:`Manifest` from bytes already checked against ``digest``.

    The media type is taken from the manifest's own ``mediaType`` field when present, because those bytes are
    covered by the digest while a ``Content-Type`` header is not; ``media_type`` (the header, or a descriptor's
    type) is the fallback, then the shape of the JSON. Raises :class:`MalformedEvidenceError`
    (``malformed_manifest``) for bad JSON.
    """
    parsed = load_json_object(data)
    declared = parsed.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise MalformedEvidenceError("manifest mediaType is not a string", code="malformed_manifest")
    header_type = media_type.split(";", 1)[0].strip()
    if declared:
        resolved = declared
    elif header_type and header_type not in {"application/json", "application/octet-stream", "text/plain"}:
        resolved = header_type
    else:
        resolved = MediaType.OCI_INDEX if "manifests" in parsed else MediaType.OCI_MANIFEST
    return Manifest(digest=digest, media_type=str(resolved), data=data, json=parsed)


def validate_repository(repository: str) -> str:
    """Return ``repository`` if it is a valid repository name; raises :class:`MalformedEvidenceError` otherwise.

    Checked before it becomes part of a URL path, so that ``..`` or ``?`` cannot reach the registry.
    """
    if not isinstance(repository, str) or len(repository) > 255 or not _REPOSITORY_RE.match(repository):
        raise MalformedEvidenceError(f"not a repository name: {str(repository)[:100]!r}", code="bad_reference")
    return repository


def signature_place(signature_repository: str, *, default_registry: str) -> tuple[str, str]:
    """Parse a ``COSIGN_REPOSITORY``-style value: ``registry/name``, or ``name`` on the image's registry.

    Returns ``(registry, repository)``; raises :class:`MalformedEvidenceError` for an invalid repository name.
    """
    first, _, rest = signature_repository.partition("/")
    if rest and _HOST_LIKE_RE.match(first):
        return first, validate_repository(rest)
    return default_registry, validate_repository(signature_repository)


def validate_reference(reference: str | Digest) -> str | Digest:
    """Return a tag (str) or a :class:`Digest` for ``reference``.

    A string containing ``:`` is parsed as a digest. Raises :class:`MalformedEvidenceError` (``bad_reference`` or
    ``bad_digest``) when it is neither a tag nor a digest.
    """
    if isinstance(reference, Digest):
        return reference
    if isinstance(reference, str) and ":" in reference:
        return Digest.parse(reference)
    if not isinstance(reference, str) or not _TAG_RE.match(reference):
        raise MalformedEvidenceError(f"not a tag or digest: {str(reference)[:100]!r}", code="bad_reference")
    return reference


@runtime_checkable
class Registry(Protocol):
    """The read side of a registry. :class:`RegistryClient` and ``ocilayout.OciLayout`` implement it."""

    def get_manifest(self, repository: str, reference: str | Digest) -> Manifest:
        """Return the manifest for a tag or digest; raise NotFoundError or MalformedEvidenceError."""
        ...

    def get_blob(self, repository: str, digest: Digest, *, max_bytes: int | None = None) -> bytes:
        """Return the blob's bytes, checked against ``digest``; raise NotFoundError or MalformedEvidenceError."""
        ...

    def list_tags(self, repository: str) -> list[str]:
        """Return the repository's tags."""
        ...


# --------------------------------------------------------------------------------------------------------------
# The HTTP client


@dataclass(frozen=True, slots=True)
class _Reply:
    """A response whose body has been read (size-capped) and whose connection is released."""

    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class _Challenge:
    scheme: str  # "bearer" or "basic", lower case
    params: dict[str, str]


class RegistryClient:
    """A client for one registry, reusing connections; safe to share between threads.

    ``registry`` is ``host[:port]``. HTTPS is used unless ``insecure=True``, which means plain HTTP (for local
    test registries only). ``ca_file`` (a path) or ``ca_certificates`` (PEM text) replaces the system CAs for TLS
    with the given ones, for registries behind a private CA. Authentication is anonymous,
    HTTP Basic, or Bearer tokens fetched from the realm the registry names (with the basic credentials when
    given), cached per scope until they expire.

    Size limits: manifests are capped at ``max_manifest_bytes``, blobs at ``max_blob_bytes`` (each call may lower
    or raise it). 429 and 5xx answers, timeouts and connection errors are retried ``retries`` times with
    exponential backoff (honouring ``Retry-After`` up to 30 s) before :class:`TransientError` is raised.
    """

    def __init__(
        self,
        registry: str,
        *,
        username: str | None = None,
        password: str | None = None,
        insecure: bool = False,
        ca_file: str | None = None,
        ca_certificates: str | None = None,
        timeout: float = 10.0,
        max_manifest_bytes: int = 4 * 1024 * 1024,
        max_blob_bytes: int = 64 * 1024 * 1024,
        retries: int = 3,
        backoff: float = 0.5,
        max_connections: int = 20,
        transport: httpx.BaseTransport | None = None,
        allow_private: bool = True,
        redirect_hosts: tuple[str, ...] = (),
        max_tags: int = DEFAULT_MAX_TAGS,
        max_pages: int = DEFAULT_MAX_PAGES,
        max_referrers: int = DEFAULT_MAX_REFERRERS,
        max_request_seconds: float = DEFAULT_MAX_REQUEST_SECONDS,
    ) -> None:
        registry = _REGISTRY_ALIASES.get(registry, registry)
        if not isinstance(registry, str) or not _HOST_RE.match(registry):
            raise ValueError(f"registry must be host[:port], got {str(registry)[:100]!r}")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.registry = registry
        self.insecure = insecure
        self.max_manifest_bytes = max_manifest_bytes
        self.max_blob_bytes = max_blob_bytes
        self.retries = max(0, retries)
        self.backoff = backoff
        self.allow_private = allow_private
        self.redirect_hosts = tuple(h.strip().lower() for h in redirect_hosts if h.strip())
        self.max_tags = max(1, max_tags)
        self.max_pages = max(1, max_pages)
        self.max_listed_referrers = max(1, max_referrers)
        self.max_request_seconds = max(0.001, max_request_seconds)
        self._base = f"{'http' if insecure else 'https'}://{registry}"
        self._origin = urlsplit(self._base)
        self._username = username
        self._password = password
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._uses_basic = False  # set once the registry asks for Basic, so later requests send it up front
        try:
            verify = _ssl_context(ca_file, ca_certificates or None)
        except (ssl.SSLError, OSError, ValueError) as err:
            raise RegistryError(f"unusable CA certificates for {registry}: {err}", code="bad_ca") from err
        self._no_referrers_api: set[str] = set()  # repositories where the registry answered 404 (no API)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            verify=verify,
            # Redirects are followed by _request, under the egress rules (blob GETs may redirect to storage).
            follow_redirects=False,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"User-Agent": "provenance-oci/1"},
            transport=transport,
        )
        if transport is None:
            # Check the address of every connection as it is opened (proxied requests are the proxy's to check).
            pool = getattr(self._http._transport, "_pool", None)
            if isinstance(pool, httpcore.ConnectionPool):
                pool._network_backend = _GuardedBackend(allow_private=allow_private, registry=registry)

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections. The client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # Never show credentials.
        authenticated = self._username is not None
        return f"RegistryClient({self.registry!r}, insecure={self.insecure}, authenticated={authenticated})"

    # -- reads ----------------------------------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str | Digest) -> Manifest:
        """Fetch a manifest or index by tag or digest.

        Returns a :class:`Manifest` whose digest is computed from the bytes received. Raises
        :class:`NotFoundError` when absent, :class:`MalformedEvidenceError` with code ``digest_mismatch`` when the
        bytes do not hash to the digest asked for (or, for a tag, to the registry's ``Docker-Content-Digest``),
        ``too_large`` above ``max_manifest_bytes`` and ``malformed_manifest`` for bad JSON;
        :class:`AuthenticationError`, :class:`RegistryError` and :class:`TransientError` as described on the class.
        """
        repository = validate_repository(repository)
        ref = validate_reference(reference)
        url = f"{self._base}/v2/{repository}/manifests/{ref}"
        what = f"manifest {_describe(repository, ref)}"
        reply = self._request(
            "GET",
            url,
            scope=_pull_scope(repository),
            headers={"Accept": MANIFEST_ACCEPT},
            max_bytes=self.max_manifest_bytes,
            what=what,
        )
        return self._manifest_from(reply, ref, what)

    def _manifest_from(self, reply: _Reply, ref: str | Digest, what: str) -> Manifest:
        self._check(reply, what)
        data = reply.body
        if isinstance(ref, Digest):
            digest = ref
            if not ref.matches(data):
                raise MalformedEvidenceError(
                    f"{what} from {self.registry}: content hashes to {Digest.of(data, ref.algorithm)}, not {ref}",
                    code="digest_mismatch",
                )
        else:
            digest = Digest.of(data)
            header = _header_digest(reply.headers)
            if header is not None and not header.matches(data):
                raise MalformedEvidenceError(
                    f"{what} from {self.registry}: content hashes to {Digest.of(data, header.algorithm)} but the "
                    f"registry says {header}",
                    code="digest_mismatch",
                )
        return parse_manifest(data, digest=digest, media_type=reply.headers.get("Content-Type", ""))

    def head_manifest(self, repository: str, reference: str | Digest) -> Digest | None:
        """Return the digest of a manifest by tag or digest, or None when it does not exist.

        Uses HEAD and the ``Docker-Content-Digest`` header; falls back to a GET (and hashing) when the registry
        does not send it. Raises :class:`AuthenticationError`, :class:`RegistryError`, :class:`TransientError`.
        """
        repository = validate_repository(repository)
        ref = validate_reference(reference)
        url = f"{self._base}/v2/{repository}/manifests/{ref}"
        what = f"manifest {_describe(repository, ref)}"
        reply = self._request(
            "HEAD", url, scope=_pull_scope(repository), headers={"Accept": MANIFEST_ACCEPT}, max_bytes=0, what=what
        )
        if reply.status == 404:
            return None
        self._check(reply, what)
        header = _header_digest(reply.headers)
        if header is not None:
            if isinstance(ref, Digest) and header.algorithm == ref.algorithm and header != ref:
                raise MalformedEvidenceError(
                    f"{what} from {self.registry}: registry answered for {header}", code="digest_mismatch"
                )
            return header
        try:
            return self.get_manifest(repository, ref).digest
        except NotFoundError:
            return None

    def get_manifest_if_changed(self, repository: str, tag: str, known: Digest) -> Manifest | None:
        """Fetch the manifest ``tag`` names unless it is still ``known``: one conditional GET (``If-None-Match``
        with the digest, the registry's ETag for a manifest). Returns None when the registry answers 304 Not
        Modified, else the manifest (checked as :meth:`get_manifest` checks it; a registry that ignores the
        condition just sends it). Raises as :meth:`get_manifest`.
        """
        repository = validate_repository(repository)
        ref = validate_reference(tag)
        if not isinstance(ref, str) or not isinstance(known, Digest):
            raise TypeError("a tag and a known Digest are expected")
        url = f"{self._base}/v2/{repository}/manifests/{ref}"
        what = f"manifest {_describe(repository, ref)}"
        reply = self._request("GET", url, scope=_pull_scope(repository), max_bytes=self.max_manifest_bytes,
                              what=what, headers={"Accept": MANIFEST_ACCEPT, "If-None-Match": f'"{known}"'})
        if reply.status == 304:
            return None
        return self._manifest_from(reply, ref, what)

    def get_blob(self, repository: str, digest: Digest, *, max_bytes: int | None = None) -> bytes:
        """Fetch a blob, streamed and capped at ``max_bytes`` (default ``max_blob_bytes``).

        Returns the bytes, checked against ``digest``. Raises :class:`NotFoundError`,
        :class:`MalformedEvidenceError` (``too_large``, ``digest_mismatch``), :class:`AuthenticationError`,
        :class:`RegistryError`, :class:`TransientError`.
        """
        repository = validate_repository(repository)
        if not isinstance(digest, Digest):
            raise TypeError("digest must be a Digest")
        limit = self.max_blob_bytes if max_bytes is None else max_bytes
        what = f"blob {repository}@{digest}"
        reply = self._request(
            "GET",
            f"{self._base}/v2/{repository}/blobs/{digest}",
            scope=_pull_scope(repository),
            max_bytes=limit,
            what=what,
        )
        self._check(reply, what)
        if not digest.matches(reply.body):
            raise MalformedEvidenceError(
                f"{what} from {self.registry}: content hashes to {Digest.of(reply.body, digest.algorithm)}",
                code="digest_mismatch",
            )
        return reply.body

    def list_tags(self, repository: str, *, page_size: int | None = None) -> list[str]:
        """Return every tag of ``repository``, following ``Link: <...>; rel="next"`` pages.

        Raises :class:`ListingTruncatedError` (carrying the tags read so far) past ``max_tags`` tags or
        ``max_pages`` pages, :class:`NotFoundError` when the repository is unknown, :class:`RegistryError` when a
        page is not the expected JSON or a next link leaves the registry, and the usual auth and transient errors.
        """
        repository = validate_repository(repository)
        url = f"{self._base}/v2/{repository}/tags/list"
        if page_size is not None:
            url += f"?n={int(page_size)}"
        what = f"tags of {repository}"
        tags: list[str] = []
        pages = self._pages(url, scope=_pull_scope(repository), what=what, headers={})
        while True:
            try:
                reply = next(pages)
            except StopIteration:
                break
            except ListingTruncatedError as err:
                raise ListingTruncatedError(err.message, limit=err.limit, partial=tags[: self.max_tags]) from err
            body = _load_registry_json(reply.body, what=f"{what} on {self.registry}")
            page = body.get("tags") or []  # distribution answers "tags": null for a repository without tags
            if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                raise RegistryError(f"{what} on {self.registry}: 'tags' is not a list of strings")
            tags.extend(page)
            if len(tags) > self.max_tags:
                raise ListingTruncatedError(
                    f"{what} on {self.registry}: more than {self.max_tags} tags; only the first {self.max_tags} "
                    "were read", limit="max_tags", partial=tags[: self.max_tags])
        return tags

    def referrers(
        self, repository: str, digest: Digest, *, artifact_type: str | None = None
    ) -> list[dict[str, Any]] | None:
        """Return the descriptors (JSON dicts) of manifests whose ``subject`` is ``digest``.

        Uses the OCI 1.1 referrers API. Returns None when the registry does not support it (it answers 404,
        which a supporting registry never does); callers then fall back to the ``sha256-<hex>`` tag. When
        ``artifact_type`` is given, only matching descriptors are returned (filtered here when the registry did
        not). Raises :class:`RegistryError` for a malformed answer, and the usual auth and transient errors.
        """
        repository = validate_repository(repository)
        with self._lock:
            if repository in self._no_referrers_api:
                return None  # known: a registry either has the API or not; do not ask for every digest
        url = f"{self._base}/v2/{repository}/referrers/{digest}"
        if artifact_type:
            url = str(httpx.URL(url, params={"artifactType": artifact_type}))
        what = f"referrers of {repository}@{digest}"
        found: list[dict[str, Any]] = []
        filtered = False
        try:
            for reply in self._pages(
                url, scope=_pull_scope(repository), what=what, headers={"Accept": MediaType.OCI_INDEX}
            ):
                body = _load_registry_json(reply.body, what=f"{what} on {self.registry}")
                manifests = body.get("manifests") or []
                if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
                    raise RegistryError(f"{what} on {self.registry}: 'manifests' is not a list of objects")
                found.extend(manifests)
                filtered = filtered or "artifactType" in reply.headers.get("OCI-Filters-Applied", "")
                if len(found) > self.max_listed_referrers:
                    # One more than the limit, so that the caller can tell there were more; no further pages.
                    found = found[: self.max_listed_referrers + 1]
                    break
        except NotFoundError:
            with self._lock:
                self._no_referrers_api.add(repository)
            return None
        if artifact_type and not filtered:
            found = [m for m in found if m.get("artifactType") == artifact_type]
        return found

    # -- writes (tests, demo, benchmarks) --------------------------------------------------------------------------

    def push_blob(self, repository: str, data: bytes) -> Digest:
        """Upload ``data`` as a blob (monolithic POST then PUT), skipping it when the registry already has it.

        Returns its sha256 digest. Raises :class:`RegistryError` (and subclasses) or :class:`TransientError`.
        """
        repository = validate_repository(repository)
        digest = Digest.of(data)
        scope = _push_scope(repository)
        what = f"blob {repository}@{digest}"
        blob_url = f"{self._base}/v2/{repository}/blobs/{digest}"
        exists = self._request("HEAD", blob_url, scope=scope, max_bytes=0, what=what)
        if exists.status == 200:
            return digest
        if exists.status != 404:
            self._check(exists, what)
        started = self._request(
            "POST", f"{self._base}/v2/{repository}/blobs/uploads/", scope=scope, max_bytes=_MAX_ERROR_BODY, what=what
        )
        self._check(started, f"upload of {what}")
        location = started.headers.get("Location")
        if not location:
            raise RegistryError(f"upload of {what} to {self.registry}: no Location in the answer")
        upload = httpx.URL(self._same_origin(location, what=f"upload of {what}"))
        upload = upload.copy_merge_params({"digest": str(digest)})
        finished = self._request(
            "PUT",
            str(upload),
            scope=scope,
            headers={"Content-Type": "application/octet-stream"},
            content=data,
            max_bytes=_MAX_ERROR_BODY,
            what=what,
        )
        self._check(finished, f"upload of {what}")
        return digest

    def push_manifest(self, repository: str, reference: str | Digest, data: bytes, media_type: str) -> Digest:
        """Upload a manifest under a tag or its digest. Returns the digest of ``data``.

        Raises :class:`MalformedEvidenceError` (``digest_mismatch``) when ``reference`` is a digest other than that
        of ``data``, or when the registry reports a different digest; :class:`RegistryError` when it refuses the
        manifest (for example because a referenced blob is missing), and the usual auth and transient errors.
        """
        repository = validate_repository(repository)
        ref = validate_reference(reference)
        digest = Digest.of(data, ref.algorithm if isinstance(ref, Digest) else "sha256")
        if isinstance(ref, Digest) and ref != digest:
            raise MalformedEvidenceError(f"manifest bytes hash to {digest}, not {ref}", code="digest_mismatch")
        if len(data) > self.max_manifest_bytes:
            raise MalformedEvidenceError(
                f"manifest is {len(data)} bytes, over the {self.max_manifest_bytes} byte limit", code="too_large"
            )
        what = f"manifest {_describe(repository, ref)}"
        reply = self._request(
            "PUT",
            f"{self._base}/v2/{repository}/manifests/{ref}",
            scope=_push_scope(repository),
            headers={"Content-Type": media_type},
            content=data,
            max_bytes=_MAX_ERROR_BODY,
            what=what,
        )
        self._check(reply, f"push of {what}")
        header = _header_digest(reply.headers)
        if header is not None and header.algorithm == digest.algorithm and header != digest:
            raise MalformedEvidenceError(
                f"push of {what} to {self.registry}: registry stored {header}, expected {digest}",
                code="digest_mismatch",
            )
        return digest

    def delete_manifest(self, repository: str, digest: Digest) -> None:
        """Delete a manifest (and so every tag pointing at it). Raises :class:`NotFoundError` and the usual."""
        repository = validate_repository(repository)
        what = f"manifest {repository}@{digest}"
        reply = self._request(
            "DELETE",
            f"{self._base}/v2/{repository}/manifests/{digest}",
            scope=_push_scope(repository).replace("pull,push", "delete"),
            max_bytes=_MAX_ERROR_BODY,
            what=what,
        )
        self._check(reply, f"delete of {what}")

    # -- plumbing -------------------------------------------------------------------------------------------------

    def _pages(self, url: str, *, scope: str, what: str, headers: dict[str, str]) -> Iterator[_Reply]:
        """Yield successive pages of a paginated JSON listing (checked replies); at most ``max_pages``."""
        for _ in range(self.max_pages):
            reply = self._request(
                "GET", url, scope=scope, headers=headers, max_bytes=self.max_manifest_bytes, what=what
            )
            self._check(reply, what)
            yield reply
            match = _LINK_NEXT_RE.search(reply.headers.get("Link", ""))
            if not match:
                return
            # The next link is relative to the page; it must not take our credentials elsewhere.
            url = self._same_origin(urljoin(str(reply.url), match.group(1)), what=what)
        raise ListingTruncatedError(f"{what} on {self.registry}: more than {self.max_pages} pages; only the first "
                                    f"{self.max_pages} were read", limit="max_pages")

    def _redirect_target(self, current: str, location: str, *, what: str) -> str:
        """Where a redirect may take a request: the registry's own origin, or a host ``redirect_hosts`` allows
        (patterns like ``*.s3.amazonaws.com``); never from HTTPS to HTTP. Raises :class:`RegistryError`
        (``redirect_refused``) otherwise; the refused URL's path and query are not repeated."""
        if not location:
            raise RegistryError(f"{what}: {self.registry} sent a redirect without a Location", code="redirect_refused")
        target = urlsplit(urljoin(current, location.strip()))
        if target.netloc == self._origin.netloc and target.scheme in ("http", "https"):
            return target._replace(scheme=self._origin.scheme).geturl()
        host = (target.hostname or "").lower()
        if target.scheme not in ("http", "https") or not host:
            raise RegistryError(f"{what}: {self.registry} redirected to an unusable URL", code="redirect_refused")
        if target.scheme == "http" and not self.insecure:
            raise RegistryError(f"{what}: {self.registry} redirected from HTTPS to plain HTTP ({host[:100]})",
                                code="redirect_refused")
        if not any(fnmatch.fnmatchcase(host, pattern) for pattern in self.redirect_hosts):
            raise RegistryError(
                f"{what}: {self.registry} redirected to another host ({host[:100]}), which is not an allowed "
                "redirect host (PROVENANCE_REDIRECT_HOSTS)", code="redirect_refused")
        return target.geturl()

    def _same_origin(self, url: str, *, what: str) -> str:
        """Resolve ``url`` against the registry and refuse it when it points at another host."""
        resolved = urlsplit(urljoin(self._base + "/", url))
        if resolved.netloc != self._origin.netloc:
            raise RegistryError(f"{what}: registry {self.registry} sent a URL for another host ({resolved.netloc})")
        # Keep our scheme: a proxy that rewrites https to http must not downgrade us.
        return resolved._replace(scheme=self._origin.scheme).geturl()

    def _check(self, reply: _Reply, what: str) -> None:
        """Raise the error that an unsuccessful status means."""
        status = reply.status
        if 200 <= status < 300:
            return
        # Only the status and the registry's OCI error code: an error body is the server's text (an internal
        # service's page, behind a redirect or a hostile registry), never stored or shown.
        code = _error_code(reply.body)
        suffix = f" ({code})" if code else ""
        if status in (401, 403):
            raise AuthenticationError(f"authentication failed for {self.registry}: {what}: HTTP {status}{suffix}")
        if status == 404:
            raise NotFoundError(f"{what} not found on {self.registry} (HTTP 404{', ' + code if code else ''})")
        if status == 429 or status >= 500:
            raise TransientError(f"{what}: {self.registry} answered HTTP {status}{suffix}")
        raise RegistryError(f"{what}: {self.registry} answered HTTP {status}{suffix}")

    def _request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        what: str,
        max_bytes: int,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> _Reply:
        """Send a request with authentication and retries; return the reply with its body read.

        Successful bodies are capped at ``max_bytes`` (``too_large``), error bodies at a few KiB. Every request
        here is safe to repeat (reads, and content-addressed writes), so all of them are retried.
        """
        attempt = 0
        redirects = 0
        authenticated = False  # whether credentials were freshly obtained for this request
        deadline = time.monotonic() + self.max_request_seconds
        while True:
            auth = self._auth_headers(scope, url)
            request = self._http.build_request(method, url, headers=auth | (headers or {}), content=content)
            try:
                response = self._http.send(request, stream=True)
                try:
                    status = response.status_code
                    if status in _REDIRECT_STATUSES and method in ("GET", "HEAD"):
                        _drain(response)
                        redirects += 1
                        if redirects > _MAX_REDIRECTS:
                            raise RegistryError(f"{what}: {self.registry} redirected more than {_MAX_REDIRECTS} "
                                                "times", code="too_many_redirects")
                        url = self._redirect_target(url, response.headers.get("Location", ""), what=what)
                        continue
                    if status == 401 and not authenticated:
                        # Authenticate once; a cached token that was refused is replaced once, too.
                        _drain(response)
                        authenticated = True
                        if self._authenticate(response.headers, scope=scope, had_auth=bool(auth)):
                            continue
                    if (status == 429 or status >= 500) and attempt < self.retries:
                        wait = self._retry_wait(attempt, response.headers.get("Retry-After"))
                        if wait is not None:
                            _drain(response)
                            attempt += 1
                            logger.info("%s: %s answered %s; retrying in %.2fs", what, self.registry, status, wait)
                            time.sleep(wait)
                            continue
                    ok = 200 <= status < 300
                    body = _read_capped(response, max_bytes if ok else _MAX_ERROR_BODY, what=what, strict=ok,
                                        deadline=deadline)
                    return _Reply(status, response.headers, body, response.url)
                finally:
                    response.close()
            except httpx.TimeoutException as err:
                failure: httpx.TransportError = err
                reason = f"timed out after {self._http.timeout.read}s ({type(err).__name__})"
            except httpx.TransportError as err:
                if _is_tls_verification_failure(err):
                    # A certificate that does not verify will not verify on retry: permanent, and say so.
                    raise TLSVerificationError(
                        f"{what}: the TLS certificate of {self.registry} does not verify ({err}); "
                        "configure the registry's CA on the source"
                    ) from err
                failure = err
                reason = f"{type(err).__name__}: {err}"
            except httpx.HTTPError as err:  # e.g. too many redirects
                raise RegistryError(f"{what}: {self.registry}: {type(err).__name__}: {err}") from err
            if attempt >= self.retries:
                raise TransientError(f"{what}: could not reach {self.registry}: {reason}") from failure
            wait = self._retry_wait(attempt, None) or 0.0
            attempt += 1
            logger.info("%s: %s unreachable (%s); retrying in %.2fs", what, self.registry, reason, wait)
            time.sleep(wait)

    def _retry_wait(self, attempt: int, retry_after: str | None) -> float | None:
        """Seconds to wait before the next attempt; None when the registry asks for longer than we will wait."""
        if retry_after:
            seconds = _parse_retry_after(retry_after)
            if seconds is not None:
                return seconds if seconds <= _MAX_RETRY_WAIT else None
        # Jitter (50-100% of the step) keeps many workers from retrying in lockstep.
        step = min(_MAX_RETRY_WAIT, self.backoff * (2.0**attempt))
        return step * (0.5 + random.random() / 2)  # noqa: S311 (jitter, not secrecy)

    # -- authentication -------------------------------------------------------------------------------------------

    def _auth_headers(self, scope: str, url: str) -> dict[str, str]:
        if urlsplit(url).netloc != self._origin.netloc:
            return {}
        with self._lock:
            token = self._tokens.get(scope)
            if token is not None and token.expires_at > time.monotonic():
                return {"Authorization": f"Bearer {token.value}"}
            uses_basic = self._uses_basic
        if uses_basic and self._username is not None:
            return {"Authorization": self._basic_header()}
        return {}

    def _basic_header(self) -> str:
        raw = f"{self._username}:{self._password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def _authenticate(self, headers: httpx.Headers, *, scope: str, had_auth: bool) -> bool:
        """React to a 401: prepare credentials for a retry. Returns False when retrying cannot help."""
        challenge = _parse_challenge(headers.get_list("WWW-Authenticate"))
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            if self._username is None:
                raise AuthenticationError(
                    f"authentication failed for {self.registry}: the registry requires credentials"
                )
            with self._lock:
                already = self._uses_basic
                self._uses_basic = True
            # Retry unless our credentials were already sent and refused.
            return not (already and had_auth)
        with self._lock:
            self._tokens.pop(scope, None)
        self._fetch_token(challenge.params, scope=scope)
        return True

    def _fetch_token(self, params: dict[str, str], *, scope: str) -> None:
        """Get a bearer token for ``scope`` from the realm in the challenge and cache it."""
        realm = params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise AuthenticationError(
                f"authentication failed for {self.registry}: unusable token realm {realm[:200]!r}"
            )
        if parts.scheme == "http" and not self.insecure:
            raise AuthenticationError(
                f"authentication failed for {self.registry}: token realm {realm[:200]!r} is plain HTTP"
            )
        # Ask for what the challenge names and for what this kind of request needs: a HEAD before a push is
        # challenged for "pull" only, and a pull-only token cached under the push scope would be refused next.
        scopes = params.get("scope", "").split()
        if scope not in scopes:
            scopes.append(scope)
        query: list[tuple[str, str | int | float | bool | None]] = [("scope", s) for s in scopes]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        headers = {"Authorization": self._basic_header()} if self._username is not None else {}
        what = f"token for {self.registry} ({' '.join(scopes)})"
        try:
            with self._http.stream("GET", realm, params=query, headers=headers) as response:
                status = response.status_code
                body = _read_capped(response, 64 * 1024, what=what, strict=status == 200)
        except httpx.TimeoutException as err:
            raise TransientError(f"{what}: the token service timed out") from err
        except httpx.HTTPError as err:
            raise TransientError(f"{what}: could not reach the token service: {type(err).__name__}: {err}") from err
        if status in (401, 403):
            who = "credentials" if self._username is not None else "anonymous request"
            raise AuthenticationError(
                f"authentication failed for {self.registry}: the token service refused the {who} (HTTP {status})"
            )
        if status == 429 or status >= 500:
            raise TransientError(f"{what}: the token service answered HTTP {status}")
        if status != 200:
            raise AuthenticationError(
                f"authentication failed for {self.registry}: the token service answered HTTP {status}"
            )
        try:
            payload = load_json_object(body, code="malformed_token", what="token response")
        except MalformedEvidenceError as err:
            raise AuthenticationError(f"authentication failed for {self.registry}: {err.message}") from err
        token = payload.get("token") or payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"authentication failed for {self.registry}: token response has no token")
        expires_in = payload.get("expires_in")
        lifetime = _DEFAULT_TOKEN_LIFETIME
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
            lifetime = float(expires_in)
        expires_at = time.monotonic() + max(1.0, lifetime - _TOKEN_EXPIRY_MARGIN)
        with self._lock:
            self._tokens[scope] = _Token(token, expires_at)


# --------------------------------------------------------------------------------------------------------------
# Helpers


def _pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def _push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _describe(repository: str, reference: str | Digest) -> str:
    return f"{repository}@{reference}" if isinstance(reference, Digest) else f"{repository}:{reference}"


def _header_digest(headers: httpx.Headers) -> Digest | None:
    value = headers.get("Docker-Content-Digest")
    if not value:
        return None
    try:
        return Digest.parse(value.strip())
    except MalformedEvidenceError:
        return None  # a garbled header is not evidence of anything; the bytes are still checked


def _parse_challenge(values: list[str]) -> _Challenge | None:
    """Pick the Bearer (preferred) or Basic challenge from ``WWW-Authenticate`` headers."""
    found: dict[str, _Challenge] = {}
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        scheme = scheme.lower()
        if scheme in ("bearer", "basic") and scheme not in found:
            params = {
                m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                for m in _CHALLENGE_PARAM_RE.finditer(rest)
            }
            found[scheme] = _Challenge(scheme, params)
    return found.get("bearer") or found.get("basic")


def _is_tls_verification_failure(err: BaseException) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(err)


def _parse_retry_after(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _read_capped(response: httpx.Response, max_bytes: int, *, what: str, strict: bool,
                 deadline: float | None = None) -> bytes:
    """Read a streamed body up to ``max_bytes``, and (with ``deadline``, a ``time.monotonic()`` value) for no
    longer than until then: a registry that trickles its answer is cut off (:class:`LimitExceededError`).

    With ``strict`` a longer body is an error (``too_large``), checked against Content-Length before reading
    and against the bytes while streaming; otherwise (error bodies) it is truncated.
    """
    if response.request.method == "HEAD":
        # No body, but the (empty) stream must be read to its end, or the connection is closed, not kept.
        for _ in response.iter_bytes():
            pass
        return b""
    declared = response.headers.get("Content-Length", "")
    if strict and declared.isdigit() and int(declared) > max_bytes:
        raise MalformedEvidenceError(f"{what} is {declared} bytes, over the {max_bytes} byte limit", code="too_large")
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        if deadline is not None and time.monotonic() > deadline:
            raise LimitExceededError(f"{what}: the answer took longer than the per-request limit",
                                     limit="max_request_seconds")
        total += len(chunk)
        if total > max_bytes:
            if strict:
                raise MalformedEvidenceError(f"{what} is over the {max_bytes} byte limit", code="too_large")
            chunks.append(chunk[: max_bytes - (total - len(chunk))])
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _drain(response: httpx.Response) -> None:
    """Read a small error body so the connection can be reused; a large one is just closed."""
    with contextlib.suppress(httpx.HTTPError):
        _read_capped(response, _MAX_ERROR_BODY, what="", strict=False)


def _load_registry_json(body: bytes, *, what: str) -> dict[str, Any]:
    try:
        return load_json_object(body, code="malformed_response", what=what)
    except MalformedEvidenceError as err:
        raise RegistryError(err.message) from err


def _error_code(body: bytes) -> str:
    """The registry's first OCI error code (``MANIFEST_UNKNOWN``, ``DENIED``, ...) from an error body, or "".

    Nothing else of the body is kept: only a short upper-case token, so that no server text reaches a message.
    """
    if not body or len(body) > _MAX_ERROR_BODY:
        return ""
    try:
        parsed = load_json_object(body, max_depth=8, code="error_body", what="error body")
    except MalformedEvidenceError:
        return ""
    errors = parsed.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    code = first.get("code") if isinstance(first, dict) else None
    return code if isinstance(code, str) and _OCI_ERROR_CODE_RE.match(code) else ""


# --------------------------------------------------------------------------------------------------------------
# Egress and budgets


class ListingTruncatedError(LimitExceededError):
    """A tag listing went past ``max_tags`` or ``max_pages``; ``partial`` holds the tags read before the limit."""

    def __init__(self, message: str, *, limit: str, partial: list[str] | None = None) -> None:
        super().__init__(message, limit=limit)
        self.partial = list(partial or [])


def is_public_address(address: str) -> bool:
    """Whether ``address`` (an IP literal) is a global unicast address: not loopback, private, link-local,
    shared, reserved, multicast or unspecified (IPv4-mapped IPv6 addresses are judged as IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast


def _checked_address(host: str, port: int, *, allow_private: bool, registry: str) -> str:
    """Resolve ``host`` and return an address to connect to; refuse non-global ones unless ``allow_private``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise httpcore.ConnectError(f"cannot resolve {host}: {err}") from err
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise httpcore.ConnectError(f"cannot resolve {host}")
    if not allow_private:
        refused = [a for a in addresses if not is_public_address(a)]
        if refused:
            # Any non-global answer refuses the name: a host that resolves to both must not be a way in.
            raise EgressRefusedError(
                f"connection to {host[:100]}:{port} (for {registry}) refused: it resolves to a loopback, private "
                "or link-local address (allowed only with PROVENANCE_ALLOW_PRIVATE_REGISTRIES=1)")
    return addresses[0]


@functools.lru_cache(maxsize=16)
def _ssl_context(ca_file: str | None, ca_certificates: str | None) -> ssl.SSLContext:
    """The TLS context of clients with these CAs (the system's when both are None), made once per process:
    loading a CA bundle costs tens of milliseconds, and scans open a client per chunk. Contexts are shared by
    connections of any thread (they are only read once made)."""
    if ca_file is None and ca_certificates is None:
        return httpx.create_ssl_context()
    return ssl.create_default_context(cafile=ca_file, cadata=ca_certificates)


class _GuardedBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, checking each address as the connection is opened (no DNS rebinding window:
    the socket connects to the address that was checked; TLS still verifies the original host name)."""

    def __init__(self, *, allow_private: bool, registry: str) -> None:
        self._inner = httpcore.SyncBackend()
        self._allow_private = allow_private
        self._registry = registry

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        address = _checked_address(host, port, allow_private=self._allow_private, registry=self._registry)
        return self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                       socket_options=socket_options)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        raise EgressRefusedError("unix sockets are not registries")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class Budget:
    """What one unit of work (an image, a scan) may spend: bytes fetched and wall time; thread-safe.

    ``bytes_limit`` and ``seconds_limit`` name the limits in messages (the settings that set them). A child
    budget (an image within a scan) charges its parent too, and is used up when the parent is.
    """

    def __init__(self, *, max_bytes: int | None = None, max_seconds: float | None = None, what: str = "image",
                 bytes_limit: str = "max_bytes", seconds_limit: str = "max_seconds",
                 parent: Budget | None = None) -> None:
        self.max_bytes = max_bytes
        self.what = what
        self.bytes_limit = bytes_limit
        self.seconds_limit = seconds_limit
        self.parent = parent
        self.spent = 0
        self._max_seconds = max_seconds
        self._deadline = time.monotonic() + max_seconds if max_seconds is not None else None
        self._lock = threading.Lock()

    def remaining(self) -> int | None:
        """Bytes that may still be fetched (the smaller of this budget's and its parent's), None for unlimited."""
        with self._lock:
            mine = None if self.max_bytes is None else max(0, self.max_bytes - self.spent)
        theirs = self.parent.remaining() if self.parent is not None else None
        if mine is None:
            return theirs
        return mine if theirs is None else min(mine, theirs)

    def check(self) -> None:
        """Raise :class:`LimitExceededError` when the time or the bytes are used up (here or in the parent)."""
        if self.parent is not None:
            self.parent.check()
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise LimitExceededError(f"this {self.what} took longer than {self._max_seconds:g}s "
                                     f"({self.seconds_limit}); it was stopped", limit=self.seconds_limit)
        with self._lock:
            over = self.max_bytes is not None and self.spent >= self.max_bytes
        if over:
            raise self.exceeded()

    def exceeded(self) -> LimitExceededError:
        """The error for a byte budget used up (this one's, or the parent's when that is the smaller)."""
        if self.parent is not None and self.parent.remaining() == 0:
            return self.parent.exceeded()
        return LimitExceededError(f"this {self.what} fetched {self.max_bytes} bytes, its limit "
                                  f"({self.bytes_limit}); the rest was not fetched", limit=self.bytes_limit)

    def charge(self, count: int) -> None:
        """Count ``count`` bytes fetched (here and in the parent)."""
        with self._lock:
            self.spent += count
        if self.parent is not None:
            self.parent.charge(count)


class Metered:
    """A :class:`Registry` that spends a :class:`Budget`: each request first checks it, each manifest and blob
    is charged to it, and a blob is fetched at most once (later requests for its digest reuse the bytes).

    ``max_layers`` and ``max_referrers`` are read by discovery as the per-manifest limits of this work.
    """

    def __init__(self, registry: Registry, budget: Budget, *, max_layers: int | None = None,
                 max_referrers: int | None = None) -> None:
        self._registry = registry
        self.budget = budget
        self.max_layers = max_layers
        self.max_referrers = max_referrers
        self._blobs: dict[Digest, bytes] = {}
        self._lock = threading.Lock()
        inner_referrers = getattr(registry, "referrers", None)
        if inner_referrers is not None:
            def referrers(repository: str, digest: Digest, **kwargs: Any) -> Any:
                self.budget.check()
                return inner_referrers(repository, digest, **kwargs)

            self.referrers = referrers

    def get_manifest(self, repository: str, reference: str | Digest) -> Manifest:
        self.budget.check()
        manifest = self._registry.get_manifest(repository, reference)
        self.budget.charge(len(manifest.data))
        return manifest

    def head_manifest(self, repository: str, reference: str | Digest) -> Digest | None:
        self.budget.check()
        head = getattr(self._registry, "head_manifest", None)
        if head is None:
            try:
                return self.get_manifest(repository, reference).digest
            except NotFoundError:
                return None
        result: Digest | None = head(repository, reference)
        return result

    def get_blob(self, repository: str, digest: Digest, *, max_bytes: int | None = None) -> bytes:
        with self._lock:
            cached = self._blobs.get(digest)
        if cached is not None:
            if max_bytes is not None and len(cached) > max_bytes:
                raise MalformedEvidenceError(f"blob {repository}@{digest} is over the {max_bytes} byte limit",
                                             code="too_large")
            return cached
        self.budget.check()
        remaining = self.budget.remaining()
        limited = remaining is not None and (max_bytes is None or remaining < max_bytes)
        try:
            data = self._registry.get_blob(repository, digest, max_bytes=remaining if limited else max_bytes)
        except MalformedEvidenceError as err:
            if limited and err.code == "too_large":
                self.budget.charge(remaining or 0)  # used up: the next fetch is refused before it is asked for
                raise self.budget.exceeded() from err
            raise
        self.budget.charge(len(data))
        with self._lock:
            self._blobs[digest] = data
        return data

    def list_tags(self, repository: str) -> list[str]:
        self.budget.check()
        return self._registry.list_tags(repository)
