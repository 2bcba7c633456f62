"""Value types shared by the core: digests, image references, check results."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum

from provenance.core.errors import MalformedEvidenceError

_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST_RE = re.compile(r"^(sha256|sha384|sha512):([0-9a-f]+)$")


@dataclass(frozen=True, slots=True)
class Digest:
    """A content digest such as ``sha256:<64 hex>``."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse ``alg:hex``; raises :class:`MalformedEvidenceError` when it is not well-formed."""
        match = _DIGEST_RE.match(value or "")
        if not match or len(match.group(2)) != _HEX_LENGTHS[match.group(1)]:
            raise MalformedEvidenceError(f"not a well-formed digest: {value[:100]!r}", code="bad_digest")
        return cls(match.group(1), match.group(2))

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """Return the digest of ``data``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def matches(self, data: bytes) -> bool:
        """Return whether ``data`` hashes to this digest."""
        return hashlib.new(self.algorithm, data).hexdigest() == self.hex

    @property
    def tag_prefix(self) -> str:
        """The cosign tag stem for this digest: ``sha256-<hex>``."""
        return f"{self.algorithm}-{self.hex}"

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


_REF_RE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/)?"
    r"(?P<repository>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+:[0-9a-f]+))?$"
)
DEFAULT_REGISTRY = "registry-1.docker.io"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed image reference ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, value: str) -> ImageRef:
        """Parse a reference; raises :class:`MalformedEvidenceError` when it is not one."""
        value = (value or "").strip()
        match = _REF_RE.match(value) if len(value) <= 512 else None
        if not match:
            raise MalformedEvidenceError(f"not an image reference: {value[:100]!r}", code="bad_reference")
        registry = match.group("registry")
        repository = match.group("repository")
        first = value.split("/", 1)[0]
        if registry is None or ("." not in first and ":" not in first and first != "localhost"):
            # Docker's rule: the first component is a registry only if it looks like a host.
            repository = value.split("@", 1)[0].rsplit(":", 1)[0] if match.group("tag") else value.split("@", 1)[0]
            registry = DEFAULT_REGISTRY
        if registry.lower() in ("docker.io", "registry-1.docker.io", "index.docker.io") and "/" not in repository:
            repository = f"library/{repository}"  # Docker Hub's official images, however the host is spelled
        digest = Digest.parse(match.group("digest")) if match.group("digest") else None
        tag = match.group("tag")
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, repository, tag, digest)

    def with_digest(self, digest: Digest) -> ImageRef:
        return ImageRef(self.registry, self.repository, self.tag, digest)

    @property
    def repo_name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.repo_name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


class Stage(StrEnum):
    """Where in verification a check belongs."""

    FETCH = "fetch"
    FORMAT = "format"
    IDENTITY = "identity"
    CHAIN = "chain"
    SCT = "sct"
    TLOG = "tlog"
    TIMESTAMP = "timestamp"
    SIGNATURE = "signature"
    SUBJECT = "subject"
    TRUST_ROOT = "trust_root"
    UNSUPPORTED = "unsupported"


class Outcome(StrEnum):
    """The verdict of verifying one piece of evidence, or an artifact.

    These never collapse into one another: *absent* (nothing to check), *malformed* (could not be read),
    *invalid* (does not verify), *untrusted* (valid, but not by whom or what we trust), *unsupported*
    (a format we do not check), *unsigned* (evidence present but unsigned), *error* (could not check).
    """

    VERIFIED = "verified"
    ABSENT = "absent"
    MALFORMED = "malformed"
    INVALID = "invalid"
    UNTRUSTED = "untrusted"
    UNSUPPORTED = "unsupported"
    UNSIGNED = "unsigned"  # evidence that carries no signature at all (cosign .sbom, BuildKit in-index SBOMs)
    ERROR = "error"


class Kind(StrEnum):
    """What a piece of evidence is."""

    SIGNATURE = "signature"
    ATTESTATION = "attestation"
    SBOM = "sbom"


class Format(StrEnum):
    """How a piece of evidence is stored in the registry."""

    COSIGN_SIG = "cosign-sig"
    COSIGN_ATT = "cosign-att"
    COSIGN_SBOM = "cosign-sbom"
    SIGSTORE_BUNDLE = "sigstore-bundle"
    NOTATION = "notation"
    BUILDKIT = "buildkit-attestation"
    REFERRER = "oci-referrer"  # attached with a type Provenance does not know (recorded, never trusted)


class Level(StrEnum):
    """Where in an image an artifact sits."""

    IMAGE = "image"  # a single-platform manifest
    INDEX = "index"  # a multi-arch index itself
    PLATFORM = "platform"  # a platform manifest inside an index


class SignatureStatus(StrEnum):
    """An artifact's signature verdict, from its signatures' results alone."""

    VERIFIED = "verified"
    FAILED = "failed"
    UNSIGNED = "unsigned"
    ERROR = "error"


class LogEvidence(StrEnum):
    """What shows that a verified signature was published, strongest first."""

    INCLUSION_PROOF = "inclusion_proof"  # a Merkle proof to a checkpoint the log signed
    INCLUSION_PROMISE = "inclusion_promise"  # a signed entry timestamp only: the log promised to include it
    TIMESTAMPED_NOT_LOGGED = "timestamped_not_logged"  # a trust domain without a log: an RFC 3161 timestamp only
    NOT_LOGGED = "not_logged"  # the log requirement was switched off (insecure opt-in)


class Leniency(StrEnum):
    """A named reason why Provenance accepts evidence that sigstore-python would reject."""

    KEY_BASED = "key_based"
    INCLUSION_PROMISE = "v01_inclusion_promise"
    INTOTO_ENTRY = "intoto_entry"
    DSSE_V2_ENTRY = "dsse_v2_entry"
    KEY_REKOR_V2 = "key_rekor_v2"
    TSA_ONLY = "tsa_only"
    NOT_LOGGED = "not_logged"
    TSA_END_INCLUSIVE = "tsa_end_inclusive"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: which stage, a stable code, what was expected vs found, and how to fix it."""

    stage: Stage
    code: str
    ok: bool
    message: str
    hint: str = ""

    def as_dict(self) -> dict[str, str | bool]:
        return {"stage": str(self.stage), "code": self.code, "ok": self.ok, "message": self.message, "hint": self.hint}


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """The result of verifying one signature or attestation.

    ``outcome`` is VERIFIED only when every check passed; ``checks`` lists them all, failures first.
    """

    outcome: Outcome
    checks: tuple[CheckResult, ...] = ()
    identity: str = ""
    issuer: str = ""
    key: str = ""
    tlog: str = ""  # a LogEvidence value, or "" when none
    integrated_time: int | None = None
    extra: dict[str, str] = field(default_factory=dict)
    leniencies: tuple[Leniency, ...] = ()  # where this result is more lenient than sigstore-python, and why

    @property
    def is_verified(self) -> bool:
        return self.outcome is Outcome.VERIFIED

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.ok)

    @property
    def reason(self) -> str:
        """The first failure's message, or empty when verified."""
        failures = self.failures
        return failures[0].message if failures else ""


class MediaType(StrEnum):
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
    DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
    SIGSTORE_BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


INDEX_MEDIA_TYPES = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_LIST})

# cosign layer annotations (the code's spelling, not the spec document's)
ANNOTATION_SIGNATURE = "dev.cosignproject.cosign/signature"
ANNOTATION_CERTIFICATE = "dev.sigstore.cosign/certificate"
ANNOTATION_CHAIN = "dev.sigstore.cosign/chain"
ANNOTATION_BUNDLE = "dev.sigstore.cosign/bundle"
ANNOTATION_RFC3161 = "dev.sigstore.cosign/rfc3161timestamp"
ANNOTATION_PREDICATE_TYPE = "predicateType"


@dataclass(frozen=True, slots=True)
class SignedLayer:
    """One layer of a cosign ``.sig`` or ``.att`` manifest: the blob and its annotations.

    ``payload`` is the layer blob: the simple-signing JSON for ``.sig``, the DSSE envelope JSON for ``.att``.
    """

    media_type: str
    payload: bytes
    annotations: dict[str, str]

    @property
    def digest(self) -> Digest:
        return Digest.of(self.payload)


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    """Who is expected to have signed: an exact SAN or an anchored regexp, and the OIDC issuer."""

    issuer: str
    identity: str = ""
    identity_regexp: str = ""

    def describe(self) -> str:
        who = self.identity or f"/{self.identity_regexp}/"
        return f"{who} (issuer {self.issuer})"
