"""DSSE envelopes and the in-toto statements they carry: the pre-authentication encoding and subject matching."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

from provenance.core.types import (
    Digest,
)
from provenance.core.verify.encoding import as_dict, short

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


IN_TOTO_STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"})


@dataclass
class Envelope:
    payload_type: str
    payload: bytes
    signatures: list[bytes]
    statement: dict[str, Any] | None = None  # set once the payload parsed as an in-toto statement


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def is_statement(statement: Any) -> TypeGuard[dict[str, Any]]:
    """Whether ``statement`` (parsed JSON) is an in-toto statement: a known ``_type``, a list of subjects with
    digests, and a ``predicateType``."""
    if not isinstance(statement, dict):
        return False
    subjects = statement.get("subject")
    return (
        statement.get("_type") in IN_TOTO_STATEMENT_TYPES
        and isinstance(subjects, list)
        and all(isinstance(s, dict) and isinstance(s.get("digest"), dict) for s in subjects)
        and isinstance(statement.get("predicateType"), str)
    )


def subject_matches(subject: dict[str, Any], image_digest: Digest) -> bool:
    digests = subject.get("digest")
    return isinstance(digests, dict) and digests.get(image_digest.algorithm) == image_digest.hex


def describe_subject(subject: dict[str, Any]) -> str:
    digests = as_dict(subject.get("digest"))
    shown = ", ".join(f"{alg}:{str(value)[:16]}..." for alg, value in list(digests.items())[:2])
    return f"{short(subject.get('name', ''), 60)} ({shown or 'no digest'})"
