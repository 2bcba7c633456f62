"""Where trust-root rows meet the core's TrustRoot."""

from __future__ import annotations

import hashlib

from django.db import transaction

from provenance.core.trustroot import TrustRoot as CoreTrustRoot
from provenance.trust.models import TrustRoot


def load(row: TrustRoot) -> CoreTrustRoot:
    """Return the core trust root for a row (parsed once per process per document).

    Raises :class:`provenance.core.errors.TrustRootError` when the stored document is not a valid root.
    """
    return CoreTrustRoot.from_json(row.document.encode(), name=row.name)


@transaction.atomic
def register(*, name: str, document: bytes, kind: str = TrustRoot.Kind.PRIVATE, description: str = "") -> TrustRoot:
    """Validate and store a ``trusted_root.json``; raises TrustRootError (nothing saved) when it is invalid."""
    CoreTrustRoot.from_json(document, name=name)
    row, _ = TrustRoot.objects.update_or_create(
        name=name,
        defaults={
            "kind": kind,
            "description": description,
            "document": document.decode(),
            "sha256": hashlib.sha256(document).hexdigest(),
        },
    )
    return row


def ensure_builtin_roots() -> None:
    """Store the public-good production and staging roots shipped with ``sigstore`` (idempotent)."""
    builtin = (
        ("sigstore-public-good", TrustRoot.Kind.PUBLIC_GOOD, CoreTrustRoot.production(),
         "Sigstore public-good instance"),
        ("sigstore-staging", TrustRoot.Kind.STAGING, CoreTrustRoot.staging(), "Sigstore staging instance"),
    )
    for name, kind, root, description in builtin:
        if not TrustRoot.objects.filter(name=name, sha256=hashlib.sha256(root.raw).hexdigest()).exists():
            register(name=name, document=root.raw, kind=kind, description=description)
