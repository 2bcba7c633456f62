from __future__ import annotations

from typing import Any

from django import template

from provenance.core.policy import INDEX_RULE
from provenance.policies.models import ArtifactTrust, Status, TrustEvent

register = template.Library()

_BADGES = {
    Status.TRUSTED: ("verified", "✔ trusted"),
    Status.UNTRUSTED: ("failed", "✘ untrusted"),
    Status.WARN: ("unsigned", "⚠ warn"),
    Status.UNSIGNED: ("unsigned", "○ unsigned"),
    Status.ERROR: ("error", "⚠ could not check"),
    Status.PENDING: ("pending", "… pending"),
}


@register.simple_tag
def artifact_trust(artifact: Any, limit: int = 10) -> dict[str, Any]:
    """Everything the trust panel shows for one artifact (its row, history, platforms)."""
    row = ArtifactTrust.objects.filter(artifact=artifact).first()
    children = list(artifact.children.all()) if artifact.is_index else []
    child_rows = {t.artifact_id: t for t in ArtifactTrust.objects.filter(artifact__in=children)}
    return {
        "row": row,
        "status": row.status if row else Status.PENDING,
        "policies": (row.details or {}).get("policies", []) if row else [],
        "platforms": (row.details or {}).get("platforms", []) if row else [],
        "children": [(c, child_rows.get(c.pk)) for c in children],
        "events": list(TrustEvent.objects.filter(artifact=artifact)[: int(limit)]),
        "event_count": TrustEvent.objects.filter(artifact=artifact).count(),
        "index_rule": INDEX_RULE,
    }


@register.filter
def trust_badge(status: str) -> str:
    return _BADGES.get(status, ("pending", status))[0]


@register.filter
def trust_label(status: str) -> str:
    return _BADGES.get(status, ("pending", status))[1]
