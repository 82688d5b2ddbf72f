"""Audit events (CONTRACT §4.5): a page at a time, or live over Server-Sent Events (the
streaming itself, shared with the console's live feed, is ``api/event_stream.py``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from piigate.api.auth import require_scope
from piigate.api.event_stream import MAX_SEQ, event_stream, resume_seq
from piigate.api.jsonbody import JsonRoute
from piigate.api.services import get_services
from piigate.callers import Caller
from piigate.model import AuditEvent

router = APIRouter(tags=["events"], route_class=JsonRoute)

AUDITORS = frozenset({"admin", "auditor"})


def event_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type,
        "at": event.at.isoformat(),
        "subject": event.subject_id,
        "data": dict(event.data),
        "hash": event.hash,
    }


@router.get("/v1/events", summary="Audit events after a sequence number")
async def list_events(
    request: Request,
    caller: Annotated[Caller, Depends(require_scope("events", roles=AUDITORS))],
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    type: Annotated[list[str] | None, Query(max_length=32)] = None,
    subject: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    services = get_services(request)
    events = await services.audit.list_events(
        after=after, types=type or (), subject_id=subject, limit=limit
    )
    last = events[-1].seq if events else after
    return {"events": [event_json(e) for e in events], "next_after": last}


@router.get(
    "/v1/events/stream",
    summary="Live audit events (text/event-stream)",
    response_class=StreamingResponse,
)
async def stream_events(
    request: Request,
    caller: Annotated[Caller, Depends(require_scope("events", roles=AUDITORS))],
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    type: Annotated[list[str] | None, Query(max_length=32)] = None,
) -> StreamingResponse:
    services = get_services(request)
    types = tuple(type or ())

    async def read(after: int, limit: int) -> list[AuditEvent]:
        return await services.audit.list_events(after=after, types=types, limit=limit)

    return await event_stream(
        services,
        request,
        after=resume_seq(request.headers.get("last-event-id"), after),
        read=read,
        frame=_frame,
        wake_types=types,
    )


def _frame(event: AuditEvent) -> str:
    payload = json.dumps(event_json(event), separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.type}\ndata: {payload}\n\n"
