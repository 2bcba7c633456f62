"""Where trust-root and public-key rows meet the core: validation, storage, and the TUF refresh."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from provenance.accounts import services as audit
from provenance.core import keys as core_keys
from provenance.core import tufroot
from provenance.core.errors import ProvenanceError, TrustRootError
from provenance.core.trustroot import Service, SigningConfig
from provenance.core.trustroot import TrustRoot as CoreTrustRoot
from provenance.trust.models import PublicKey, PublicKeyVersion, TrustRoot, TrustRootVersion

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
             tuf_url: str = "", tuf_root: bytes = b"", signing_config: SigningConfig | None = None,
             origin: str = TrustRootVersion.Origin.UPLOAD) -> TrustRoot:
    """Validate and store a ``trusted_root.json``; raises TrustRootError (nothing saved) when it is invalid.

    A new document under an existing name becomes the root's next version (the old ones are kept), is recorded
    in the audit trail, and re-evaluates the images it affects.
    """
    CoreTrustRoot.from_json(document, name=name)
    sha256 = hashlib.sha256(document).hexdigest()
    fields: dict[str, object] = {"kind": kind, "description": description}
    if tuf_url:
        fields["tuf_url"] = tuf_url
    if tuf_root:
        fields["tuf_root"] = tuf_root.decode()
    if signing_config is not None:
        fields["signing_config"] = signing_config.raw.decode()
    row = TrustRoot.objects.select_for_update().filter(name=name).first()
    if row is None:
        row = TrustRoot.objects.create(name=name, document=document.decode(), sha256=sha256, **fields)
        _new_version(row, origin)
        audit.record("trust_root.create", row, {"sha256": sha256, "version": 1, "origin": origin})
        return row
    changed = row.sha256 != sha256
    for key, value in fields.items():
        setattr(row, key, value)
    if changed:
        previous = row.sha256
        row.document, row.sha256, row.version = document.decode(), sha256, row.version + 1
    row.save()
    if changed:
        _new_version(row, origin)
        audit.record("trust_root.version", row, {"sha256": sha256, "previous_sha256": previous,
                                                 "version": row.version, "origin": origin})
        _trust_changed(row)
    return row


def _new_version(row: TrustRoot, origin: str) -> None:
    TrustRootVersion.objects.create(trust_root=row, version=row.version, document=row.document, sha256=row.sha256,
                                    origin=origin)


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
                     signing_config=SigningConfig.shipped(url), origin=TrustRootVersion.Origin.SHIPPED)
        elif not row.tuf_url:
            TrustRoot.objects.filter(pk=row.pk).update(tuf_url=url)


class TufDisabledError(ProvenanceError):
    """Refreshing trust roots over TUF is turned off (``PROVENANCE_SIGSTORE_TUF=0``)."""

    code = "tuf_disabled"


def check_tuf_enabled() -> None:
    """Raise :class:`TufDisabledError` when ``PROVENANCE_SIGSTORE_TUF`` is off (an offline or pinned install)."""
    if not settings.PROVENANCE_SIGSTORE_TUF:
        raise TufDisabledError("refreshing trust roots over TUF is turned off on this server "
                               "(PROVENANCE_SIGSTORE_TUF=0); the stored roots stay as they are")


def refresh_from_tuf(row_id: int, *, timeout: int | None = None) -> TrustRoot | None:
    """Refresh one root from its TUF repository; on any failure keep the stored root and record why.

    Returns the row (None when it is gone), unchanged and without any request when PROVENANCE_SIGSTORE_TUF is
    off. Never raises a :class:`ProvenanceError`: a refresh that cannot run (no network, a repository that does
    not verify) is stored on the row as ``refresh_error``.
    """
    row = TrustRoot.objects.filter(pk=row_id).first()
    if row is None or not row.tuf_url or not settings.PROVENANCE_SIGSTORE_TUF:
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
        TrustRoot.objects.filter(pk=row.pk).update(refreshed_at=timezone.now(), refresh_error="")
        row = register(name=row.name, document=fresh.root.raw, kind=row.kind, description=row.description,
                       signing_config=fresh.signing_config, origin=TrustRootVersion.Origin.TUF)
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
                   tuf_url=mirror.rstrip("/"), tuf_root=root, signing_config=fetched.signing_config,
                   origin=TrustRootVersion.Origin.TUF)
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
    """Refresh every root that has a TUF repository; returns ``{name: "ok" | error}`` (nothing when TUF is off)."""
    results: dict[str, str] = {}
    if not settings.PROVENANCE_SIGSTORE_TUF:
        return results
    for row_id in TrustRoot.objects.exclude(tuf_url="").values_list("pk", flat=True):
        row = refresh_from_tuf(row_id)
        if row is not None:
            results[row.name] = row.refresh_error or "ok"
    return results


@transaction.atomic
def add_public_key(*, name: str, pem: bytes, description: str = "") -> PublicKey:
    """Validate and store a named public key; raises MalformedEvidenceError (``public_key_invalid``) if bad.

    The same key under a new name is refused (``public_key_duplicate``): one key, one name. Another key under an
    existing name becomes that name's next version (the old one is kept, retired), recorded in the audit trail;
    the images of the policies that name it are re-evaluated.
    """
    info = core_keys.read_public_key(pem)
    existing = PublicKey.objects.filter(fingerprint=info.fingerprint).exclude(name=name).first()
    if existing is not None:
        raise TrustRootError(f"this key is already trusted as {existing.name!r}", code="public_key_duplicate")
    row = PublicKey.objects.select_for_update().filter(name=name).first()
    if row is not None and row.fingerprint == info.fingerprint:
        if row.description != description:
            PublicKey.objects.filter(pk=row.pk).update(description=description)
            row.description = description
        return row
    now = timezone.now()
    version = (PublicKeyVersion.objects.filter(name=name).aggregate(v=Max("version"))["v"] or 0) + 1
    PublicKeyVersion.objects.filter(name=name, retired_at__isnull=True).update(retired_at=now)
    PublicKeyVersion.objects.create(name=name, version=version, pem=info.pem.decode(), fingerprint=info.fingerprint,
                                    algorithm=info.algorithm)
    fields = {"pem": info.pem.decode(), "fingerprint": info.fingerprint, "algorithm": info.algorithm,
              "description": description, "version": version}
    if row is None:
        row = PublicKey.objects.create(name=name, **fields)
    else:
        PublicKey.objects.filter(pk=row.pk).update(**fields)
        row.refresh_from_db()
    audit.record("public_key.create" if version == 1 else "public_key.version", row,
                 {"fingerprint": info.fingerprint, "version": version})
    _key_changed(name)
    return row


@transaction.atomic
def retire_public_key(row: PublicKey) -> None:
    """Stop trusting a named key: its row goes, its versions are kept (retired), the change is audited and the
    images of the policies that name it are re-evaluated."""
    PublicKeyVersion.objects.filter(name=row.name, retired_at__isnull=True).update(retired_at=timezone.now())
    audit.record("public_key.retire", row, {"fingerprint": row.fingerprint, "version": row.version})
    row.delete()
    _key_changed(row.name)


def _key_changed(name: str) -> None:
    from provenance.policies import services as policy_services

    policy_services.public_key_changed(name)


def public_key_pems(names: list[str] | None = None) -> tuple[bytes, ...]:
    """The PEMs of the named keys (all keys when ``names`` is None), for verification."""
    rows = PublicKey.objects.all() if names is None else PublicKey.objects.filter(name__in=names)
    return tuple(row.pem.encode() for row in rows)
