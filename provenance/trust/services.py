"""Where trust-root and public-key rows meet the core: validation, storage, and the TUF refresh."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from provenance.core import keys as core_keys
from provenance.core import tufroot
from provenance.core.errors import ProvenanceError, TrustRootError
from provenance.core.trustroot import Service, SigningConfig
from provenance.core.trustroot import TrustRoot as CoreTrustRoot
from provenance.trust.models import PublicKey, TrustRoot

log = logging.getLogger(__name__)

PUBLIC_GOOD = "sigstore-public-good"
STAGING = "sigstore-staging"
_BUILTIN = {
    PUBLIC_GOOD: (TrustRoot.Kind.PUBLIC_GOOD, tufroot.PRODUCTION_TUF_URL, "Sigstore public-good instance"),
    STAGING: (TrustRoot.Kind.STAGING, tufroot.STAGING_TUF_URL, "Sigstore staging instance"),
}


def load(row: TrustRoot) -> CoreTrustRoot:
    """Return the core trust root for a row (parsed once per process per document).

    Raises :class:`provenance.core.errors.TrustRootError` when the stored document is not a valid root.
    """
    return CoreTrustRoot.from_json(row.document.encode(), name=row.name)


@transaction.atomic
def register(*, name: str, document: bytes, kind: str = TrustRoot.Kind.PRIVATE, description: str = "",
             tuf_url: str = "", tuf_root: bytes = b"", signing_config: SigningConfig | None = None) -> TrustRoot:
    """Validate and store a ``trusted_root.json``; raises TrustRootError (nothing saved) when it is invalid."""
    CoreTrustRoot.from_json(document, name=name)
    defaults = {
        "kind": kind,
        "description": description,
        "document": document.decode(),
        "sha256": hashlib.sha256(document).hexdigest(),
    }
    if tuf_url:
        defaults["tuf_url"] = tuf_url
    if tuf_root:
        defaults["tuf_root"] = tuf_root.decode()
    if signing_config is not None:
        defaults["signing_config"] = signing_config.raw.decode()
    previous = TrustRoot.objects.filter(name=name).values_list("sha256", flat=True).first()
    row, _ = TrustRoot.objects.update_or_create(name=name, defaults=defaults)
    if previous is not None and previous != row.sha256:
        _trust_changed(row)
    return row


def _trust_changed(row: TrustRoot) -> None:
    # Imported here: policies.services depends on this module, not the other way round.
    from provenance.policies import services as policy_services

    policy_services.trust_root_changed(row)


def upload_private_root(*, name: str, document: bytes, description: str = "") -> TrustRoot:
    """Store a private deployment's ``trusted_root.json`` uploaded by a user.

    Raises :class:`TrustRootError` with a stable code when the document is not a valid trusted root, or when
    ``name`` is one of the built-in roots (those come from the ``sigstore`` package and TUF only).
    """
    if name in _BUILTIN or TrustRoot.objects.filter(name=name).exclude(kind=TrustRoot.Kind.PRIVATE).exists():
        raise TrustRootError(f"{name!r} is a built-in trust root; choose another name", code="trust_root_reserved")
    try:
        document.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TrustRootError("the trusted root is not UTF-8 JSON", code="trust_root_malformed") from err
    return register(name=name, document=document, kind=TrustRoot.Kind.PRIVATE, description=description)


def ensure_builtin_roots() -> None:
    """Store the public-good production and staging roots shipped with ``sigstore`` (idempotent).

    A root refreshed over TUF since is newer than the shipped copy and is kept.
    """
    shipped = {PUBLIC_GOOD: CoreTrustRoot.production(), STAGING: CoreTrustRoot.staging()}
    for name, (kind, url, description) in _BUILTIN.items():
        row = TrustRoot.objects.filter(name=name).first()
        if row is None or (row.refreshed_at is None and row.sha256 != shipped[name].sha256):
            register(name=name, document=shipped[name].raw, kind=kind, description=description, tuf_url=url,
                     signing_config=SigningConfig.shipped(url))
        elif not row.tuf_url:
            TrustRoot.objects.filter(pk=row.pk).update(tuf_url=url)


def refresh_from_tuf(row_id: int, *, timeout: int | None = None) -> TrustRoot | None:
    """Refresh one root from its TUF repository; on any failure keep the stored root and record why.

    Returns the row (None when it is gone). Never raises a :class:`ProvenanceError`: a refresh that cannot
    run (no network, a repository that does not verify) is stored on the row as ``refresh_error``.
    """
    row = TrustRoot.objects.filter(pk=row_id).first()
    if row is None or not row.tuf_url:
        return row
    try:
        fresh = tufroot.fetch_trusted_root(row.tuf_url, metadata_dir=_metadata_dir(row.name),
                                           anchor=row.tuf_root.encode() or None,
                                           timeout=timeout or settings.PROVENANCE_HTTP_TIMEOUT)
    except ProvenanceError as err:
        log.warning("trust root %s: TUF refresh failed (%s); keeping the stored root", row.name, err.code)
        TrustRoot.objects.filter(pk=row.pk).update(refresh_error=f"{err.code}: {err.message}"[:2000])
        row.refresh_from_db()
        return row
    with transaction.atomic():
        update: dict[str, object] = {"refreshed_at": timezone.now(), "refresh_error": ""}
        if fresh.signing_config is not None:
            update["signing_config"] = fresh.signing_config.raw.decode()
        if fresh.root.sha256 != row.sha256:
            update |= {"document": fresh.root.raw.decode(), "sha256": fresh.root.sha256}
            log.info("trust root %s: refreshed to sha256:%s", row.name, fresh.root.sha256[:12])
        TrustRoot.objects.filter(pk=row.pk).update(**update)
        row.refresh_from_db()
        if "sha256" in update:
            _trust_changed(row)
    return row


def initialize_from_tuf(*, name: str, mirror: str, root: bytes, description: str = "",
                        timeout: int | None = None) -> TrustRoot:
    """Set up a private Sigstore deployment from its TUF repository, as ``cosign initialize --mirror URL --root
    FILE`` does: ``root`` (the repository's initial ``root.json``) anchors it, every metadata signature and expiry
    is verified from there to the current ``trusted_root.json``, and the row is refreshed like the public-good
    one afterwards. Raises :class:`TrustRootError` or :class:`TransientError` (nothing stored) on failure.
    """
    if name in _BUILTIN or TrustRoot.objects.filter(name=name).exclude(kind=TrustRoot.Kind.PRIVATE).exists():
        raise TrustRootError(f"{name!r} is a built-in trust root; choose another name", code="trust_root_reserved")
    if not mirror.startswith(("https://", "http://")):
        raise TrustRootError(f"the TUF mirror must be an http(s) URL, not {mirror[:100]!r}", code="tuf_invalid")
    metadata_dir = _metadata_dir(name)
    tufroot.reset_metadata(metadata_dir)  # a new anchor: never walk on from metadata another anchor accepted
    fetched = tufroot.fetch_trusted_root(mirror.rstrip("/"), metadata_dir=metadata_dir, anchor=root,
                                         timeout=timeout or settings.PROVENANCE_HTTP_TIMEOUT)
    row = register(name=name, document=fetched.root.raw, kind=TrustRoot.Kind.PRIVATE, description=description,
                   tuf_url=mirror.rstrip("/"), tuf_root=root, signing_config=fetched.signing_config)
    TrustRoot.objects.filter(pk=row.pk).update(refreshed_at=timezone.now(), refresh_error="")
    row.refresh_from_db()
    return row


def signing_services(row: TrustRoot) -> tuple[Service, ...]:
    """The services a root's stored signing config names (empty when it has none or it no longer parses)."""
    if not row.signing_config:
        return ()
    try:
        return SigningConfig.from_json(row.signing_config.encode(), name=row.name).services
    except TrustRootError:
        return ()


def _metadata_dir(name: str) -> Path:
    return Path(settings.DATA_DIR) / "tuf" / name


def refresh_all_from_tuf() -> dict[str, str]:
    """Refresh every root that has a TUF repository; returns ``{name: "ok" | error}``."""
    results = {}
    for row_id in TrustRoot.objects.exclude(tuf_url="").values_list("pk", flat=True):
        row = refresh_from_tuf(row_id)
        if row is not None:
            results[row.name] = row.refresh_error or "ok"
    return results


@transaction.atomic
def add_public_key(*, name: str, pem: bytes, description: str = "") -> PublicKey:
    """Validate and store a named public key; raises MalformedEvidenceError (``public_key_invalid``) if bad.

    The same key under a new name is refused (``public_key_duplicate``): one key, one name.
    """
    info = core_keys.read_public_key(pem)
    existing = PublicKey.objects.filter(fingerprint=info.fingerprint).exclude(name=name).first()
    if existing is not None:
        raise TrustRootError(f"this key is already trusted as {existing.name!r}", code="public_key_duplicate")
    row, _ = PublicKey.objects.update_or_create(
        name=name,
        defaults={"pem": info.pem.decode(), "fingerprint": info.fingerprint, "algorithm": info.algorithm,
                  "description": description},
    )
    from provenance.policies import services as policy_services

    policy_services.public_key_changed(name)
    return row


def public_key_pems(names: list[str] | None = None) -> tuple[bytes, ...]:
    """The PEMs of the named keys (all keys when ``names`` is None), for verification."""
    rows = PublicKey.objects.all() if names is None else PublicKey.objects.filter(name__in=names)
    return tuple(row.pem.encode() for row in rows)
