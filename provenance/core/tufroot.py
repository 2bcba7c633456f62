"""Refreshing a Sigstore trusted root over TUF (The Update Framework), failing safe.

The ``sigstore`` wheel ships each instance's TUF ``root.json`` (the trust anchor) and a copy of its
``trusted_root.json``. A refresh walks the TUF metadata from that anchor to the repository's current
``trusted_root.json``, verifying every signature and expiry on the way, in a metadata directory the
application owns (never the user's cache). Any failure raises and changes nothing: the caller keeps the root
it has.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from provenance.core.errors import TransientError, TrustRootError
from provenance.core.trustroot import SigningConfig, TrustRoot, shipped_file

__all__ = ["PRODUCTION_TUF_URL", "STAGING_TUF_URL", "TufTrust", "fetch_trusted_root"]

PRODUCTION_TUF_URL = "https://tuf-repo-cdn.sigstore.dev"
STAGING_TUF_URL = "https://tuf-repo-cdn.sigstage.dev"
_TARGET = "trusted_root.json"
_SIGNING_CONFIG = "signing_config.v0.2.json"


@dataclass(frozen=True, slots=True)
class TufTrust:
    """What a TUF repository distributes for a Sigstore deployment: its trusted root, and its signing config
    when the repository has one."""

    root: TrustRoot
    signing_config: SigningConfig | None


def fetch_trusted_root(url: str, *, metadata_dir: Path, timeout: int = 15, anchor: bytes | None = None) -> TufTrust:
    """Fetch and validate the current ``trusted_root.json`` (and ``signing_config.v0.2.json`` when listed) of the
    TUF repository at ``url``, as ``cosign initialize --mirror URL --root FILE`` does.

    ``anchor`` is the TUF ``root.json`` to trust first; by default the one the installed ``sigstore`` ships for
    ``url`` (production or staging). A private deployment's TUF repository works with its own anchor.
    ``metadata_dir`` keeps the verified TUF metadata between refreshes (created if missing).

    Returns the validated :class:`TufTrust`. Raises :class:`TransientError` when the repository cannot be
    reached, :class:`TrustRootError` when its metadata or the root does not verify (both leave nothing changed).
    """
    from tuf.api.exceptions import DownloadError, RepositoryError
    from tuf.ngclient.config import UpdaterConfig
    from tuf.ngclient.updater import Updater
    from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

    anchor = anchor if anchor is not None else _shipped_anchor(url)
    metadata_dir.mkdir(parents=True, exist_ok=True)
    targets_dir = metadata_dir / "targets"
    targets_dir.mkdir(exist_ok=True)
    if not (metadata_dir / "root.json").is_file():
        (metadata_dir / "root.json").write_bytes(anchor)
    try:
        updater = Updater(
            metadata_dir=str(metadata_dir),
            metadata_base_url=url,
            target_base_url=f"{url}/targets/",
            target_dir=str(targets_dir),
            fetcher=Urllib3Fetcher(socket_timeout=timeout, app_user_agent="provenance"),
            config=UpdaterConfig(max_root_rotations=64),
            bootstrap=None,
        )
        updater.refresh()
        info = updater.get_targetinfo(_TARGET)
        if info is None:
            raise TrustRootError(f"the TUF repository {url} lists no {_TARGET}", code="trust_root_unknown")
        data = Path(updater.find_cached_target(info) or updater.download_target(info)).read_bytes()
        config_info = updater.get_targetinfo(_SIGNING_CONFIG)
        config = (Path(updater.find_cached_target(config_info) or updater.download_target(config_info)).read_bytes()
                  if config_info is not None else None)
    except DownloadError as err:
        raise TransientError(f"cannot reach the TUF repository {url}: {err}", code="tuf_unreachable") from err
    except RepositoryError as err:
        raise TrustRootError(f"the TUF repository {url} does not verify: {err}", code="tuf_invalid") from err
    except OSError as err:  # urllib3 wraps most network failures as DownloadError; the rest land here
        raise TransientError(f"cannot reach the TUF repository {url}: {err}", code="tuf_unreachable") from err
    return TufTrust(TrustRoot.from_json(data, name=f"tuf:{url}"),
                    SigningConfig.from_json(config, name=f"tuf:{url}") if config is not None else None)


def reset_metadata(metadata_dir: Path) -> None:
    """Forget the cached TUF metadata (the next refresh starts again from the shipped anchor)."""
    shutil.rmtree(metadata_dir, ignore_errors=True)


def _shipped_anchor(url: str) -> bytes:
    anchor = shipped_file(url, "root.json")
    if anchor is None:
        raise TrustRootError(
            f"no TUF anchor is shipped for {url}: a private repository needs its root.json (its initial anchor)",
            code="trust_root_unknown",
        )
    return anchor
