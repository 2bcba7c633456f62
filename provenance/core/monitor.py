"""Following a transparency log: every entry from a starting index, each batch proven to be in a checkpoint the log
signed, each new checkpoint proven consistent with the last one kept, and what each entry says about its signer.

Two ways to read a log: :class:`RekorV1Log` (Rekor's REST API: the signed tree head, consistency proofs, entries by
index with their inclusion proofs) and :class:`TileLog` (Rekor v2 and other C2SP ``tlog-tiles`` logs: the
checkpoint, hash tiles and entry bundles; inclusion and consistency proofs are computed from the tiles and checked
against the signed roots, so nothing a tile says is taken on trust). :func:`advance` reads one batch either way.

Checkpoint signatures, inclusion proofs and consistency proofs are checked by :mod:`provenance.core.verify.tlog`.
:func:`describe_entry` reads an entry body (``hashedrekord``, ``rekord``, ``intoto``, ``dsse``; Rekor v2's 0.0.2)
for the digests it signs and who signed (certificate SANs, OIDC issuer, workflow claims, key fingerprint), and
:class:`Watch` says whether that signer is one to watch.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from provenance.core.claims import read_claims
from provenance.core.errors import TransientError, VerificationError
from provenance.core.trustroot import LogKey, TrustRoot, spki_sha256
from provenance.core.verify import (
    Proof,
    TlogEntry,
    inclusion_problem,
    is_consistent,
    oidc_issuer,
    root_from_proof,
    sans_of,
    signed_checkpoint,
)

__all__ = [
    "MAX_BATCH",
    "Batch",
    "Checkpoint",
    "EntryFacts",
    "LogInconsistentError",
    "LogInvalidError",
    "LogSource",
    "LoggedEntry",
    "RekorV1Log",
    "TileLog",
    "Watch",
    "advance",
    "describe_entry",
    "post_webhook",
    "sign_webhook",
    "tile_path",
]

def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def get_path(value: Any, *keys: str) -> Any:
    for key in keys:
        value = as_dict(value).get(key)
    return value


def b64decode(value: Any) -> bytes | None:
    """Standard base64 (padding required) to bytes; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


MAX_BATCH = 1000  # entries per batch at most (a batch is one transaction for the caller)
MAX_ENTRY_BYTES = 256 * 1024  # one Rekor v1 answer (an entry with its proof)
MAX_BODY_BYTES = 128 * 1024  # one entry body
MAX_SMALL_BYTES = 64 * 1024  # a tree head, checkpoint or consistency proof
MAX_BUNDLE_BYTES = 4 * 1024 * 1024  # one entry bundle (256 entries)
TILE_WIDTH = 256
_HASH = 32
_FULL_TILE_CACHE = 4096  # full tiles never change in an append-only log: ~8 MiB of hashes at most


class LogInconsistentError(VerificationError):
    """The log's new checkpoint does not extend the last one verified: it rewrote (or forked) its history."""

    code = "log_inconsistent"


class LogInvalidError(VerificationError):
    """The log answered with something that does not verify: a bad signature or proof, a malformed answer."""

    code = "log_invalid"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint (signed tree head) whose signature by the log was verified."""

    origin: str
    size: int
    root_hash: bytes
    text: str

    def describe(self) -> str:
        return f"{self.origin} size {self.size} root {self.root_hash.hex()[:16]}..."


@dataclass(frozen=True, slots=True)
class LoggedEntry:
    """One entry, proven to be in the batch's checkpoint: its index, canonical body and (v1) integrated time."""

    index: int
    body: bytes
    integrated_time: int | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """Entries ``start`` .. ``start + len(entries)`` (exclusive), all in ``checkpoint``; the next start is ``end``."""

    checkpoint: Checkpoint
    start: int
    entries: tuple[LoggedEntry, ...]
    tree_end: int  # the log's size in indexes (first index of the next entry the log will write)

    @property
    def end(self) -> int:
        return self.start + len(self.entries)

    @property
    def lag(self) -> int:
        """Entries the log holds beyond this batch."""
        return self.tree_end - self.end


def verify_checkpoint(text: str, log: LogKey) -> Checkpoint:
    """Return the checkpoint ``text`` once its signature by ``log`` verifies.

    Raises :class:`LogInvalidError` (``log_checkpoint_invalid``) saying what is wrong otherwise.
    """
    signed = signed_checkpoint(text, log)
    if isinstance(signed, str):
        raise LogInvalidError(signed, code="log_checkpoint_invalid")
    size, root = signed
    return Checkpoint(text.split("\n", 1)[0], size, root, text)


def check_consistent(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Raise :class:`LogInconsistentError` unless ``proof`` shows ``new`` extends ``old`` (``old.size <= new.size``)."""
    if not is_consistent(old.size, old.root_hash, new.size, new.root_hash, list(proof)):
        raise LogInconsistentError(
            f"the log's checkpoint ({new.describe()}) is not consistent with the one verified before "
            f"({old.describe()}): the log rewrote its history",
        )


class LogSource(Protocol):
    """A log to follow; indexes are the log's entry indexes (Rekor v1: global, across inactive shards)."""

    @property
    def first_index(self) -> int: ...

    def latest(self) -> Checkpoint:
        """The log's newest signed checkpoint, signature verified."""
        ...

    def consistency_proof(self, old_size: int, new: Checkpoint) -> list[bytes]:
        """The proof that the tree of ``old_size`` is a prefix of ``new``'s (unverified: check it)."""
        ...

    def entries(self, start: int, end: int, head: Checkpoint) -> tuple[list[LoggedEntry], Checkpoint]:
        """Entries ``start`` .. ``end`` (exclusive), each proven in ``head`` or in a newer checkpoint proven
        consistent with it; returns them and the newest checkpoint used."""
        ...


def advance(source: LogSource, *, previous: Checkpoint | None, start: int, limit: int = 100) -> Batch:
    """Read the next batch of at most ``limit`` entries from ``start``, after ``previous`` (the last verified).

    The log's newest checkpoint must verify and be consistent with ``previous``; every entry must be proven in it.
    Raises :class:`TransientError` when the log cannot be read (nothing is wrong with it as far as we know),
    :class:`LogInconsistentError` when it rewrote its history, :class:`LogInvalidError` when an answer does not
    verify.
    """
    if start < source.first_index:
        raise LogInvalidError(
            f"index {start} lies before the log's active tree (it starts at {source.first_index}): such entries "
            "cannot be proven against its checkpoints", code="log_start_out_of_range")
    head = source.latest()
    if previous is not None:
        if head.origin != previous.origin:
            raise LogInvalidError(
                f"the log now names its tree {head.origin!r}, before {previous.origin!r}: a new tree (shard) is "
                "a new log to follow", code="log_origin_changed")
        if head.size >= previous.size:
            check_consistent(previous, head, source.consistency_proof(previous.size, head) if head.size > previous.size
                             else [])
        else:  # a stale replica: fine if it is a prefix of what was verified, which stays the head
            check_consistent(head, previous, source.consistency_proof(head.size, previous))
            head = previous
    tree_end = source.first_index + head.size
    end = min(tree_end, start + max(1, min(limit, MAX_BATCH)))
    if end <= start:
        return Batch(head, start, (), tree_end)
    entries, newest = source.entries(start, end, head)
    if [e.index for e in entries] != list(range(start, end)):
        raise LogInvalidError(f"the log did not return entries {start}..{end - 1} in order", code="log_answer_invalid")
    return Batch(newest, start, tuple(entries), source.first_index + newest.size)


# --- HTTP ---------------------------------------------------------------------------------------------------------


class _Http:
    """GETs with a timeout, no redirects and a cap on the answer's size; failures become TransientError."""

    def __init__(self, base_url: str, *, timeout: float, client: httpx.Client | None) -> None:
        if not base_url.startswith("https://") and not base_url.startswith(("http://127.0.0.1", "http://localhost")):
            raise LogInvalidError(f"refusing to follow {base_url!r}: not an https URL", code="log_url_invalid")
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.Client(timeout=timeout, follow_redirects=False,
                                             limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))

    def get(self, path: str, *, limit: int, params: Mapping[str, int] | None = None,
            missing_ok: bool = False) -> bytes | None:
        url = f"{self.base_url}{path}"
        try:
            with self.client.stream("GET", url, params=params) as response:
                if response.status_code == 404 and missing_ok:
                    return None
                if response.status_code != 200:
                    raise TransientError(f"{url} answered {response.status_code}", code="log_unreachable")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise LogInvalidError(f"{url}: the answer is {declared} bytes, more than {limit}",
                                          code="log_answer_too_large")
                chunks, total = [], 0
                for chunk in response.iter_bytes():
                    total += len(chunk)
                    if total > limit:
                        raise LogInvalidError(f"{url}: the answer is more than {limit} bytes",
                                              code="log_answer_too_large")
                    chunks.append(chunk)
        except httpx.HTTPError as err:
            raise TransientError(f"cannot read {url}: {type(err).__name__}: {err}", code="log_unreachable") from err
        return b"".join(chunks)

    def get_json(self, path: str, *, limit: int, params: Mapping[str, int] | None = None) -> Any:
        data = self.get(path, limit=limit, params=params)
        try:
            return json.loads(data or b"")
        except ValueError as err:
            raise LogInvalidError(f"{self.base_url}{path}: the answer is not JSON", code="log_answer_invalid") from err

    def close(self) -> None:
        self.client.close()


def _hex(value: Any, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != _HASH:
        raise LogInvalidError(f"{what} is not a hex SHA-256 hash", code="log_answer_invalid")
    return raw


# --- Rekor v1 -----------------------------------------------------------------------------------------------------


class RekorV1Log:
    """Rekor's v1 REST API: ``/api/v1/log`` (the signed tree head), ``/api/v1/log/proof`` and
    ``/api/v1/log/entries?logIndex=N``. Indexes are global; entries of inactive shards cannot be followed.

    ``workers`` entries are fetched at once (one connection each, kept alive); ``timeout`` bounds each request.
    """

    def __init__(self, base_url: str, trust_root: TrustRoot, log_id: bytes, *, timeout: float = 10.0,
                 workers: int = 8, client: httpx.Client | None = None) -> None:
        log = trust_root.tlog_key(log_id)
        if log is None:
            raise LogInvalidError(f"the trust root {trust_root.name!r} has no log {log_id.hex()}",
                                  code="log_unknown")
        self.log, self.trust_root = log, trust_root
        self._http = _Http(base_url, timeout=timeout, client=client)
        self._workers = max(1, min(workers, 32))
        self._offset: int | None = None

    @property
    def first_index(self) -> int:
        if self._offset is None:
            self.latest()
        assert self._offset is not None
        return self._offset

    def close(self) -> None:
        self._http.close()

    def latest(self) -> Checkpoint:
        info = as_dict(self._http.get_json("/api/v1/log", limit=MAX_SMALL_BYTES))
        text = info.get("signedTreeHead")
        if not isinstance(text, str):
            raise LogInvalidError("the log's tree head carries no signed checkpoint", code="log_answer_invalid")
        head = verify_checkpoint(text, self.log)
        if info.get("treeSize") not in (None, head.size) or (
                info.get("rootHash") is not None and _hex(info.get("rootHash"), "rootHash") != head.root_hash):
            raise LogInvalidError("the log's tree head says other than its signed checkpoint",
                                  code="log_answer_invalid")
        offset = 0
        for shard in as_list(info.get("inactiveShards")):
            size = as_dict(shard).get("treeSize")
            if not isinstance(size, int) or size < 0:
                raise LogInvalidError("an inactive shard has no tree size", code="log_answer_invalid")
            offset += size
        self._offset = offset
        return head

    def consistency_proof(self, old_size: int, new: Checkpoint) -> list[bytes]:
        answer = as_dict(self._http.get_json("/api/v1/log/proof", limit=MAX_SMALL_BYTES,
                                             params={"firstSize": old_size, "lastSize": new.size}))
        if answer.get("rootHash") is not None and _hex(answer.get("rootHash"), "rootHash") != new.root_hash:
            raise LogInconsistentError(
                f"the log's consistency proof is for root {answer.get('rootHash')!s:.16}..., not the checkpoint's "
                f"{new.root_hash.hex()[:16]}...")
        return [_hex(h, "a consistency proof hash") for h in as_list(answer.get("hashes"))[:64]]

    def _fetch(self, index: int) -> Any:
        return self._http.get_json("/api/v1/log/entries", limit=MAX_ENTRY_BYTES, params={"logIndex": index})

    def entries(self, start: int, end: int, head: Checkpoint) -> tuple[list[LoggedEntry], Checkpoint]:
        indexes = range(start, end)
        if self._workers == 1 or len(indexes) == 1:
            answers = [self._fetch(i) for i in indexes]
        else:
            with ThreadPoolExecutor(self._workers) as pool:
                answers = list(pool.map(self._fetch, indexes))
        # Proofs name the tree the log had when it answered: each one newer than the head is proven consistent
        # with it (once per tree) and becomes the head.
        known: dict[int, bytes] = {head.size: head.root_hash}
        result = []
        for index, answer in zip(indexes, answers, strict=True):
            entry, proof = self._read(index, answer)
            problem = inclusion_problem(entry, proof, self.trust_root)
            if problem is not None:
                raise LogInvalidError(f"entry {index}: {problem[1]}", code="log_" + problem[0].removeprefix("tlog_"))
            if known.get(proof.tree_size, proof.root_hash) != proof.root_hash:
                raise LogInconsistentError(
                    f"entry {index} is proven in a tree of {proof.tree_size} with root {proof.root_hash.hex()[:16]}..."
                    f", but the log signed another root for that size ({known[proof.tree_size].hex()[:16]}...)")
            if proof.tree_size not in known:
                seen = Checkpoint(proof.checkpoint.split("\n", 1)[0], proof.tree_size, proof.root_hash,
                                  proof.checkpoint)
                if seen.origin != head.origin:
                    raise LogInvalidError(f"entry {index} is proven in another tree ({seen.origin!r})",
                                          code="log_origin_changed")
                older, newer = (head, seen) if seen.size > head.size else (seen, head)
                check_consistent(older, newer, self.consistency_proof(older.size, newer))
                known[seen.size] = seen.root_hash
                head = newer
            result.append(LoggedEntry(index, entry.body_raw, entry.integrated_time))
        return result, head

    def _read(self, index: int, answer: Any) -> tuple[TlogEntry, Proof]:
        if not isinstance(answer, dict) or len(answer) != 1:
            raise LogInvalidError(f"entry {index}: the log did not answer with one entry", code="log_answer_invalid")
        uuid, item = next(iter(answer.items()))
        item = as_dict(item)
        body = b64decode(item.get("body"))
        raw_proof = as_dict(get_path(item, "verification", "inclusionProof"))
        if body is None or len(body) > MAX_BODY_BYTES:
            raise LogInvalidError(f"entry {index}: no readable body", code="log_answer_invalid")
        if item.get("logIndex") != index or item.get("logID") != self.log.log_id_hex:
            raise LogInvalidError(f"entry {index}: the answer is for entry {item.get('logIndex')!s:.20} of log "
                                  f"{item.get('logID')!s:.16}", code="log_answer_invalid")
        leaf = hashlib.sha256(b"\x00" + body).digest()
        if not str(uuid).lower().endswith(leaf.hex()):
            raise LogInvalidError(f"entry {index}: its UUID is not its leaf hash", code="log_answer_invalid")
        local = index - self.first_index
        size, proof_index = raw_proof.get("treeSize"), raw_proof.get("logIndex")
        checkpoint = raw_proof.get("checkpoint")
        if not isinstance(size, int) or proof_index != local or not isinstance(checkpoint, str):
            raise LogInvalidError(f"entry {index}: no inclusion proof for index {local} of the active tree",
                                  code="log_answer_invalid")
        hashes = [_hex(h, "an inclusion proof hash") for h in as_list(raw_proof.get("hashes"))[:64]]
        integrated = item.get("integratedTime")
        entry = TlogEntry(local, self.log.log_id, "", "", integrated if isinstance(integrated, int) else None,
                          None, None, body, None)
        return entry, Proof(local, size, _hex(raw_proof.get("rootHash"), "rootHash"), hashes, checkpoint)


# --- tiles (Rekor v2, C2SP tlog-tiles) ----------------------------------------------------------------------------


def tile_path(index: int) -> str:
    """The C2SP tlog-tiles path of tile ``index``: 3-digit groups, all but the last prefixed with ``x``."""
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


class _Tree:
    """Node hashes of the tree of ``size`` leaves, read from hash tiles (untrusted: every use is checked against a
    signed root)."""

    def __init__(self, fetch: Any, size: int) -> None:
        self._fetch, self.size = fetch, size
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._tiles: dict[tuple[int, int], list[bytes]] = {}

    def _tile(self, level: int, index: int, width: int) -> list[bytes]:
        tile = self._tiles.get((level, index))
        if tile is None:
            tile = self._tiles[(level, index)] = self._fetch(level, index, width)
        return tile

    def node(self, height: int, index: int) -> bytes:
        """The root of the complete subtree of ``2**height`` leaves at ``index * 2**height``."""
        key = (height, index)
        found = self._nodes.get(key)
        if found is None:
            if height % 8 == 0:
                level, count = height // 8, self.size >> height
                tile = index // TILE_WIDTH
                width = min(TILE_WIDTH, count - tile * TILE_WIDTH)
                found = self._tile(level, tile, width)[index % TILE_WIDTH]
            else:
                left, right = self.node(height - 1, 2 * index), self.node(height - 1, 2 * index + 1)
                found = hashlib.sha256(b"\x01" + left + right).digest()
            self._nodes[key] = found
        return found

    def subtree(self, start: int, end: int) -> bytes:
        """RFC 6962 MTH of leaves ``start`` .. ``end``."""
        count = end - start
        if count & (count - 1) == 0 and start % count == 0:
            return self.node(count.bit_length() - 1, start // count)
        split = 1 << ((count - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + self.subtree(start, start + split) + self.subtree(start + split, end)).digest()

    def path(self, index: int, start: int, end: int) -> list[bytes]:
        count = end - start
        if count == 1:
            return []
        split = 1 << ((count - 1).bit_length() - 1)
        if index < split:
            return [*self.path(index, start, start + split), self.subtree(start + split, end)]
        return [*self.path(index - split, start + split, end), self.subtree(start, start + split)]

    def consistency(self, m: int, start: int, end: int, is_complete: bool) -> list[bytes]:
        count = end - start
        if m == count:
            return [] if is_complete else [self.subtree(start, end)]
        split = 1 << ((count - 1).bit_length() - 1)
        if m <= split:
            return [*self.consistency(m, start, start + split, is_complete), self.subtree(start + split, end)]
        return [*self.consistency(m - split, start + split, end, False), self.subtree(start, start + split)]


class TileLog:
    """A C2SP tlog-tiles log (Rekor v2): ``<base>/checkpoint``, ``<base>/tile/<L>/<N>[.p/<W>]`` and
    ``<base>/tile/entries/<N>[.p/<W>]`` (entries as big-endian uint16 length and bytes)."""

    first_index = 0

    def __init__(self, base_url: str, log: LogKey, *, timeout: float = 10.0,
                 client: httpx.Client | None = None) -> None:
        self.log = log
        self._http = _Http(base_url, timeout=timeout, client=client)
        self._full: dict[tuple[int, int], list[bytes]] = {}

    def close(self) -> None:
        self._http.close()

    def latest(self) -> Checkpoint:
        data = self._http.get("/checkpoint", limit=MAX_SMALL_BYTES) or b""
        return verify_checkpoint(data.decode("utf-8", "replace"), self.log)

    def _tile(self, level: int, index: int, width: int) -> list[bytes]:
        if not 0 < width <= TILE_WIDTH:
            raise LogInvalidError(f"no tile {level}/{index} of width {width} in this tree", code="log_answer_invalid")
        cached = self._full.get((level, index))
        if cached is not None:
            return cached
        suffix = "" if width == TILE_WIDTH else f".p/{width}"
        data = self._http.get(f"/tile/{level}/{tile_path(index)}{suffix}", limit=TILE_WIDTH * _HASH) or b""
        if len(data) != width * _HASH:
            raise LogInvalidError(f"tile {level}/{index}{suffix} holds {len(data)} bytes, not {width} hashes",
                                  code="log_answer_invalid")
        hashes = [data[i:i + _HASH] for i in range(0, len(data), _HASH)]
        if width == TILE_WIDTH:
            if len(self._full) >= _FULL_TILE_CACHE:
                self._full.pop(next(iter(self._full)))
            self._full[(level, index)] = hashes
        return hashes

    def consistency_proof(self, old_size: int, new: Checkpoint) -> list[bytes]:
        if old_size in (0, new.size):
            return []
        return _Tree(self._tile, new.size).consistency(old_size, 0, new.size, True)

    def _bundle(self, index: int, width: int) -> list[bytes]:
        suffix = "" if width == TILE_WIDTH else f".p/{width}"
        data = self._http.get(f"/tile/entries/{tile_path(index)}{suffix}", limit=MAX_BUNDLE_BYTES) or b""
        entries, offset = [], 0
        while offset < len(data):
            if offset + 2 > len(data):
                raise LogInvalidError(f"entry bundle {index}: truncated", code="log_answer_invalid")
            length = int.from_bytes(data[offset:offset + 2], "big")
            if offset + 2 + length > len(data) or length > MAX_BODY_BYTES:
                raise LogInvalidError(f"entry bundle {index}: truncated", code="log_answer_invalid")
            entries.append(data[offset + 2:offset + 2 + length])
            offset += 2 + length
        if len(entries) != width:
            raise LogInvalidError(f"entry bundle {index} holds {len(entries)} entries, not {width}",
                                  code="log_answer_invalid")
        return entries

    def entries(self, start: int, end: int, head: Checkpoint) -> tuple[list[LoggedEntry], Checkpoint]:
        if not 0 <= start < end <= head.size:
            raise LogInvalidError(f"entries {start}..{end} are not in a tree of {head.size}",
                                  code="log_answer_invalid")
        tree = _Tree(self._tile, head.size)
        result = []
        for bundle in range(start // TILE_WIDTH, (end - 1) // TILE_WIDTH + 1):
            width = min(TILE_WIDTH, head.size - bundle * TILE_WIDTH)
            bodies = self._bundle(bundle, width)
            for offset, body in enumerate(bodies):
                index = bundle * TILE_WIDTH + offset
                if not start <= index < end:
                    continue
                leaf = hashlib.sha256(b"\x00" + body).digest()
                root = root_from_proof(index, head.size, leaf, tree.path(index, 0, head.size))
                if root != head.root_hash:
                    raise LogInvalidError(f"entry {index} is not in the checkpoint's tree ({head.describe()})",
                                          code="log_inclusion_proof_invalid")
                result.append(LoggedEntry(index, body))
        return result, head


# --- what an entry says -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryFacts:
    """What an entry body says: its type, the digests it signs (``sha256:<hex>``: the artifact, payload or envelope
    hash the log recorded) and its signer (SANs, OIDC issuer, workflow claims; the key's fingerprint)."""

    kind: str
    version: str
    digests: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    issuer: str = ""
    claims: Mapping[str, str] = field(default_factory=dict)
    key_fingerprints: tuple[str, ...] = ()
    problem: str = ""  # set when the body (or its signer) could not be read
    signatures: tuple[bytes, ...] = ()  # the raw signatures it logs

    @property
    def subject(self) -> str:
        return self.subjects[0] if self.subjects else ""


def describe_entry(body: bytes) -> EntryFacts:
    """Read an entry body; never raises (an unreadable body is described with its ``problem``)."""
    try:
        doc = json.loads(body) if len(body) <= MAX_BODY_BYTES else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return EntryFacts("", "", problem="the body is not a JSON object")
    kind, version, spec = str(doc.get("kind", ""))[:40], str(doc.get("apiVersion", ""))[:20], as_dict(doc.get("spec"))
    digests: list[str] = []
    signers: list[bytes] = []  # PEM (v1) or DER (v2) certificates and keys
    sigs: list[bytes | None] = []
    if version == "0.0.2" and kind == "hashedrekord":
        record = as_dict(spec.get("hashedRekordV002"))
        digests.append(_v2_digest(record.get("data")))
        signers.append(_v2_verifier(get_path(record, "signature", "verifier")))
        sigs.append(b64decode(get_path(record, "signature", "content")))
    elif version == "0.0.2" and kind == "dsse":
        record = as_dict(spec.get("dsseV002"))
        digests.append(_v2_digest(record.get("payloadHash")))
        signers += [_v2_verifier(as_dict(s).get("verifier")) for s in as_list(record.get("signatures"))]
        sigs += [b64decode(as_dict(s).get("content")) for s in as_list(record.get("signatures"))]
    elif kind in ("hashedrekord", "rekord"):
        digests.append(_v1_digest(get_path(spec, "data", "hash")))
        signers.append(b64decode(get_path(spec, "signature", "publicKey", "content")) or b"")
        sigs.append(b64decode(get_path(spec, "signature", "content")))
    elif kind == "intoto":
        content = as_dict(spec.get("content"))
        digests += [_v1_digest(content.get("hash")), _v1_digest(content.get("payloadHash"))]
        logged = [as_dict(s) for s in as_list(as_dict(content.get("envelope")).get("signatures"))]
        if version == "0.0.1":
            signers.append(b64decode(spec.get("publicKey")) or b"")
        else:
            signers += [b64decode(s.get("publicKey")) or b"" for s in logged]
        for item in logged:  # 0.0.2 stores the envelope's base64 signature text base64-encoded again
            once = b64decode(item.get("sig"))
            sigs += [once, b64decode(once.decode("ascii", "replace")) if once else None]
    elif kind == "dsse":
        digests += [_v1_digest(spec.get("envelopeHash")), _v1_digest(spec.get("payloadHash"))]
        signers += [b64decode(as_dict(s).get("verifier")) or b"" for s in as_list(spec.get("signatures"))]
        sigs += [b64decode(as_dict(s).get("signature")) for s in as_list(spec.get("signatures"))]
    else:
        return EntryFacts(kind, version, problem=f"entries of kind {kind or '?'} {version} are not read")
    facts = _signers([s for s in signers[:8] if s])
    return EntryFacts(kind, version, tuple(dict.fromkeys(d for d in digests if d)), **facts,
                      signatures=tuple(dict.fromkeys(s for s in sigs[:16] if s)))


def _v1_digest(value: Any) -> str:
    value = as_dict(value)
    hex_value = value.get("value")
    if value.get("algorithm") == "sha256" and isinstance(hex_value, str) and re.fullmatch(r"[0-9a-f]{64}", hex_value):
        return f"sha256:{hex_value}"
    return ""


def _v2_digest(value: Any) -> str:
    value = as_dict(value)
    raw = b64decode(value.get("digest"))
    return f"sha256:{raw.hex()}" if value.get("algorithm") == "SHA2_256" and raw and len(raw) == _HASH else ""


def _v2_verifier(value: Any) -> bytes:
    value = as_dict(value)
    return (b64decode(get_path(value, "x509Certificate", "rawBytes"))
            or b64decode(get_path(value, "publicKey", "rawBytes")) or b"")


def _signers(blobs: Iterable[bytes]) -> dict[str, Any]:
    subjects: list[str] = []
    issuer, keys, problems = "", [], []
    claims: dict[str, str] = {}
    for blob in blobs:
        try:
            if b"CERTIFICATE" in blob:
                cert: x509.Certificate | None = x509.load_pem_x509_certificate(blob)
            elif blob.startswith(b"-----"):
                cert, key = None, serialization.load_pem_public_key(blob)
            else:
                try:
                    cert = x509.load_der_x509_certificate(blob)
                except ValueError:
                    cert, key = None, serialization.load_der_public_key(blob)
            if cert is not None:
                key = cert.public_key()
                subjects += sans_of(cert)
                issuer = issuer or (oidc_issuer(cert) or "")
                claims = claims or read_claims(cert)
            keys.append(f"sha256:{spki_sha256(key).hex()}")
        except (ValueError, TypeError, UnsupportedAlgorithm):
            problems.append("a signer's certificate or key cannot be read")
    return {"subjects": tuple(dict.fromkeys(subjects)), "issuer": issuer, "claims": claims,
            "key_fingerprints": tuple(dict.fromkeys(keys)), "problem": "; ".join(dict.fromkeys(problems))}


@functools.lru_cache(maxsize=512)
def _regexp(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True, slots=True)
class Watch:
    """A signer to watch: exact or (unanchored) regexp SAN and issuer, workflow claims that must all match, or a
    key fingerprint (``sha256:<hex>`` of the DER SPKI). Empty fields match anything; a watch with neither a
    subject, an issuer nor a key matches nothing."""

    ref: int
    subject: str = ""
    subject_regexp: str = ""
    issuer: str = ""
    issuer_regexp: str = ""
    claims: Mapping[str, str] = field(default_factory=dict)
    key_fingerprint: str = ""

    def matches(self, facts: EntryFacts) -> bool:
        """Whether ``facts``' signer is this one. Raises ``re.error`` for a bad regexp (validate on save)."""
        if self.key_fingerprint:
            return self.key_fingerprint.lower() in facts.key_fingerprints
        if not (self.subject or self.subject_regexp or self.issuer or self.issuer_regexp):
            return False
        if self.issuer and facts.issuer != self.issuer:
            return False
        if self.issuer_regexp and _regexp(self.issuer_regexp).search(facts.issuer) is None:
            return False
        if self.subject and self.subject not in facts.subjects:
            return False
        if self.subject_regexp and not any(_regexp(self.subject_regexp).search(s) for s in facts.subjects):
            return False
        for name, expected in self.claims.items():
            found = facts.claims.get(name, "")
            same = found.lower() == expected.lower() if name in ("repository", "sha") else found == expected
            if not same:
                return False
        return True



# --- webhooks -----------------------------------------------------------------------------------------------------


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Provenance-Signature``: ``sha256=`` HMAC-SHA256 over ``<timestamp>.<body>`` with the rule's secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def post_webhook(url: str, body: bytes, *, secret: str, headers: Mapping[str, str], timeout: float = 10.0,
                 max_response: int = 4096) -> tuple[int | None, str]:
    """POST ``body`` (JSON) to ``url``, signed with ``secret``; returns ``(status, error)``, error empty on a 2xx.

    No redirect is followed (a 3xx is a failure), the answer is read up to ``max_response`` bytes, ``timeout``
    bounds each step. Never raises for network trouble: the error says what happened.
    """
    timestamp = str(int(time.time()))
    signed = {"Content-Type": "application/json", "User-Agent": "provenance-monitor", **headers,
              "X-Provenance-Timestamp": timestamp, "X-Provenance-Signature": sign_webhook(secret, timestamp, body)}
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client, \
                client.stream("POST", url, content=body, headers=signed) as response:
            received = b""
            for chunk in response.iter_bytes():
                received += chunk
                if len(received) >= max_response:
                    break
            if 200 <= response.status_code < 300:
                return response.status_code, ""
            text = received[:300].decode("utf-8", "replace")
            return response.status_code, f"answered {response.status_code}: {text}".strip()
    except httpx.HTTPError as err:
        return None, f"{type(err).__name__}: {err}"[:1000]
