"""The security team's live page: ``GET /security`` (the charts and the latest events, filtered)
and ``GET /security/feed``, the events as they are committed, over Server-Sent Events.

The feed is the API's event stream (``api/event_stream.py``) with the console's session instead
of an API key: the same reads of the store, woken by the same bus. Each event goes out already
described in plain words (``describe.py``), so the page's script only places text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from piigate.api.event_stream import MAX_SEQ, event_stream, resume_seq
from piigate.api.services import get_services
from piigate.console.activity import DEFAULT_RANGE, RANGES, activity_charts
from piigate.console.describe import KIND_LABELS, KINDS, OUTCOME_LABELS, OUTCOMES, describe
from piigate.console.web import SecurityTeam, page, viewer_of
from piigate.model import AuditEvent

__all__ = ["FeedFilter", "router"]

router = APIRouter(include_in_schema=False)

# How many events the page shows when it opens; the script keeps at most 200 as more arrive.
FIRST_EVENTS: Final = 50
# How often an open feed checks that its session is still open and still the security team's.
RECHECK_SECONDS: Final = 30.0

_Kind = Annotated[str | None, Query(alias="type", max_length=32)]
_Subject = Annotated[str | None, Query(max_length=255)]
_Outcome = Annotated[str | None, Query(max_length=32)]


@dataclass(frozen=True, slots=True)
class FeedFilter:
    """What the feed shows: a kind of event (``describe.KINDS``), one subject, a decision's
    outcome (which keeps decisions only). Values it does not know are dropped: all is shown."""

    kind: str | None = None
    subject: str | None = None
    outcome: str | None = None

    @classmethod
    def read(cls, kind: str | None, subject: str | None, outcome: str | None) -> FeedFilter:
        return cls(
            kind=kind if kind in KINDS else None,
            subject=(subject or "").strip() or None,
            outcome=outcome if outcome in OUTCOMES else None,
        )

    @property
    def types(self) -> tuple[str, ...]:
        if self.outcome is not None:
            return ("decision",)
        return KINDS[self.kind] if self.kind is not None else ()

    def query(self) -> dict[str, str]:
        """The filter as query parameters (only those set)."""
        found = {"type": self.kind, "subject": self.subject, "outcome": self.outcome}
        return {name: value for name, value in found.items() if value is not None}


@router.get("/security")
async def live_page(
    request: Request,
    viewer: SecurityTeam,
    kind: _Kind = None,
    subject: _Subject = None,
    outcome: _Outcome = None,
    period: Annotated[str | None, Query(alias="range", max_length=8)] = None,
) -> Response:
    services = get_services(request)
    feed = FeedFilter.read(kind, subject, outcome)
    events = await services.audit.latest_events(
        types=feed.types, subject_id=feed.subject, outcome=feed.outcome, limit=FIRST_EVENTS
    )
    after = events[0].seq if events else (await services.audit.head()).seq
    chart_range = RANGES.get(period or "", DEFAULT_RANGE)
    charts = await activity_charts(services.audit, chart_range, services.clock.now())
    ranges = {key: "/security?" + urlencode({**feed.query(), "range": key}) for key in RANGES}
    return page(
        request,
        "security_live.html",
        {
            "feed": feed,
            "kinds": KIND_LABELS,
            "outcomes": OUTCOME_LABELS,
            "lines": [describe(e) for e in events],
            "stream_url": "/security/feed?" + urlencode({**feed.query(), "after": after}),
            "charts": charts,
            "ranges": ranges,
            "all_ranges": RANGES,
        },
        viewer=viewer,
    )


@router.get("/security/feed")
async def live_feed(
    request: Request,
    viewer: SecurityTeam,
    kind: _Kind = None,
    subject: _Subject = None,
    outcome: _Outcome = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
) -> Response:
    """The events after ``after`` (or after the browser's ``Last-Event-ID``), then each new one,
    as ``text/event-stream``; each frame's data is the event described (``EventLine``)."""
    services = get_services(request)
    feed = FeedFilter.read(kind, subject, outcome)

    async def read(after: int, limit: int) -> list[AuditEvent]:
        return await services.audit.list_events(
            after=after,
            types=feed.types,
            subject_id=feed.subject,
            limit=limit,
            outcome=feed.outcome,
        )

    async def still_allowed() -> bool:
        current = await viewer_of(request)
        return current is not None and current.is_security

    return await event_stream(
        services,
        request,
        after=resume_seq(request.headers.get("last-event-id"), after),
        read=read,
        frame=_frame,
        wake_types=feed.types,
        still_allowed=still_allowed,
        recheck_seconds=RECHECK_SECONDS,
    )


def _frame(event: AuditEvent) -> str:
    payload = json.dumps(describe(event).as_json(), separators=(",", ":"))
    return f"id: {event.seq}\ndata: {payload}\n\n"
