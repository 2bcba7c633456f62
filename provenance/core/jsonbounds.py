"""JSON from attacker-controlled bytes, bounded in depth (and optionally size), failing as ``ValueError`` only.

``json.loads`` recurses in C and raises ``RecursionError`` (not a ``ValueError``) on deeply nested input, which
escaped parsers written as ``except ValueError``: a ``[[[[...`` layer could crash verification of a whole image.
:func:`loads` turns that, and nesting deeper than ``max_depth``, into :class:`JSONBoundsError`, a ``ValueError``,
so every existing ``except ValueError`` around a parse catches it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "JSONBoundsError", "depth_exceeds", "loads"]

MAX_DEPTH = 64  # far deeper than any manifest, bundle, envelope, statement or trust root nests


class JSONBoundsError(ValueError):
    """The document is larger or nested deeper than allowed (or than the interpreter can parse)."""


def loads(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None) -> Any:
    """Parse JSON no deeper than ``max_depth`` (and no longer than ``max_bytes``, when given).

    Returns the value. Raises ``ValueError``: :class:`JSONBoundsError` for a limit, ``json.JSONDecodeError`` or
    ``UnicodeDecodeError`` for bytes that are not UTF-8 JSON.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise JSONBoundsError(f"the document is {len(data)} bytes, over the {max_bytes}-byte limit")
    try:
        value = json.loads(data)
    except RecursionError as err:
        raise JSONBoundsError(f"the document nests deeper than {max_depth} levels") from err
    if depth_exceeds(value, max_depth):
        raise JSONBoundsError(f"the document nests deeper than {max_depth} levels")
    return value


def depth_exceeds(value: object, max_depth: int) -> bool:
    """Whether a parsed JSON value nests objects and arrays deeper than ``max_depth`` (walked without recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
