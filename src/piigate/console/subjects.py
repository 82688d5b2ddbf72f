"""The security team's view of subjects: ``GET /security/subjects`` ranks them by their current
risk (the score of each one's latest decision in a window, with the signals behind it), and
``GET /security/subjects/{id}`` shows one subject's current risk, open alerts and timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from piigate.api.event_stream import MAX_SEQ
from piigate.api.services import Services, get_services
from piigate.console.describe import EventLine, describe
from piigate.console.risk_view import RiskView, risk_of
from piigate.console.web import SecurityTeam, page
from piigate.console.when import utc_text

__all__ = ["WINDOWS", "AlertLine", "Ranked", "router"]

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Window:
    key: str
    label: str
    span: timedelta


WINDOWS: Final = {
    w.key: w
    for w in (
        Window("1h", "the last hour", timedelta(hours=1)),
        Window("24h", "the last 24 hours", timedelta(hours=24)),
        Window("7d", "the last 7 days", timedelta(days=7)),
    )
}
DEFAULT_WINDOW: Final = WINDOWS["24h"]
# The ranking reads at most this many of the window's newest decisions, and shows the top.
SCAN: Final = 50_000
TOP: Final = 100
# A timeline's page.
PAGE: Final = 50

_Seq = Annotated[int | None, Query(ge=0, le=MAX_SEQ)]


@dataclass(frozen=True, slots=True)
class Ranked:
    """A subject in the ranking: their latest decision in the window, its risk, and how many
    decisions of theirs the window held."""

    subject: str
    risk: RiskView
    latest: EventLine
    decisions: int


@router.get("/security/subjects")
async def ranking(
    request: Request,
    viewer: SecurityTeam,
    window: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    services = get_services(request)
    chosen = WINDOWS.get(window or "", DEFAULT_WINDOW)
    found, scanned = await services.audit.ranked_decisions(
        since=services.clock.now() - chosen.span, scan=SCAN, limit=TOP
    )
    ranked = [
        Ranked(r.event.subject_id or "", risk_of(r.event.data), describe(r.event), r.decisions)
        for r in found
    ]
    return page(
        request,
        "security_subjects.html",
        {
            "ranked": ranked,
            "window": chosen,
            "windows": WINDOWS,
            "capped": scanned >= SCAN,
            "scan": SCAN,
            "top": TOP,
        },
        viewer=viewer,
    )


@router.get("/security/subjects/{subject_id:path}")
async def timeline(
    request: Request,
    viewer: SecurityTeam,
    subject_id: str,
    before: _Seq = None,
    after: _Seq = None,
) -> Response:
    """Newest first, ``PAGE`` events at a time: ``before`` pages to older events, ``after`` to
    newer ones."""
    if not subject_id or len(subject_id) > 255:
        return RedirectResponse("/security/subjects", status_code=303)
    services = get_services(request)
    audit = services.audit
    if after is not None:
        newer = await audit.list_events(after=after, subject_id=subject_id, limit=PAGE + 1)
        events = list(reversed(newer[:PAGE]))
        has_newer, has_older = len(newer) > PAGE, after > 0
    else:
        older = await audit.latest_events(before=before, subject_id=subject_id, limit=PAGE + 1)
        events = older[:PAGE]
        has_newer, has_older = before is not None, len(older) > PAGE
    latest = await audit.latest_events(types=["decision"], subject_id=subject_id, limit=1)
    return page(
        request,
        "security_subject.html",
        {
            "subject": subject_id,
            "lines": [describe(e) for e in events],
            "risk": risk_of(latest[0].data) if latest else None,
            "assessed": describe(latest[0]) if latest else None,
            "alerts": await _open_alerts(services, subject_id),
            "newer": events[0].seq if events and has_newer else None,
            "older": events[-1].seq if events and has_older else None,
            "paged": before is not None or after is not None,
        },
        viewer=viewer,
    )


@dataclass(frozen=True, slots=True)
class AlertLine:
    """An open alert as the subject's page lists it."""

    when: str
    kind: str
    severity: str
    summary: str


async def _open_alerts(services: Services, subject_id: str) -> list[AlertLine]:
    """The subject's open alerts from the node's alert desk, newest first."""
    found = await services.monitoring.desk.recent(subject_id=subject_id, open_only=True)
    return [
        AlertLine(
            when=utc_text(alert.at),
            kind=alert.kind.value.replace("_", " "),
            severity=alert.severity.value,
            summary=alert.summary,
        )
        for alert in found
    ]
