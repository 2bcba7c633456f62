"""Bounded, strict decoding of attacker-controlled encodings: base64, JSON shapes, integers, digests."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

# RFC 8785 (the SET's canonical form) only has integers up to 2**53; times must also be dates Python can hold.
MAX_JSON_INT = 2**53 - 1


MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def get_path(obj: Any, *keys: str) -> Any:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def b64decode(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def b64decode_strict(value: Any) -> bytes:
    decoded = b64decode(value)
    if decoded is None:
        raise ValueError("SignedEntryTimestamp is not base64")
    return decoded


def is_int(value: Any, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def short(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
