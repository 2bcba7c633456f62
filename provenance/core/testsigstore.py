"""A private, offline, Sigstore-like signing infrastructure for TESTS AND DEMOS ONLY.

.. warning::
   **INSECURE TEST TOOLING. NEVER TRUST IT IN PRODUCTION.** Every private key it uses (root CA, intermediate CA,
   CT log, Rekor log) is generated locally, kept in memory and written to disk *unencrypted* by :meth:`save`.
   Anyone holding those files can mint "valid" signatures for any identity. A trusted root produced here must
   never be installed where real evidence is verified; callers outside tests (a demo management command, for
   example) must refuse to run unless the application is in DEBUG mode.

What it imitates, closely enough that the real ``sigstore`` library and the real ``cosign`` binary accept its
output when given its trusted root:

* **Fulcio**: a root CA and an intermediate CA (ECDSA P-384) issuing short-lived leaf certificates for ephemeral
  ECDSA P-256 keys, with the Fulcio OIDC extensions and exactly one embedded precertificate SCT from a CT log key.
* **Rekor v1**: an in-memory, append-only RFC 6962 Merkle log with inclusion proofs, signed checkpoints (signed
  note format) and signed entry timestamps (SETs). Bodies are byte-for-byte what Rekor stores: RFC 8785 JSON of
  ``hashedrekord`` 0.0.1, ``dsse`` 0.0.1 and ``intoto`` 0.0.2 entries.
* **A timestamp authority** (RFC 3161): tokens over a signature, for bundles and cosign's timestamp annotation,
  and trusted roots with it (also without a log: a trust domain that only timestamps).
* **Rekor v2** entries (``LogOptions(rekor_v2=True)``): ``hashedrekord`` 0.0.2 bodies (keyless and key-based),
  DSSE logged as a hashedrekord over its pre-authentication encoding or as ``dsse`` 0.0.2
  (``dsse_v2_entry=True``), no SET or integrated time; checkpoints with witness cosignatures (``cosignatures=N``).
* **Outputs**: ``trusted_root.json``; Sigstore bundles v0.1/v0.2/v0.3 (message signature or DSSE); cosign legacy
  ``.sig`` and ``.att`` layers with their annotations.

Framework-free: no Django or Celery imports. Only ``cryptography``, ``rfc8785``, ``asn1crypto`` (the TSA's
CMS) and the standard library.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from provenance.core.errors import TrustRootError
from provenance.core.types import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    ANNOTATION_PREDICATE_TYPE,
    ANNOTATION_SIGNATURE,
    MediaType,
    SignedLayer,
)

__all__ = [
    "BUNDLE_MEDIA_TYPES",
    "GITHUB_ACTIONS_ISSUER",
    "IN_TOTO_PAYLOAD_TYPE",
    "IN_TOTO_STATEMENT_V01",
    "IN_TOTO_STATEMENT_V1",
    "TRUSTED_ROOT_MEDIA_TYPE",
    "GitHubWorkflow",
    "InclusionProof",
    "LeafOptions",
    "LogEntry",
    "LogOptions",
    "SanType",
    "TestSigstore",
    "TimestampAuthority",
    "TransparencyLog",
    "cosign_simple_signing_payload",
    "cosign_timestamp_annotation",
    "dsse_pae",
    "hash_children",
    "hash_leaf",
    "in_toto_statement",
    "key_id",
    "with_timestamp_authority",
    "with_timestamps",
]

# --- constants ---------------------------------------------------------------------------------------------------

TRUSTED_ROOT_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
BUNDLE_MEDIA_TYPES: Final[Mapping[str, str]] = {
    "0.1": "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "0.2": "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "0.3": "application/vnd.dev.sigstore.bundle.v0.3+json",
}
IN_TOTO_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT_V1: Final = "https://in-toto.io/Statement/v1"
IN_TOTO_STATEMENT_V01: Final = "https://in-toto.io/Statement/v0.1"  # what cosign 2 `attest` writes
GITHUB_ACTIONS_ISSUER: Final = "https://token.actions.githubusercontent.com"
COSIGN_SIGNATURE_TYPE: Final = "cosign container image signature"

# Fulcio certificate extensions (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md)
OID_ISSUER_V1: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw UTF-8 bytes (legacy)
OID_GITHUB_WORKFLOW_TRIGGER: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.2")
OID_GITHUB_WORKFLOW_SHA: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.3")
OID_GITHUB_WORKFLOW_NAME: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.4")
OID_GITHUB_WORKFLOW_REPOSITORY: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.5")
OID_GITHUB_WORKFLOW_REF: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.6")
OID_OTHERNAME_USERNAME: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
OID_ISSUER_V2: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
OID_BUILD_SIGNER_URI: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.9")
OID_BUILD_SIGNER_DIGEST: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.10")
OID_RUNNER_ENVIRONMENT: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.11")
OID_SOURCE_REPOSITORY_URI: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.12")
OID_SOURCE_REPOSITORY_DIGEST: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.13")
OID_SOURCE_REPOSITORY_REF: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.14")
OID_BUILD_CONFIG_URI: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.18")
OID_BUILD_CONFIG_DIGEST: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.19")
OID_BUILD_TRIGGER: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.20")
OID_RUN_INVOCATION_URI: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.21")
OID_SCT_LIST: Final = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")

_STATE_FORMAT: Final = "provenance-testsigstore/1"
_CA_BACKDATE: Final = timedelta(days=1)
_CA_VALIDITY: Final = timedelta(days=3650)


# --- small encoders ----------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_utf8_string(value: str) -> bytes:
    return _der_tlv(0x0C, value.encode("utf-8"))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(moment: datetime | None) -> datetime:
    """``moment`` as an aware UTC datetime (naive values are taken as UTC); the current time when None."""
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _spki_der(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_pem(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key_pem(data: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TrustRootError("test sigstore keys must be ECDSA keys", code="testsigstore_state_invalid")
    return key


def _cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _public_pem(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Return the RFC 6962 key id of ``public_key``: SHA-256 of its DER SubjectPublicKeyInfo (32 bytes).

    This is the Rekor ``logID`` (hex in the Rekor API and cosign bundles, base64 ``logId.keyId`` in Sigstore
    bundles and trusted roots), the CT log id inside an SCT, and the first 4 bytes are the checkpoint key hint.
    """
    return hashlib.sha256(_spki_der(public_key)).digest()


def hash_leaf(data: bytes) -> bytes:
    """RFC 6962 leaf hash: ``sha256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``sha256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def dsse_pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: ``"DSSEv1 <len> <type> <len> <body>"`` (lengths in bytes)."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def _go_json(value: Any) -> bytes:
    """Compact JSON in the given key order, as Go's ``encoding/json`` writes structs (no trailing newline)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def in_toto_statement(
    subject_name: str,
    digest_hex: str,
    predicate_type: str,
    predicate: Mapping[str, Any] | None,
    *,
    digest_algorithm: str = "sha256",
    statement_type: str = IN_TOTO_STATEMENT_V1,
) -> bytes:
    """Return an in-toto statement (compact JSON bytes) with one subject.

    ``statement_type`` defaults to in-toto Statement v1; pass :data:`IN_TOTO_STATEMENT_V01` for what cosign 2's
    legacy ``attest`` writes.
    """
    statement = {
        "_type": statement_type,
        "subject": [{"name": subject_name, "digest": {digest_algorithm: digest_hex}}],
        "predicateType": predicate_type,
        "predicate": dict(predicate) if predicate is not None else {},
    }
    return _go_json(statement)


def cosign_simple_signing_payload(image_digest: str, docker_reference: str) -> bytes:
    """Return the cosign legacy ``.sig`` payload for ``image_digest``, byte-for-byte as cosign 2 writes it."""
    payload = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": image_digest},
            "type": COSIGN_SIGNATURE_TYPE,
        },
        "optional": None,
    }
    return _go_json(payload)


# --- options -----------------------------------------------------------------------------------------------------


class SanType(StrEnum):
    """How the identity is written into the leaf's Subject Alternative Name."""

    URI = "uri"
    EMAIL = "email"
    OTHER_NAME = "other_name"  # Fulcio username identities: OtherName 1.3.6.1.4.1.57264.1.7, DER UTF8String


@dataclass(frozen=True, slots=True)
class GitHubWorkflow:
    """GitHub Actions claims to embed in a leaf certificate (the Fulcio GitHub extensions).

    The matching identity is :attr:`identity` and the issuer :data:`GITHUB_ACTIONS_ISSUER`.
    """

    repository: str  # "owner/name"
    ref: str = "refs/heads/main"
    sha: str = "0" * 40
    trigger: str = "push"
    workflow_name: str = "release"
    workflow_path: str = ".github/workflows/release.yml"
    runner_environment: str = "github-hosted"
    run_id: str = "1"
    server_url: str = "https://github.com"

    @property
    def identity(self) -> str:
        """The SAN URI Fulcio gives a workflow: ``https://github.com/<repo>/<workflow path>@<ref>``."""
        return f"{self.server_url}/{self.repository}/{self.workflow_path}@{self.ref}"


@dataclass(frozen=True, slots=True)
class LeafOptions:
    """Knobs for the leaf certificate; the defaults give what real Fulcio issues.

    ``sct_key`` signs the SCT with another key (one absent from the trusted root); ``with_sct=False`` omits the
    SCT extension; ``not_before``/``validity`` move or shrink the validity window (default: signing time, 10 min).
    """

    san_type: SanType | None = None  # None: URI if it has "://", email if it has "@", otherwise OtherName
    validity: timedelta = timedelta(minutes=10)
    not_before: datetime | None = None
    with_sct: bool = True
    sct_key: ec.EllipticCurvePrivateKey | None = None
    github: GitHubWorkflow | None = None


@dataclass(frozen=True, slots=True)
class LogOptions:
    """Knobs for the transparency-log part of a Sigstore bundle; the defaults give what real Rekor v1 returns.

    ``checkpoint_key`` signs the checkpoint with another key. Leaving out the inclusion proof or its checkpoint
    gives bundles that ``sigstore`` rejects but cosign accepts on the SET alone (as real old bundles do).
    """

    checkpoint_key: ec.EllipticCurvePrivateKey | None = None
    with_inclusion_proof: bool = True
    with_checkpoint: bool = True
    with_inclusion_promise: bool = True
    # Rekor v2 (rekor-tiles): hashedrekord 0.0.2 bodies (DSSE too, over the pre-authentication encoding), no SET
    # and no integrated time: such bundles need an RFC 3161 timestamp for their signing time.
    rekor_v2: bool = False
    cosignatures: int = 0  # witness cosignatures on the checkpoint, by keys no trust root knows
    dsse_v2_entry: bool = False  # with rekor_v2: log a DSSE envelope as a dsse 0.0.2 entry instead


# --- the transparency log ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One Rekor entry: the canonical body and what the log signed about it."""

    index: int
    body: bytes
    integrated_time: int
    log_id: bytes
    signed_entry_timestamp: bytes

    @property
    def leaf_hash(self) -> bytes:
        """The RFC 6962 leaf hash of the body (the entry UUID in Rekor)."""
        return hash_leaf(self.body)

    @property
    def kind(self) -> str:
        return str(json.loads(self.body)["kind"])

    @property
    def api_version(self) -> str:
        return str(json.loads(self.body)["apiVersion"])

    def set_payload(self) -> bytes:
        """The bytes the SET signs: RFC 8785 JSON of body (base64), integratedTime, logID (hex), logIndex."""
        return rfc8785.dumps(
            {
                "body": _b64(self.body),
                "integratedTime": self.integrated_time,
                "logID": self.log_id.hex(),
                "logIndex": self.index,
            }
        )

    def cosign_bundle(self) -> bytes:
        """The ``dev.sigstore.cosign/bundle`` annotation value, as cosign 2 writes it (Go struct field order)."""
        return _go_json(
            {
                "SignedEntryTimestamp": _b64(self.signed_entry_timestamp),
                "Payload": {
                    "body": _b64(self.body),
                    "integratedTime": self.integrated_time,
                    "logIndex": self.index,
                    "logID": self.log_id.hex(),
                },
            }
        )


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """An RFC 6962 inclusion proof of entry ``log_index`` in the tree of ``tree_size`` leaves.

    ``hashes`` go from the leaf's sibling up to the root; ``checkpoint`` is the signed note for this tree.
    """

    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str


class TransparencyLog:
    """An in-memory Rekor v1-like log: RFC 6962 Merkle tree, signed checkpoints and SETs. Thread-safe."""

    def __init__(
        self,
        *,
        private_key: ec.EllipticCurvePrivateKey,
        base_url: str,
        entries: Iterable[LogEntry] = (),
    ) -> None:
        self._key = private_key
        self.base_url = base_url
        self.log_id = key_id(private_key.public_key())
        self.hostname = base_url.split("://", 1)[-1].split("/", 1)[0]
        # Real Rekor names its tree "<host> - <tree id>"; the tree id here is derived from the key.
        self.tree_id = int.from_bytes(self.log_id[:8], "big") & (2**63 - 1)
        self.origin = f"{self.hostname} - {self.tree_id}"
        self._entries: list[LogEntry] = []
        self._leaves: list[bytes] = []
        self._subtrees: dict[tuple[int, int], bytes] = {}
        self._lock = threading.RLock()
        for entry in entries:
            if entry.index != len(self._entries) or entry.log_id != self.log_id:
                raise TrustRootError(
                    "log state is not a sequence of this log's entries", code="testsigstore_state_invalid"
                )
            self._entries.append(entry)
            self._leaves.append(entry.leaf_hash)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> tuple[LogEntry, ...]:
        """All entries, in log order."""
        with self._lock:
            return tuple(self._entries)

    def entry(self, index: int) -> LogEntry:
        """Return entry ``index``; raises ``IndexError`` when there is none."""
        with self._lock:
            if not 0 <= index < len(self._entries):
                raise IndexError(f"no log entry {index} (log size {len(self._entries)})")
            return self._entries[index]

    def append(self, body: bytes, *, integrated_time: int) -> LogEntry:
        """Append a canonical entry body; return the entry with its index and signed entry timestamp."""
        with self._lock:
            index = len(self._entries)
            unsigned = LogEntry(index, body, integrated_time, self.log_id, b"")
            signature = self._key.sign(unsigned.set_payload(), ec.ECDSA(hashes.SHA256()))
            entry = LogEntry(index, body, integrated_time, self.log_id, signature)
            self._entries.append(entry)
            self._leaves.append(entry.leaf_hash)
            return entry

    def _size(self, tree_size: int | None) -> int:
        size = len(self._leaves) if tree_size is None else tree_size
        if not 0 <= size <= len(self._leaves):
            raise ValueError(f"tree size {size} out of range (log size {len(self._leaves)})")
        return size

    def _subtree_hash(self, start: int, end: int) -> bytes:
        count = end - start
        if count == 1:
            return self._leaves[start]
        complete = count & (count - 1) == 0
        if complete and (start, count) in self._subtrees:
            return self._subtrees[(start, count)]
        split = 1 << ((count - 1).bit_length() - 1)  # largest power of two below count
        digest = hash_children(self._subtree_hash(start, start + split), self._subtree_hash(start + split, end))
        if complete:  # complete subtrees never change in an append-only log
            self._subtrees[(start, count)] = digest
        return digest

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        count = end - start
        if count == 1:
            return []
        split = 1 << ((count - 1).bit_length() - 1)
        if index < split:
            return [*self._path(index, start, start + split), self._subtree_hash(start + split, end)]
        return [*self._path(index - split, start + split, end), self._subtree_hash(start, start + split)]

    def root_hash(self, tree_size: int | None = None) -> bytes:
        """Return the Merkle tree hash of the first ``tree_size`` entries (default: all)."""
        with self._lock:
            size = self._size(tree_size)
            return hashlib.sha256(b"").digest() if size == 0 else self._subtree_hash(0, size)

    def checkpoint(self, tree_size: int | None = None, *, key: ec.EllipticCurvePrivateKey | None = None) -> str:
        """Return the signed checkpoint (signed note) for the tree of ``tree_size`` entries.

        Format: ``"<origin>\\n<size>\\n<b64 root>\\n\\n— <hostname> <b64(keyhint || DER ECDSA sig)>\\n"``; the signature
        covers the note text up to and including the newline after the root hash; the key hint is the first
        4 bytes of the signing key's id (SHA-256 of its DER SPKI). ``key`` signs with another key (negative tests).
        """
        signer = key or self._key
        with self._lock:
            size = self._size(tree_size)
            root = self.root_hash(size)
        note = f"{self.origin}\n{size}\n{_b64(root)}\n"
        signature = signer.sign(note.encode("utf-8"), ec.ECDSA(hashes.SHA256()))
        hint = key_id(signer.public_key())[:4]
        return f"{note}\n\u2014 {self.hostname} {_b64(hint + signature)}\n"

    def inclusion_proof(
        self, index: int, tree_size: int | None = None, *, checkpoint_key: ec.EllipticCurvePrivateKey | None = None
    ) -> InclusionProof:
        """Return the inclusion proof of entry ``index`` in the tree of ``tree_size`` entries (default: all)."""
        with self._lock:
            size = self._size(tree_size)
            if not 0 <= index < size:
                raise IndexError(f"entry {index} is not in a tree of size {size}")
            hashes_ = tuple(self._path(index, 0, size))
            root = self._subtree_hash(0, size)
        return InclusionProof(index, size, root, hashes_, self.checkpoint(size, key=checkpoint_key))

    def fork(self, size: int) -> TransparencyLog:
        """A log with this one's key and only its first ``size`` entries, to append others to: a log that rewrites
        its history after ``size`` (negative tests of monitors)."""
        with self._lock:
            return TransparencyLog(private_key=self._key, base_url=self.base_url, entries=self._entries[:size])

    def subtree_hash(self, start: int, end: int) -> bytes:
        """Return the Merkle tree hash of entries ``start`` to ``end`` (exclusive): a node of a tile when the range
        is a power of two, aligned."""
        with self._lock:
            if not 0 <= start < end <= len(self._leaves):
                raise IndexError(f"no entries {start}..{end} (log size {len(self._leaves)})")
            return self._subtree_hash(start, end)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> tuple[bytes, ...]:
        """Return the RFC 6962 consistency proof (section 2.1.2) from the tree of ``old_size`` entries to the tree
        of ``new_size`` (default: all); empty when either tree is empty or both are the same."""
        with self._lock:
            size = self._size(new_size)
            if not 0 <= old_size <= size:
                raise ValueError(f"old tree size {old_size} is not within 0..{size}")
            if old_size in (0, size):
                return ()
            return tuple(self._subproof(old_size, 0, size, True))

    def _subproof(self, m: int, start: int, end: int, is_complete: bool) -> list[bytes]:
        count = end - start
        if m == count:
            return [] if is_complete else [self._subtree_hash(start, end)]
        split = 1 << ((count - 1).bit_length() - 1)
        if m <= split:
            return [*self._subproof(m, start, start + split, is_complete), self._subtree_hash(start + split, end)]
        return [*self._subproof(m - split, start + split, end, False), self._subtree_hash(start, start + split)]

    def rekor_api_entry(self, index: int, tree_size: int | None = None) -> dict[str, Any]:
        """Return entry ``index`` as Rekor's ``GET /api/v1/log/entries/{uuid}`` answers: ``{uuid: {...}}``.

        Hashes are hex here (base64 in bundles); the UUID is the 16-hex tree id followed by the leaf hash.
        """
        entry = self.entry(index)
        proof = self.inclusion_proof(index, tree_size)
        uuid = f"{self.tree_id:016x}{entry.leaf_hash.hex()}"
        return {
            uuid: {
                "body": _b64(entry.body),
                "integratedTime": entry.integrated_time,
                "logID": entry.log_id.hex(),
                "logIndex": entry.index,
                "verification": {
                    "inclusionProof": {
                        "checkpoint": proof.checkpoint,
                        "hashes": [h.hex() for h in proof.hashes],
                        "logIndex": proof.log_index,
                        "rootHash": proof.root_hash.hex(),
                        "treeSize": proof.tree_size,
                    },
                    "signedEntryTimestamp": _b64(entry.signed_entry_timestamp),
                },
            }
        }


# --- Rekor entry bodies (what Rekor stores: RFC 8785 JSON of the canonicalized entry) ----------------------------


def _hashedrekord_body(*, signature: bytes, verifier_pem: bytes, sha256_hex: str) -> bytes:
    """``verifier_pem``: the leaf certificate (keyless) or the SPKI public key (``--key``), PEM."""
    return rfc8785.dumps(
        {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": sha256_hex}},
                "signature": {"content": _b64(signature), "publicKey": {"content": _b64(verifier_pem)}},
            },
        }
    )


def _v2_verifier(signer: x509.Certificate | ec.EllipticCurvePublicKey) -> dict[str, Any]:
    if isinstance(signer, x509.Certificate):
        material = {"x509Certificate": {"rawBytes": _b64(signer.public_bytes(serialization.Encoding.DER))}}
    else:
        material = {"publicKey": {"rawBytes": _b64(_spki_der(signer))}}
    return {**material, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}


def _hashedrekord_v2_body(*, digest: bytes, signature: bytes,
                          signer: x509.Certificate | ec.EllipticCurvePublicKey) -> bytes:
    """A Rekor v2 ``hashedrekord`` 0.0.2 entry (protobuf JSON of ``Entry``), as rekor-tiles stores it; ``signer``
    is the leaf certificate (keyless) or the public key (``--key``)."""
    return rfc8785.dumps({
        "kind": "hashedrekord",
        "apiVersion": "0.0.2",
        "spec": {"hashedRekordV002": {
            "data": {"algorithm": "SHA2_256", "digest": _b64(digest)},
            "signature": {"content": _b64(signature), "verifier": _v2_verifier(signer)},
        }},
    })


def _dsse_v2_body(*, payload: bytes, signature: bytes, signer: x509.Certificate | ec.EllipticCurvePublicKey) -> bytes:
    """A Rekor v2 ``dsse`` 0.0.2 entry: the payload's hash and each envelope signature with its verifier."""
    return rfc8785.dumps({
        "kind": "dsse",
        "apiVersion": "0.0.2",
        "spec": {"dsseV002": {
            "payloadHash": {"algorithm": "SHA2_256", "digest": _b64(hashlib.sha256(payload).digest())},
            "signatures": [{"content": _b64(signature), "verifier": _v2_verifier(signer)}],
        }},
    })


def _dsse_log_body_v2(payload_type: str, statement: bytes, signature: bytes,
                      signer: x509.Certificate | ec.EllipticCurvePublicKey, log: LogOptions) -> bytes:
    """Rekor v2 logs a DSSE envelope as a hashedrekord over its pre-authentication encoding, or as dsse 0.0.2."""
    if log.dsse_v2_entry:
        return _dsse_v2_body(payload=statement, signature=signature, signer=signer)
    return _hashedrekord_v2_body(digest=hashlib.sha256(dsse_pae(payload_type, statement)).digest(),
                                 signature=signature, signer=signer)


def _dsse_body(*, envelope_json: bytes, payload: bytes, signature: bytes, certificate: x509.Certificate) -> bytes:
    return rfc8785.dumps(
        {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(envelope_json).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [{"signature": _b64(signature), "verifier": _b64(_cert_pem(certificate))}],
            },
        }
    )


def _intoto_v002_body(
    *, envelope_json: bytes, payload_type: str, payload: bytes, signature: bytes, certificate: x509.Certificate
) -> bytes:
    # Rekor's intoto 0.0.2 keeps the envelope's base64 signature *string* as a []byte and base64s it again,
    # so "sig" is base64(base64(DER signature)); an empty keyid is omitted; the payload is not stored.
    return rfc8785.dumps(
        {
            "apiVersion": "0.0.2",
            "kind": "intoto",
            "spec": {
                "content": {
                    "envelope": {
                        "payloadType": payload_type,
                        "signatures": [
                            {
                                "publicKey": _b64(_cert_pem(certificate)),
                                "sig": _b64(_b64(signature).encode("ascii")),
                            }
                        ],
                    },
                    "hash": {"algorithm": "sha256", "value": hashlib.sha256(envelope_json).hexdigest()},
                    "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                }
            },
        }
    )


# --- the test Sigstore -------------------------------------------------------------------------------------------


def _slug(name: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return slug or "provenance-test"


# -- RFC 3161 timestamp authority ----------------------------------------------------------------------------------


_OID_TST_INFO: Final = "1.2.840.113549.1.9.16.1.4"
TIMESTAMP_POLICY_OID: Final = "1.3.6.1.4.1.57264.2"  # the arc Sigstore's timestamp authority uses


class TimestampAuthority:
    """An RFC 3161 timestamp authority: its own root CA and a timestamping leaf (EKU timeStamping, critical).
    **TEST/DEMO ONLY.** Tokens are ECDSA P-256 / SHA-256 CMS SignedData over a TSTInfo, as sigstore's
    timestamp-authority issues them; sigstore-python's verifier accepts them given :meth:`trusted_root_entry`.
    """

    __test__ = False

    def __init__(self, *, name: str = "provenance-test-tsa", now: datetime | None = None) -> None:
        created = _utc(now)
        self.name = name
        self.uri = f"https://tsa.{_slug(name)}.test/api/v1/timestamp"
        self.valid_from = created - _CA_BACKDATE
        self._root_key = ec.generate_private_key(ec.SECP384R1())
        self._key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                               x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root")])
        leaf_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                               x509.NameAttribute(NameOID.COMMON_NAME, f"{name} timestamping")])
        not_after = created + _CA_VALIDITY
        self.root_certificate = (
            x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(self._root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self.valid_from).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._root_key.public_key()), critical=False)
            .sign(self._root_key, hashes.SHA384())
        )
        self.certificate = (
            x509.CertificateBuilder().subject_name(leaf_name).issuer_name(root_name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self.valid_from).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._root_key.public_key()),
                           critical=False)
            .sign(self._root_key, hashes.SHA384())
        )

    def timestamp(self, data: bytes, *, gen_time: datetime | None = None, nonce: int | None = None) -> bytes:
        """A DER TimeStampResp (status granted) whose token's message imprint is the SHA-256 of ``data``."""
        from asn1crypto import algos, cms, core, tsp
        from asn1crypto import x509 as asn1_x509

        moment = _utc(gen_time).replace(microsecond=0)
        info = tsp.TSTInfo({
            "version": "v1",
            "policy": TIMESTAMP_POLICY_OID,
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                "hashed_message": hashlib.sha256(data).digest()},
            "serial_number": x509.random_serial_number(),
            "gen_time": moment,
            "nonce": nonce if nonce is not None else x509.random_serial_number() >> 96,
        })
        content = info.dump()
        leaf_der = self.certificate.public_bytes(serialization.Encoding.DER)
        leaf = asn1_x509.Certificate.load(leaf_der)
        signed_attrs = cms.CMSAttributes([
            {"type": "content_type", "values": [_OID_TST_INFO]},
            {"type": "signing_time", "values": [cms.Time({"utc_time": moment})]},
            {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
            {"type": "signing_certificate_v2", "values": [{
                "certs": [{"hash_algorithm": {"algorithm": "sha256"},
                           "cert_hash": hashlib.sha256(leaf_der).digest()}],
            }]},
        ])
        signature = self._key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        signer = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": {
                "issuer": leaf.issuer, "serial_number": leaf.serial_number}}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            "signature": signature,
        })
        signed_data = cms.SignedData({
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": _OID_TST_INFO, "content": core.ParsableOctetString(content)},
            "certificates": [leaf],
            "signer_infos": [signer],
        })
        token = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
        return bytes(tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump())

    def trusted_root_entry(self, *, valid_from: datetime | None = None,
                           valid_until: datetime | None = None) -> dict[str, Any]:
        """This authority as a ``timestampAuthorities`` item of a trusted root (``valid_until`` ends it)."""
        valid_for = {"start": _iso(_utc(valid_from) if valid_from else self.valid_from)}
        if valid_until is not None:
            valid_for["end"] = _iso(_utc(valid_until))
        return {
            "subject": {"organization": self.name, "commonName": f"{self.name} timestamping"},
            "uri": self.uri,
            "certChain": {"certificates": [{"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))}
                                           for c in (self.certificate, self.root_certificate)]},
            "validFor": valid_for,
        }


def with_timestamp_authority(trusted_root: Mapping[str, Any], tsa: TimestampAuthority, *,
                             valid_until: datetime | None = None, transparency_log: bool = True) -> bytes:
    """``trusted_root.json`` bytes with ``tsa`` added; ``transparency_log=False`` drops the logs (a trust domain
    that only timestamps, as GitHub's for private repositories)."""
    document = dict(trusted_root)
    document["timestampAuthorities"] = [*document.get("timestampAuthorities", []),
                                        tsa.trusted_root_entry(valid_until=valid_until)]
    if not transparency_log:
        document["tlogs"] = []
    return json.dumps(document, indent=2).encode("utf-8") + b"\n"


def with_timestamps(bundle: bytes, tsa: TimestampAuthority, *, gen_time: datetime | None = None,
                    count: int = 1, without_log: bool = False) -> bytes:
    """The bundle with ``count`` RFC 3161 timestamps over its signature (what sigstore and cosign timestamp: the
    message signature, or the DSSE envelope's signature); ``without_log`` drops its log entry."""
    document = json.loads(bundle)
    if "messageSignature" in document:
        signature = base64.b64decode(document["messageSignature"]["signature"])
    else:
        signature = base64.b64decode(document["dsseEnvelope"]["signatures"][0]["sig"])
    material = document["verificationMaterial"]
    material["timestampVerificationData"] = {"rfc3161Timestamps": [
        {"signedTimestamp": _b64(tsa.timestamp(signature, gen_time=gen_time))} for _ in range(count)]}
    if without_log:
        material["tlogEntries"] = []
    return _go_json(document)


def cosign_timestamp_annotation(tsa: TimestampAuthority, signed: bytes, *, gen_time: datetime | None = None) -> str:
    """cosign's ``dev.sigstore.cosign/rfc3161timestamp`` annotation value: a timestamp over ``signed`` (a
    ``.sig`` layer's raw signature, or an ``.att`` layer's envelope)."""
    return json.dumps({"SignedRFC3161Timestamp": _b64(tsa.timestamp(signed, gen_time=gen_time))})


class TestSigstore:
    """A private Fulcio + CT log + Rekor, all in one process. **TEST/DEMO ONLY: never trust it in production.**

    Build one with :meth:`create` (new keys) or :meth:`load` (keys and log from :meth:`save`), hand
    :meth:`trusted_root_json` to the verifier under test, then sign with :meth:`sign_blob_bundle`,
    :meth:`sign_dsse_bundle`, :meth:`cosign_signature_layer` or :meth:`cosign_attestation_layer`.
    Signing uses the current time unless ``now=`` is given.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *,
        name: str,
        created: datetime,
        root_key: ec.EllipticCurvePrivateKey,
        root_certificate: x509.Certificate,
        intermediate_key: ec.EllipticCurvePrivateKey,
        intermediate_certificate: x509.Certificate,
        ct_key: ec.EllipticCurvePrivateKey,
        rekor_key: ec.EllipticCurvePrivateKey,
        entries: Iterable[LogEntry] = (),
    ) -> None:
        """Assemble from existing parts; use :meth:`create` or :meth:`load` instead."""
        self.name = name
        self.created = _utc(created)
        self.valid_from = self.created - _CA_BACKDATE
        slug = _slug(name)
        self.fulcio_url = f"https://fulcio.{slug}.test"
        self.ct_url = f"https://ctfe.{slug}.test/test"
        self._root_key = root_key
        self.root_certificate = root_certificate
        self._intermediate_key = intermediate_key
        self.intermediate_certificate = intermediate_certificate
        self._ct_key = ct_key
        self._rekor_key = rekor_key
        self.log = TransparencyLog(private_key=rekor_key, base_url=f"https://rekor.{slug}.test", entries=entries)

    # -- construction and persistence --

    @classmethod
    def create(cls, *, name: str = "provenance-test", now: datetime | None = None) -> TestSigstore:
        """Generate a new test Sigstore: fresh CA, CT and Rekor keys, and a log holding one genesis entry.

        CA certificates and trusted-root validity start one day before ``now`` (default: the current time), so
        the trust root is usable at once and for back-dated signatures.
        """
        created = _utc(now)
        not_before = created - _CA_BACKDATE
        not_after = created + _CA_VALIDITY
        organization = f"{name} (TEST ONLY, insecure)"

        root_key = ec.generate_private_key(ec.SECP384R1())
        root_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-root"),
            ]
        )
        root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
        root_certificate = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(root_ski, critical=False)
            .sign(root_key, hashes.SHA384())
        )

        intermediate_key = ec.generate_private_key(ec.SECP384R1())
        intermediate_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-intermediate"),
            ]
        )
        intermediate_certificate = (
            x509.CertificateBuilder()
            .subject_name(intermediate_name)
            .issuer_name(root_name)
            .public_key(intermediate_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(intermediate_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False)
            .sign(root_key, hashes.SHA384())
        )

        sigstore = cls(
            name=name,
            created=created,
            root_key=root_key,
            root_certificate=root_certificate,
            intermediate_key=intermediate_key,
            intermediate_certificate=intermediate_certificate,
            ct_key=ec.generate_private_key(ec.SECP256R1()),
            rekor_key=ec.generate_private_key(ec.SECP256R1()),
        )
        # sigstore-go (cosign 2.5) rejects a bundle whose entry has logIndex 0 ("nil value in transaction log
        # entry"), as protobuf cannot tell 0 from absent; real Rekor's index 0 is long buried. Fill it.
        slug = _slug(name)
        sigstore.sign_blob_bundle(
            b"genesis", identity=f"genesis@{slug}.test", issuer=f"https://oidc.{slug}.test", now=created
        )
        return sigstore

    def save(self, directory: str | Path) -> None:
        """Write keys (unencrypted PEM), certificates, log state and ``trusted_root.json`` to ``directory``."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        files = {
            "root-ca.key.pem": _key_pem(self._root_key),
            "root-ca.crt.pem": _cert_pem(self.root_certificate),
            "intermediate-ca.key.pem": _key_pem(self._intermediate_key),
            "intermediate-ca.crt.pem": _cert_pem(self.intermediate_certificate),
            "ctlog.key.pem": _key_pem(self._ct_key),
            "rekor.key.pem": _key_pem(self._rekor_key),
            "state.json": json.dumps(self._state(), indent=1).encode("utf-8"),
            "trusted_root.json": self.trusted_root_json(),
            "README.txt": b"TEST/DEMO Sigstore keys, stored unencrypted. Never trust them in production.\n",
        }
        for filename, content in files.items():
            tmp = path / f".{filename}.tmp"
            tmp.write_bytes(content)
            tmp.replace(path / filename)

    def _state(self) -> dict[str, Any]:
        return {
            "format": _STATE_FORMAT,
            "name": self.name,
            "created": self.created.isoformat(),
            "entries": [
                {
                    "body": _b64(e.body),
                    "integratedTime": e.integrated_time,
                    "signedEntryTimestamp": _b64(e.signed_entry_timestamp),
                }
                for e in self.log.entries()
            ],
        }

    @classmethod
    def load(cls, directory: str | Path) -> TestSigstore:
        """Load a test Sigstore written by :meth:`save`: same keys, certificates, trusted root and log.

        Raises :class:`~provenance.core.errors.TrustRootError` when the state is not one this module wrote,
        and ``FileNotFoundError`` when a file is missing.
        """
        path = Path(directory)
        try:
            state = json.loads((path / "state.json").read_bytes())
            if state.get("format") != _STATE_FORMAT:
                raise TrustRootError(f"not a test sigstore state: {path}", code="testsigstore_state_invalid")
            rekor_key = _load_key_pem((path / "rekor.key.pem").read_bytes())
            log_id = key_id(rekor_key.public_key())
            entries = [
                LogEntry(
                    index=i,
                    body=base64.b64decode(e["body"]),
                    integrated_time=int(e["integratedTime"]),
                    log_id=log_id,
                    signed_entry_timestamp=base64.b64decode(e["signedEntryTimestamp"]),
                )
                for i, e in enumerate(state["entries"])
            ]
            return cls(
                name=str(state["name"]),
                created=datetime.fromisoformat(state["created"]),
                root_key=_load_key_pem((path / "root-ca.key.pem").read_bytes()),
                root_certificate=x509.load_pem_x509_certificate((path / "root-ca.crt.pem").read_bytes()),
                intermediate_key=_load_key_pem((path / "intermediate-ca.key.pem").read_bytes()),
                intermediate_certificate=x509.load_pem_x509_certificate(
                    (path / "intermediate-ca.crt.pem").read_bytes()
                ),
                ct_key=_load_key_pem((path / "ctlog.key.pem").read_bytes()),
                rekor_key=rekor_key,
                entries=entries,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise TrustRootError(
                f"unreadable test sigstore state in {path}: {err}", code="testsigstore_state_invalid"
            ) from err

    # -- what verifiers need --

    @property
    def ct_public_key(self) -> ec.EllipticCurvePublicKey:
        return self._ct_key.public_key()

    @property
    def rekor_public_key(self) -> ec.EllipticCurvePublicKey:
        return self.log.public_key

    @property
    def ct_log_id(self) -> bytes:
        """SHA-256 of the CT log key's DER SPKI (the SCT's log id and the trusted root's ``logId.keyId``)."""
        return key_id(self.ct_public_key)

    @property
    def rekor_log_id(self) -> bytes:
        """SHA-256 of the Rekor key's DER SPKI (``logID`` in entries; first 4 bytes: checkpoint key hint)."""
        return self.log.log_id

    @property
    def chain_pem(self) -> bytes:
        """Intermediate then root certificate, PEM (cosign's ``dev.sigstore.cosign/chain``)."""
        return _cert_pem(self.intermediate_certificate) + _cert_pem(self.root_certificate)

    @property
    def rekor_public_key_pem(self) -> bytes:
        """The Rekor key, PEM (cosign's ``SIGSTORE_REKOR_PUBLIC_KEY`` file)."""
        return _public_pem(self.rekor_public_key)

    @property
    def ct_public_key_pem(self) -> bytes:
        """The CT log key, PEM (cosign's ``SIGSTORE_CT_LOG_PUBLIC_KEY_FILE``)."""
        return _public_pem(self.ct_public_key)

    def trusted_root(self) -> dict[str, Any]:
        """Return the Sigstore trusted root (media type :data:`TRUSTED_ROOT_MEDIA_TYPE`) as a dict."""
        valid_for = {"start": _iso(self.valid_from)}

        def log_instance(url: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": _b64(_spki_der(public_key)),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": valid_for,
                },
                "logId": {"keyId": _b64(key_id(public_key))},
            }

        root_subject = self.root_certificate.subject
        return {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [log_instance(self.log.base_url, self.rekor_public_key)],
            "certificateAuthorities": [
                {
                    "subject": {
                        "organization": str(root_subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value),
                        "commonName": str(root_subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value),
                    },
                    "uri": self.fulcio_url,
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))}
                            for c in (self.intermediate_certificate, self.root_certificate)
                        ]
                    },
                    "validFor": valid_for,
                }
            ],
            "ctlogs": [log_instance(self.ct_url, self.ct_public_key)],
            "timestampAuthorities": [],
        }

    def trusted_root_json(self) -> bytes:
        """Return ``trusted_root.json`` bytes for this instance (stable across :meth:`save`/:meth:`load`)."""
        return json.dumps(self.trusted_root(), indent=2).encode("utf-8") + b"\n"

    # -- Fulcio --

    def issue_certificate(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        identity: str,
        issuer: str,
        now: datetime | None = None,
        leaf: LeafOptions = LeafOptions(),
    ) -> x509.Certificate:
        """Issue a Fulcio-style leaf certificate for ``public_key`` binding ``identity`` and OIDC ``issuer``.

        Empty subject, critical SAN, KeyUsage digitalSignature (critical), EKU codeSigning, SKI, AKI, the issuer
        in 1.3.6.1.4.1.57264.1.1 (raw UTF-8) and 1.3.6.1.4.1.57264.1.8 (DER UTF8String), GitHub extensions if
        ``leaf.github`` is set, and one embedded precertificate SCT (RFC 6962) unless ``leaf.with_sct`` is false.
        """
        moment = _utc(now)
        not_before = _utc(leaf.not_before) if leaf.not_before is not None else moment
        not_before = not_before.replace(microsecond=0)
        san_type = leaf.san_type or _guess_san_type(identity)
        general_name: x509.GeneralName
        if san_type is SanType.URI:
            general_name = x509.UniformResourceIdentifier(identity)
        elif san_type is SanType.EMAIL:
            general_name = x509.RFC822Name(identity)
        else:
            general_name = x509.OtherName(OID_OTHERNAME_USERNAME, _der_utf8_string(identity))

        intermediate_ski = self.intermediate_certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate_certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + leaf.validity)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(intermediate_ski), critical=False
            )
            .add_extension(x509.SubjectAlternativeName([general_name]), critical=True)
            .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V1, issuer.encode("utf-8")), critical=False)
        )
        for oid, value in _github_extensions(leaf.github):
            builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
        builder = builder.add_extension(
            x509.UnrecognizedExtension(OID_ISSUER_V2, _der_utf8_string(issuer)), critical=False
        )
        for oid, value in _github_v2_extensions(leaf.github):
            builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)

        precertificate = builder.sign(self._intermediate_key, hashes.SHA384())
        if not leaf.with_sct:
            return precertificate
        sct_key = leaf.sct_key or self._ct_key
        sct = _embedded_sct(
            sct_key,
            issuer_key_hash=key_id(_ec_public_key(self.intermediate_certificate)),
            tbs_precertificate=precertificate.tbs_certificate_bytes,
            timestamp_ms=int(moment.timestamp() * 1000),
        )
        sct_list = _tls_vector(_tls_vector(sct, 2), 2)
        certificate = builder.add_extension(
            x509.UnrecognizedExtension(OID_SCT_LIST, _der_tlv(0x04, sct_list)), critical=False
        ).sign(self._intermediate_key, hashes.SHA384())
        # The SCT covers the TBS without the SCT extension; that must be exactly what was signed above.
        assert certificate.tbs_precertificate_bytes == precertificate.tbs_certificate_bytes
        return certificate

    def _keyless(
        self, *, identity: str, issuer: str, now: datetime | None, leaf: LeafOptions
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, datetime]:
        moment = _utc(now)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self.issue_certificate(key.public_key(), identity=identity, issuer=issuer, now=moment, leaf=leaf)
        return key, certificate, moment

    # -- Sigstore bundles --

    def sign_blob_bundle(
        self,
        data: bytes,
        *,
        identity: str,
        issuer: str,
        version: str = "0.3",
        now: datetime | None = None,
        leaf: LeafOptions = LeafOptions(),
        log: LogOptions = LogOptions(),
    ) -> bytes:
        """Sign ``data`` keylessly; return a Sigstore bundle (JSON bytes) with a message signature.

        The log entry is ``hashedrekord`` 0.0.1 with an inclusion proof, a signed checkpoint and an inclusion
        promise (SET). ``version`` is "0.1", "0.2" (``x509CertificateChain`` with the leaf only) or "0.3"
        (``certificate``). Raises ``ValueError`` for an unknown version.
        """
        media_type = _bundle_media_type(version)
        key, certificate, moment = self._keyless(identity=identity, issuer=issuer, now=now, leaf=leaf)
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
        digest = hashlib.sha256(data).digest()
        if log.rekor_v2:
            body = _hashedrekord_v2_body(digest=digest, signature=signature, signer=certificate)
        else:
            body = _hashedrekord_body(signature=signature, verifier_pem=_cert_pem(certificate),
                                      sha256_hex=digest.hex())
        entry = self.log.append(body, integrated_time=0 if log.rekor_v2 else int(moment.timestamp()))
        bundle = {
            "mediaType": media_type,
            "verificationMaterial": self._verification_material(version, certificate, entry, log),
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": _b64(digest)},
                "signature": _b64(signature),
            },
        }
        return _go_json(bundle)

    def sign_dsse_bundle(
        self,
        statement: bytes,
        *,
        identity: str,
        issuer: str,
        version: str = "0.3",
        payload_type: str = IN_TOTO_PAYLOAD_TYPE,
        now: datetime | None = None,
        leaf: LeafOptions = LeafOptions(),
        log: LogOptions = LogOptions(),
    ) -> bytes:
        """Sign ``statement`` keylessly in a DSSE envelope; return a Sigstore bundle (JSON bytes).

        The log entry is ``dsse`` 0.0.1 (payload hash, signature and verifier certificate; envelope hash over
        the envelope JSON as in the bundle). See :meth:`sign_blob_bundle` for ``version``, ``leaf`` and ``log``.
        """
        media_type = _bundle_media_type(version)
        key, certificate, moment = self._keyless(identity=identity, issuer=issuer, now=now, leaf=leaf)
        signature = key.sign(dsse_pae(payload_type, statement), ec.ECDSA(hashes.SHA256()))
        envelope = {
            "payload": _b64(statement),
            "payloadType": payload_type,
            "signatures": [{"sig": _b64(signature), "keyid": ""}],
        }
        if log.rekor_v2:
            body = _dsse_log_body_v2(payload_type, statement, signature, certificate, log)
        else:
            body = _dsse_body(
                envelope_json=_go_json(envelope), payload=statement, signature=signature, certificate=certificate
            )
        entry = self.log.append(body, integrated_time=0 if log.rekor_v2 else int(moment.timestamp()))
        bundle = {
            "mediaType": media_type,
            "verificationMaterial": self._verification_material(version, certificate, entry, log),
            "dsseEnvelope": envelope,
        }
        return _go_json(bundle)

    def sign_blob_bundle_with_key(
        self,
        data: bytes,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        version: str = "0.3",
        hint: str | None = None,
        now: datetime | None = None,
        log: LogOptions = LogOptions(),
    ) -> bytes:
        """Sign ``data`` with a long-lived key, as ``cosign sign-blob --key --new-bundle-format`` does.

        The bundle carries ``verificationMaterial.publicKey.hint`` (default: base64 SHA-256 of the DER SPKI, as
        cosign writes) instead of a certificate; the ``hashedrekord`` body holds the PEM public key. ``sigstore``
        refuses such bundles ("expected certificate in bundle"); cosign verifies them with ``--key``.
        """
        media_type = _bundle_media_type(version)
        moment = _utc(now)
        public_key = private_key.public_key()
        signature = private_key.sign(data, ec.ECDSA(hashes.SHA256()))
        digest = hashlib.sha256(data).digest()
        if log.rekor_v2:
            body = _hashedrekord_v2_body(digest=digest, signature=signature, signer=public_key)
        else:
            body = _hashedrekord_body(signature=signature, verifier_pem=_public_pem(public_key),
                                      sha256_hex=digest.hex())
        entry = self.log.append(body, integrated_time=0 if log.rekor_v2 else int(moment.timestamp()))
        bundle = {
            "mediaType": media_type,
            "verificationMaterial": {
                "publicKey": {"hint": _b64(key_id(public_key)) if hint is None else hint},
                "tlogEntries": [self.bundle_tlog_entry(entry, log=log)],
            },
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": _b64(digest)},
                "signature": _b64(signature),
            },
        }
        return _go_json(bundle)

    def sign_dsse_bundle_with_key(
        self,
        statement: bytes,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        version: str = "0.3",
        payload_type: str = IN_TOTO_PAYLOAD_TYPE,
        now: datetime | None = None,
        log: LogOptions = LogOptions(),
    ) -> bytes:
        """Sign ``statement`` in a DSSE envelope with a long-lived key, as ``cosign attest --key
        --new-bundle-format`` does: ``verificationMaterial.publicKey.hint`` instead of a certificate."""
        media_type = _bundle_media_type(version)
        moment = _utc(now)
        public_key = private_key.public_key()
        signature = private_key.sign(dsse_pae(payload_type, statement), ec.ECDSA(hashes.SHA256()))
        envelope = {"payload": _b64(statement), "payloadType": payload_type,
                    "signatures": [{"sig": _b64(signature), "keyid": ""}]}
        if log.rekor_v2:
            body = _dsse_log_body_v2(payload_type, statement, signature, public_key, log)
        else:
            body = rfc8785.dumps({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(_go_json(envelope)).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(statement).hexdigest()},
                "signatures": [{"signature": _b64(signature), "verifier": _b64(_public_pem(public_key))}],
            }})
        entry = self.log.append(body, integrated_time=0 if log.rekor_v2 else int(moment.timestamp()))
        bundle = {
            "mediaType": media_type,
            "verificationMaterial": {"publicKey": {"hint": _b64(key_id(public_key))},
                                     "tlogEntries": [self.bundle_tlog_entry(entry, log=log)]},
            "dsseEnvelope": envelope,
        }
        return _go_json(bundle)

    def _verification_material(
        self, version: str, certificate: x509.Certificate, entry: LogEntry, log: LogOptions
    ) -> dict[str, Any]:
        raw = {"rawBytes": _b64(certificate.public_bytes(serialization.Encoding.DER))}
        material: dict[str, Any] = (
            {"certificate": raw} if version == "0.3" else {"x509CertificateChain": {"certificates": [raw]}}
        )
        material["tlogEntries"] = [self.bundle_tlog_entry(entry, log=log)]
        return material

    def bundle_tlog_entry(self, entry: LogEntry, *, log: LogOptions = LogOptions()) -> dict[str, Any]:
        """Return ``entry`` as a Sigstore bundle ``tlogEntries`` item (protobuf JSON: u64 as strings, base64).

        The inclusion proof is against the current tree size.
        """
        item: dict[str, Any] = {
            "logIndex": str(entry.index),
            "logId": {"keyId": _b64(entry.log_id)},
            "kindVersion": {"kind": entry.kind, "version": entry.api_version},
            "integratedTime": str(entry.integrated_time),
        }
        if log.with_inclusion_promise and not log.rekor_v2:
            item["inclusionPromise"] = {"signedEntryTimestamp": _b64(entry.signed_entry_timestamp)}
        if log.with_inclusion_proof:
            proof = self.log.inclusion_proof(entry.index, checkpoint_key=log.checkpoint_key)
            checkpoint = proof.checkpoint
            for i in range(log.cosignatures):  # witnesses append their own signature lines
                witness = ec.generate_private_key(ec.SECP256R1())
                line_sig = witness.sign(checkpoint.split("\n\n")[0].encode() + b"\n", ec.ECDSA(hashes.SHA256()))
                checkpoint += f"\u2014 witness{i}.test {_b64(key_id(witness.public_key())[:4] + line_sig)}\n"
            proof_json: dict[str, Any] = {
                "logIndex": str(proof.log_index),
                "rootHash": _b64(proof.root_hash),
                "treeSize": str(proof.tree_size),
                "hashes": [_b64(h) for h in proof.hashes],
            }
            if log.with_checkpoint:
                proof_json["checkpoint"] = {"envelope": checkpoint}
            item["inclusionProof"] = proof_json
        item["canonicalizedBody"] = _b64(entry.body)
        return item

    # -- cosign legacy layers --

    def cosign_signature_layer(
        self,
        image_digest: str,
        docker_reference: str,
        *,
        identity: str,
        issuer: str,
        now: datetime | None = None,
        leaf: LeafOptions = LeafOptions(),
    ) -> SignedLayer:
        """Sign an image keylessly as cosign 2 does; return the ``.sig`` manifest layer.

        Payload: simple-signing JSON; annotations: signature (base64 DER ECDSA over the payload), certificate
        (leaf PEM), chain (intermediate + root PEM), bundle (SET + ``hashedrekord`` 0.0.1 body, no proof).
        """
        key, certificate, moment = self._keyless(identity=identity, issuer=issuer, now=now, leaf=leaf)
        payload = cosign_simple_signing_payload(image_digest, docker_reference)
        signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
        body = _hashedrekord_body(
            signature=signature, verifier_pem=_cert_pem(certificate), sha256_hex=hashlib.sha256(payload).hexdigest()
        )
        entry = self.log.append(body, integrated_time=int(moment.timestamp()))
        annotations = {
            ANNOTATION_SIGNATURE: _b64(signature),
            ANNOTATION_CERTIFICATE: _cert_pem(certificate).decode("ascii"),
            ANNOTATION_CHAIN: self.chain_pem.decode("ascii"),
            ANNOTATION_BUNDLE: entry.cosign_bundle().decode("utf-8"),
        }
        return SignedLayer(media_type=str(MediaType.COSIGN_SIMPLESIGNING), payload=payload, annotations=annotations)

    def cosign_signature_layer_with_key(
        self,
        image_digest: str,
        docker_reference: str,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        now: datetime | None = None,
    ) -> SignedLayer:
        """Sign an image with a long-lived key as ``cosign sign --key`` does; return the ``.sig`` layer.

        Annotations: signature and bundle only (no certificate, no chain); the ``hashedrekord`` body holds the
        PEM public key.
        """
        moment = _utc(now)
        payload = cosign_simple_signing_payload(image_digest, docker_reference)
        signature = private_key.sign(payload, ec.ECDSA(hashes.SHA256()))
        body = _hashedrekord_body(
            signature=signature,
            verifier_pem=_public_pem(private_key.public_key()),
            sha256_hex=hashlib.sha256(payload).hexdigest(),
        )
        entry = self.log.append(body, integrated_time=int(moment.timestamp()))
        annotations = {
            ANNOTATION_SIGNATURE: _b64(signature),
            ANNOTATION_BUNDLE: entry.cosign_bundle().decode("utf-8"),
        }
        return SignedLayer(media_type=str(MediaType.COSIGN_SIMPLESIGNING), payload=payload, annotations=annotations)

    def cosign_attestation_layer(
        self,
        statement: bytes,
        *,
        identity: str,
        issuer: str,
        predicate_type: str | None = None,
        now: datetime | None = None,
        leaf: LeafOptions = LeafOptions(),
    ) -> SignedLayer:
        """Attest keylessly as cosign 2's legacy ``attest`` does; return the ``.att`` manifest layer.

        Payload: the DSSE envelope JSON (Go field order, ``"keyid":""``); annotations: ``predicateType``
        (default: the statement's), an empty signature, certificate, chain and bundle (SET + ``intoto`` 0.0.2
        body whose ``content.hash`` is the SHA-256 of the layer payload).
        """
        key, certificate, moment = self._keyless(identity=identity, issuer=issuer, now=now, leaf=leaf)
        signature = key.sign(dsse_pae(IN_TOTO_PAYLOAD_TYPE, statement), ec.ECDSA(hashes.SHA256()))
        envelope_json = _go_json(
            {
                "payloadType": IN_TOTO_PAYLOAD_TYPE,
                "payload": _b64(statement),
                "signatures": [{"keyid": "", "sig": _b64(signature)}],
            }
        )
        body = _intoto_v002_body(
            envelope_json=envelope_json,
            payload_type=IN_TOTO_PAYLOAD_TYPE,
            payload=statement,
            signature=signature,
            certificate=certificate,
        )
        entry = self.log.append(body, integrated_time=int(moment.timestamp()))
        if predicate_type is None:
            predicate_type = str(json.loads(statement).get("predicateType", ""))
        annotations = {
            ANNOTATION_PREDICATE_TYPE: predicate_type,
            ANNOTATION_SIGNATURE: "",
            ANNOTATION_CERTIFICATE: _cert_pem(certificate).decode("ascii"),
            ANNOTATION_CHAIN: self.chain_pem.decode("ascii"),
            ANNOTATION_BUNDLE: entry.cosign_bundle().decode("utf-8"),
        }
        return SignedLayer(media_type=str(MediaType.DSSE_ENVELOPE), payload=envelope_json, annotations=annotations)


# --- helpers for certificates ------------------------------------------------------------------------------------


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _ec_public_key(certificate: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):  # pragma: no cover - we only make ECDSA CAs
        raise TypeError("expected an ECDSA certificate")
    return key


def _guess_san_type(identity: str) -> SanType:
    if "://" in identity:
        return SanType.URI
    if "@" in identity:
        return SanType.EMAIL
    return SanType.OTHER_NAME


def _github_extensions(github: GitHubWorkflow | None) -> list[tuple[ObjectIdentifier, bytes]]:
    """The legacy (raw UTF-8) GitHub workflow extensions, 1.3.6.1.4.1.57264.1.2 to .6."""
    if github is None:
        return []
    return [
        (OID_GITHUB_WORKFLOW_TRIGGER, github.trigger.encode()),
        (OID_GITHUB_WORKFLOW_SHA, github.sha.encode()),
        (OID_GITHUB_WORKFLOW_NAME, github.workflow_name.encode()),
        (OID_GITHUB_WORKFLOW_REPOSITORY, github.repository.encode()),
        (OID_GITHUB_WORKFLOW_REF, github.ref.encode()),
    ]


def _github_v2_extensions(github: GitHubWorkflow | None) -> list[tuple[ObjectIdentifier, bytes]]:
    """The newer (DER UTF8String) build-provenance extensions Fulcio adds for GitHub Actions."""
    if github is None:
        return []
    repository_uri = f"{github.server_url}/{github.repository}"
    return [
        (OID_BUILD_SIGNER_URI, _der_utf8_string(github.identity)),
        (OID_BUILD_SIGNER_DIGEST, _der_utf8_string(github.sha)),
        (OID_RUNNER_ENVIRONMENT, _der_utf8_string(github.runner_environment)),
        (OID_SOURCE_REPOSITORY_URI, _der_utf8_string(repository_uri)),
        (OID_SOURCE_REPOSITORY_DIGEST, _der_utf8_string(github.sha)),
        (OID_SOURCE_REPOSITORY_REF, _der_utf8_string(github.ref)),
        (OID_BUILD_CONFIG_URI, _der_utf8_string(github.identity)),
        (OID_BUILD_CONFIG_DIGEST, _der_utf8_string(github.sha)),
        (OID_BUILD_TRIGGER, _der_utf8_string(github.trigger)),
        (OID_RUN_INVOCATION_URI, _der_utf8_string(f"{repository_uri}/actions/runs/{github.run_id}/attempts/1")),
    ]


def _tls_vector(data: bytes, length_bytes: int) -> bytes:
    return len(data).to_bytes(length_bytes, "big") + data


def _embedded_sct(
    ct_key: ec.EllipticCurvePrivateKey, *, issuer_key_hash: bytes, tbs_precertificate: bytes, timestamp_ms: int
) -> bytes:
    """Return one serialized v1 SCT for a precertificate (RFC 6962 §3.2), signed by ``ct_key``."""
    extensions = b""
    signed = (
        struct.pack("!BBQH", 0, 0, timestamp_ms, 1)  # v1, certificate_timestamp, timestamp, precert_entry
        + issuer_key_hash
        + _tls_vector(tbs_precertificate, 3)
        + _tls_vector(extensions, 2)
    )
    signature = ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    return (
        b"\x00"
        + key_id(ct_key.public_key())
        + struct.pack("!Q", timestamp_ms)
        + _tls_vector(extensions, 2)
        + b"\x04\x03"  # hash sha256, signature ecdsa
        + _tls_vector(signature, 2)
    )


def _bundle_media_type(version: str) -> str:
    try:
        return BUNDLE_MEDIA_TYPES[version]
    except KeyError:
        raise ValueError(f"unknown bundle version {version!r}; expected one of {sorted(BUNDLE_MEDIA_TYPES)}") from None
