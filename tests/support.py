"""Shared test helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REQUIRE_ALL = os.environ.get("PROVENANCE_REQUIRE_ALL") == "1"


def missing_component(reason: str) -> None:
    """Skip with a printed reason, or fail on CI (PROVENANCE_REQUIRE_ALL=1) where nothing may be missing."""
    if REQUIRE_ALL:
        pytest.fail(f"required component missing on CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing_component(f"{name} not installed: {install_hint}")
    return str(path)


def real_fixtures_dir() -> Path:
    """The shared real Sigstore material (../shared/fixtures/real or $PROVENANCE_REAL_FIXTURES)."""
    candidates = [os.environ.get("PROVENANCE_REAL_FIXTURES", ""),
                  str(Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "MANIFEST.md").is_file():
            return Path(candidate)
    missing_component("real Sigstore fixtures not found (set PROVENANCE_REAL_FIXTURES or put shared/ beside the repo)")
    raise AssertionError("unreachable")
