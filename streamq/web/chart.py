"""Throughput charts as SVG geometry: stacked bars of outcome counts, computed here (pure),
drawn by a template with no script, so the chart works under a strict CSP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streamq.keys import MINUTE_MS
from streamq.store.views import OUTCOMES, Minute

WIDTH, HEIGHT = 600, 120


@dataclass(frozen=True, slots=True)
class Rect:
    """One outcome's part of one bar."""

    outcome: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Bar:
    """One bucket of time: when it starts, its counts, and its rectangles."""

    start_ms: int
    counts: dict[str, int]
    rects: list[Rect]

    @property
    def total(self) -> int:
        """Jobs finished in this bucket, whatever the outcome."""
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart of ``bars`` of ``bucket_ms`` each; ``peak`` is the tallest bar's total."""

    title: str
    bucket_ms: int
    bars: list[Bar]
    peak: int
    totals: dict[str, int]
    width: int = WIDTH
    height: int = HEIGHT


def chart(title: str, minutes: Sequence[Minute], bucket_minutes: int) -> Chart:
    """Sum ``minutes`` into buckets of ``bucket_minutes`` and lay the bars out."""
    buckets: list[tuple[int, dict[str, int]]] = []
    for i in range(0, len(minutes), bucket_minutes):
        counts: dict[str, int] = {}
        for m in minutes[i : i + bucket_minutes]:
            for outcome, n in m.counts.items():
                counts[outcome] = counts.get(outcome, 0) + n
        buckets.append((minutes[i].start_ms, counts))
    peak = max((sum(c.values()) for _, c in buckets), default=0)
    slot = WIDTH / max(len(buckets), 1)
    bars = []
    for i, (start, counts) in enumerate(buckets):
        rects, y = [], float(HEIGHT)
        for outcome in OUTCOMES:
            n = counts.get(outcome, 0)
            if n and peak:
                h = HEIGHT * n / peak
                y -= h
                rects.append(Rect(outcome, i * slot, y, max(slot - 1, 0.5), h))
        bars.append(Bar(start, counts, rects))
    totals = {o: sum(c.get(o, 0) for _, c in buckets) for o in OUTCOMES}
    return Chart(title, bucket_minutes * MINUTE_MS, bars, peak, totals)
