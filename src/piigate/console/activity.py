"""The live page's charts: decisions by outcome and step-ups by result, per hour over the last
24 hours or per minute over the last hour, counted by the store (``AuditLog.tally``) and drawn
by ``charts.stacked_bars``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from piigate.audit.log import AuditLog
from piigate.console.charts import Bucket, Series, stacked_bars
from piigate.console.describe import OUTCOMES

__all__ = ["DEFAULT_RANGE", "RANGES", "ChartRange", "Charts", "activity_charts"]


@dataclass(frozen=True, slots=True)
class ChartRange:
    """A period the charts cover: ``buckets`` bars of ``width`` seconds, ending with the one
    that holds now."""

    key: str
    label: str
    buckets: int
    width: int
    label_format: str


RANGES: Final[Mapping[str, ChartRange]] = {
    "24h": ChartRange("24h", "last 24 hours, per hour", 24, 3600, "%H:00"),
    "1h": ChartRange("1h", "last hour, per minute", 60, 60, "%H:%M"),
}
DEFAULT_RANGE: Final = RANGES["24h"]

DECISIONS: Final = (
    Series("allow", "Allowed"),
    Series("step_up", "Step-up"),
    Series("deny", "Denied"),
)
STEP_UPS: Final = (
    Series("passed", "Passed"),
    Series("failed", "Failed attempts"),
    Series("refused", "Refused"),
)
# The audit event types counted as step-up results, and the series each counts in.
_RESULTS: Final = {
    "challenge_verified": "passed",
    "verification_failed": "failed",
    "challenge_denied": "refused",
}


@dataclass(frozen=True, slots=True)
class Charts:
    """The two charts' SVG markup, and the period they cover."""

    range: ChartRange
    decisions: str
    step_ups: str


def period(chart_range: ChartRange, now: datetime) -> tuple[datetime, datetime]:
    """The start and end of the buckets: the end is the end of the bucket holding ``now``."""
    width = chart_range.width
    end = (int(now.timestamp()) // width + 1) * width
    start = end - chart_range.buckets * width
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)


async def activity_charts(audit: AuditLog, chart_range: ChartRange, now: datetime) -> Charts:
    """Both charts over ``chart_range`` ending now, from one grouped read of the store."""
    since, until = period(chart_range, now)
    rows = await audit.tally(
        types=["decision", *_RESULTS], since=since, until=until, width=chart_range.width
    )
    decided = {(r.bucket, r.series): r.events for r in rows if r.series in OUTCOMES}
    results = {(r.bucket, _RESULTS[r.series]): r.events for r in rows if r.series in _RESULTS}
    buckets = _buckets(chart_range, since)
    return Charts(
        range=chart_range,
        decisions=stacked_bars(
            chart_id="chart-decisions",
            title=f"Decisions by outcome, {chart_range.label}",
            series=DECISIONS,
            buckets=buckets,
            counts=decided,
            empty_text="No decisions in this period",
        ),
        step_ups=stacked_bars(
            chart_id="chart-stepups",
            title=f"Step-ups by result, {chart_range.label}",
            series=STEP_UPS,
            buckets=buckets,
            counts=results,
            empty_text="No step-ups in this period",
        ),
    )


def _buckets(chart_range: ChartRange, since: datetime) -> list[Bucket]:
    width = timedelta(seconds=chart_range.width)
    found = []
    for index in range(chart_range.buckets):
        start = since + index * width
        end = start + width
        found.append(
            Bucket(
                label=start.strftime(chart_range.label_format),
                span=f"{start:%H:%M} to {end:%H:%M} UTC",
            )
        )
    return found
