"""Stacked bar charts as SVG, drawn on the server (no script, no library), pure.

``stacked_bars`` draws one bar per time bucket, each series' count stacked in the order the
series are given, with a y axis of whole numbers, the buckets' labels under the bars, a legend
with each series' total, and what a screen reader needs: ``role="img"``, an ``aria-label`` and a
``<title>``, a ``<desc>`` with the totals, and a ``<title>`` per bar segment. Colours come from
CSS classes (``series-<key>``) of the page's stylesheet, never from inline styles: the console's
Content-Security-Policy refuses those.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

__all__ = ["HEIGHT", "PLOT", "WIDTH", "Bucket", "Series", "axis_top", "stacked_bars"]

WIDTH: Final = 560
HEIGHT: Final = 240


@dataclass(frozen=True, slots=True)
class Plot:
    """The plotting area inside the drawing: left, top, right and bottom edges."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top


PLOT: Final = Plot(left=40, top=36, right=WIDTH - 10, bottom=HEIGHT - 26)
# About how wide a character of the legend is, for placing the next entry (font-size 13).
_CHAR_WIDTH: Final = 7.2
# A bar takes this share of its bucket's width; the rest is the gap between bars.
_BAR_SHARE: Final = 0.7
# At most this many labels under the bars: a label every few buckets when there are more.
_MAX_LABELS: Final = 12


@dataclass(frozen=True, slots=True)
class Series:
    """One stacked series: its key (the counts' key, and its CSS class ``series-<key>``) and
    the label shown in the legend."""

    key: str
    label: str


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bar: its label under the axis (``""`` for none), and the span it covers in words,
    for its tooltip (``10:00 to 11:00 UTC``)."""

    label: str
    span: str


def axis_top(largest: int) -> tuple[int, int]:
    """The top of the y axis and its step for a largest bar of ``largest``: a step of 1, 2 or
    5 times a power of ten, with at most five steps to the top, which is at least 1."""
    if largest <= 0:
        return 1, 1
    raw = largest / 5
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return math.ceil(largest / step) * step, step


def stacked_bars(
    *,
    chart_id: str,
    title: str,
    series: Sequence[Series],
    buckets: Sequence[Bucket],
    counts: Mapping[tuple[int, str], int],
    empty_text: str = "Nothing in this period",
) -> str:
    """The chart as an ``<svg>`` element's markup. ``counts`` maps (bucket index, series key) to
    a count; a missing pair counts 0, and a pair outside ``buckets``/``series`` is ignored."""
    totals = {s.key: sum(counts.get((i, s.key), 0) for i in range(len(buckets))) for s in series}
    stacks = [sum(counts.get((i, s.key), 0) for s in series) for i in range(len(buckets))]
    top, step = axis_top(max(stacks, default=0))
    said = ", ".join(f"{totals[s.key]} {s.label.lower()}" for s in series)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="chart-svg" role="img" aria-label="{escape(title)}" '
        f'aria-describedby="{escape(chart_id)}-desc">',
        f"<title>{escape(title)}</title>",
        f'<desc id="{escape(chart_id)}-desc">{escape(title)}: {escape(said)}.</desc>',
    ]
    parts += _axes(top, step)
    parts += _bars(buckets, series, counts, top)
    parts += _labels(buckets)
    parts += _legend(series, totals)
    if not any(stacks):
        x, y = PLOT.left + PLOT.width / 2, PLOT.top + PLOT.height / 2
        parts.append(
            f'<text class="chart-empty" x="{x:g}" y="{y:g}" text-anchor="middle">'
            f"{escape(empty_text)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _y(value: float, top: int) -> float:
    return PLOT.bottom - PLOT.height * value / top


def _axes(top: int, step: int) -> list[str]:
    """The grid lines and their numbers, and the baseline."""
    found = []
    for value in range(0, top + 1, step):
        y = round(_y(value, top), 2)
        found.append(
            f'<line class="chart-grid" x1="{PLOT.left:g}" x2="{PLOT.right:g}" '
            f'y1="{y:g}" y2="{y:g}"/>'
        )
        found.append(
            f'<text class="chart-label" x="{PLOT.left - 6:g}" y="{y + 4:g}" '
            f'text-anchor="end">{value}</text>'
        )
    found.append(
        f'<line class="chart-axis" x1="{PLOT.left:g}" x2="{PLOT.right:g}" '
        f'y1="{PLOT.bottom:g}" y2="{PLOT.bottom:g}"/>'
    )
    return found


def _bars(
    buckets: Sequence[Bucket],
    series: Sequence[Series],
    counts: Mapping[tuple[int, str], int],
    top: int,
) -> list[str]:
    """One ``<rect>`` per non-zero (bucket, series), stacked bottom up in series order."""
    if not buckets:
        return []
    band = PLOT.width / len(buckets)
    width = round(band * _BAR_SHARE, 2)
    found = []
    for index, bucket in enumerate(buckets):
        x = round(PLOT.left + band * index + (band - width) / 2, 2)
        below = 0
        for one in series:
            count = counts.get((index, one.key), 0)
            if count <= 0:
                continue
            y_top, y_bottom = _y(below + count, top), _y(below, top)
            below += count
            tip = f"{bucket.span}: {count} {one.label.lower()}"
            found.append(
                f'<rect class="series-{escape(one.key)}" x="{x:g}" y="{round(y_top, 2):g}" '
                f'width="{width:g}" height="{round(y_bottom - y_top, 2):g}" '
                f'data-series="{escape(one.key)}" data-count="{count}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    return found


def _labels(buckets: Sequence[Bucket]) -> list[str]:
    """The buckets' labels under the axis, every few buckets when they would crowd."""
    if not buckets:
        return []
    band = PLOT.width / len(buckets)
    every = math.ceil(len(buckets) / _MAX_LABELS)
    found = []
    for index, bucket in enumerate(buckets):
        if index % every or not bucket.label:
            continue
        x = round(PLOT.left + band * index + band / 2, 2)
        found.append(
            f'<text class="chart-label" x="{x:g}" y="{PLOT.bottom + 18:g}" '
            f'text-anchor="middle">{escape(bucket.label)}</text>'
        )
    return found


def _legend(series: Sequence[Series], totals: Mapping[str, int]) -> list[str]:
    """A swatch and ``Label (total)`` per series, in a row above the plot."""
    found = []
    x = PLOT.left
    for one in series:
        text = f"{one.label} ({totals[one.key]})"
        found.append(
            f'<rect class="series-{escape(one.key)}" x="{x:g}" y="9" width="12" height="12" '
            f'data-legend="{escape(one.key)}"/>'
        )
        found.append(f'<text class="chart-legend" x="{x + 17:g}" y="20">{escape(text)}</text>')
        x += 17 + _CHAR_WIDTH * len(text) + 16
    return found
