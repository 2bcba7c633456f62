"""Fetching a log entry's inclusion proof from Rekor, to upgrade a promise (SET) to a proof. Optional.

Off unless the caller passes :func:`make_fetcher`'s result to verification; every failure is a
:class:`TransientError` that verification treats as "no upgrade" (the SET result stands).
"""

from __future__ import annotations

from typing import Any

import httpx

from provenance.core.errors import TransientError
from provenance.core.verify import InclusionProofFetcher

__all__ = ["MAX_ENTRY_BYTES", "fetch_entry", "make_fetcher"]

MAX_ENTRY_BYTES = 256 * 1024


def fetch_entry(
    base_url: str, log_index: int, *, timeout: float = 10.0, client: httpx.Client | None = None
) -> dict[str, Any]:
    """Return Rekor's answer for entry ``log_index``: ``{uuid: {body, integratedTime, ..., verification}}``.

    Raises :class:`TransientError` when the log cannot be reached or answers with anything else.
    """
    if not base_url.startswith("https://") and not base_url.startswith("http://127.0.0.1"):
        raise TransientError(f"refusing to fetch from {base_url!r}: not an https URL", code="rekor_unreachable")
    url = f"{base_url.rstrip('/')}/api/v1/log/entries"
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    try:
        response = http.get(url, params={"logIndex": log_index})
        if response.status_code != 200 or len(response.content) > MAX_ENTRY_BYTES:
            raise TransientError(
                f"{url}?logIndex={log_index} answered {response.status_code}", code="rekor_unreachable"
            )
        answer = response.json()
    except (httpx.HTTPError, ValueError) as err:
        raise TransientError(
            f"cannot fetch entry {log_index} from {base_url}: {err}", code="rekor_unreachable"
        ) from err
    finally:
        if own:
            http.close()
    if not isinstance(answer, dict) or len(answer) != 1:
        raise TransientError(f"{url} did not answer with one entry", code="rekor_unreachable")
    return answer


def make_fetcher(*, timeout: float = 10.0) -> InclusionProofFetcher:
    """An ``InclusionProofFetcher`` for :func:`provenance.core.verify.verify_bundle`."""

    def fetch(base_url: str, log_index: int) -> dict[str, Any]:
        return fetch_entry(base_url, log_index, timeout=timeout)

    return fetch
