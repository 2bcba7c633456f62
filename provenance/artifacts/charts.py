"""Pictures drawn on the server as SVG geometry (no script, no CDN, nothing loaded: fit for a strict CSP).

Functions return rows of plain numbers and labels; templates draw them as ``<svg>`` with presentation attributes
only and auto-escape every label. Each picture has a table of the same figures next to it, for screen readers
and for copying.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Count

from provenance.artifacts.models import Artifact, TrustStatus
from provenance.policies.models import Status
from provenance.sources.models import Source

MAX_SOURCES = 20  # rows per picture; the rest are counted in a note
LABEL_WIDTH = 170
BAR_WIDTH = 400
WIDTH = LABEL_WIDTH + BAR_WIDTH + 60
MAX_LABEL = 24

COLOURS = {
    # signature status and policy verdict alike
    "verified": "#1a7f37", "trusted": "#1a7f37", "failed": "#cf222e", "untrusted": "#cf222e",
    "unsigned": "#bf8700", "warn": "#9a6700", "error": "#82071e", "pending": "#8c959f",
    # coverage measures
    "signed": "#0969da", "provenance": "#8250df", "sbom": "#bf3989", "coverage-trusted": "#1a7f37",
}


@dataclass(frozen=True, slots=True)
class Segment:
    key: str
    label: str
    count: int
    x: float
    width: float
    colour: str


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    y: float
    height: float
    segments: tuple[Segment, ...]
    text: str  # the figures, as words (the bar's title and the list under the picture)
    value: str  # what is written after the bar
    value_x: float

    @property
    def text_y(self) -> float:
        return self.y + self.height - 2


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    width: int
    height: int
    rows: tuple[Row, ...]
    groups: tuple[tuple[str, float], ...]  # (source name, y of its label)
    legend: tuple[tuple[str, str, float, float], ...]  # (label, colour, x of the swatch, x of the label)
    legend_y: float
    more: int  # sources not drawn
    label_x: float = LABEL_WIDTH - 4
    bar_x: float = LABEL_WIDTH
    bar_width: float = BAR_WIDTH

    @property
    def swatch_y(self) -> float:
        return self.legend_y - 10


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _legend(items: Sequence[tuple[str, str]]) -> tuple[tuple[str, str, float, float], ...]:
    x, out = float(LABEL_WIDTH), []
    for label, colour in items:
        out.append((label, colour, x, x + 15))
        x += 16 + 7.2 * len(label) + 14
    return tuple(out)


def coverage_chart(coverage: Sequence[Any]) -> Chart:
    """Per source, four bars from 0 to 100 %: valid signature, SLSA provenance, signed SBOM, trusted (``coverage`` is
    policies.services.coverage()'s rows)."""
    measures = (("signed", "signed", "signed"), ("provenance", "provenance", "provenance"),
                ("sbom", "signed SBOM", "sbom"), ("trusted", "trusted", "coverage-trusted"))
    rows, groups, y = [], [], 28.0
    shown = [c for c in coverage if c.images][:MAX_SOURCES]
    for c in shown:
        groups.append((_short(c.source.name), y + 30))
        for key, label, colour in measures:
            count = getattr(c, key)
            share = c.share(count)
            segment = Segment(key, label, count, LABEL_WIDTH, BAR_WIDTH * share / 100, COLOURS[colour])
            rows.append(Row(label, y, 12, (segment,), f"{c.source.name} {label}: {share}% ({count} of {c.images})",
                            f"{share}%", LABEL_WIDTH + BAR_WIDTH * share / 100 + 4))
            y += 15
        y += 14
    more = len([c for c in coverage if c.images]) - len(shown)
    return Chart("Coverage per source (% of images)", WIDTH, int(y + 8), tuple(rows), tuple(groups),
                 _legend([(label, COLOURS[colour]) for _, label, colour in measures]), 14, more)


def verdict_counts() -> dict[int, dict[str, dict[str, int]]]:
    """``{source id: {"signature": {status: n}, "policy": {verdict: n}}}`` over top-level artifacts; two queries
    whatever the fleet's size."""
    counts: dict[int, dict[str, dict[str, int]]] = defaultdict(lambda: {"signature": {}, "policy": {}})
    top = Artifact.objects.filter(parent__isnull=True)
    for source_id, status, n in top.values_list("source_id", "status").annotate(n=Count("pk")).order_by():
        counts[source_id]["signature"][status] = n
    for source_id, verdict, n in (top.values_list("source_id", "trust__status").annotate(n=Count("pk"))
                                  .order_by()):
        key = verdict or Status.PENDING.value
        policy = counts[source_id]["policy"]
        policy[key] = policy.get(key, 0) + n
    return counts


def verdict_chart(sources: Sequence[Source] | None = None) -> Chart:
    """Per source, two stacked bars: its images by signature status and by policy verdict."""
    counts = verdict_counts()
    if sources is None:
        sources = list(Source.objects.filter(pk__in=list(counts)).order_by("name")[: MAX_SOURCES + 1])
    shown = [s for s in sources if s.pk in counts][:MAX_SOURCES]
    kinds = (("signature", "signatures", TrustStatus.choices), ("policy", "policy", Status.choices))
    rows, groups, y = [], [], 28.0
    for source in shown:
        groups.append((_short(source.name), y + 14))
        for kind, label, choices in kinds:
            values = counts[source.pk][kind]
            total = sum(values.values()) or 1
            x, segments = float(LABEL_WIDTH), []
            for value, name in choices:
                n = values.get(value, 0)
                if n:
                    width = BAR_WIDTH * n / total
                    segments.append(Segment(value, str(name).lower(), n, x, width, COLOURS[value]))
                    x += width
            words = ", ".join(f"{s.count} {s.label}" for s in segments)
            rows.append(Row(label, y, 12, tuple(segments), f"{source.name} {label}: {words or 'none'}",
                            str(sum(values.values())), LABEL_WIDTH + BAR_WIDTH + 4))
            y += 15
        y += 14
    more = len(counts) - len(shown)
    legend = [(str(name).lower(), COLOURS[value]) for value, name in TrustStatus.choices if value != "pending"]
    legend += [("trusted", COLOURS["trusted"]), ("warn", COLOURS["warn"]), ("pending", COLOURS["pending"])]
    unique = list(dict.fromkeys(legend))
    return Chart("Verdicts per source (top-level images)", WIDTH, int(y + 8), tuple(rows), tuple(groups),
                 _legend(unique), 14, max(more, 0))
