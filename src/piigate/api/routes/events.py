"""Audit events (CONTRACT §4.5): a page at a time, or live over Server-Sent Events.

The stream reads from the store, not only from this node's bus, so a client connected to any
node sees every node's events; the local bus only wakes it early.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from piigate.api.auth import require_scope
from piigate.api.jsonbody import JsonRoute
from piigate.api.services import Services, get_services
from piigate.audit.bus import SubscriberLagged, SubscriptionClosed
from piigate.callers import Caller
from piigate.model import AuditEvent

router = APIRouter(tags=["events"], route_class=JsonRoute)

AUDITORS = frozenset({"admin", "auditor"})
# Sequence numbers are BIGINT (PostgreSQL) / INTEGER (SQLite): a larger one is bad input, not a
# store failure.
MAX_SEQ = 2**63 - 1
POLL_SECONDS = 2.0
HEARTBEAT_SECONDS = 15.0


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
    last_id = request.headers.get("last-event-id", "")
    start = int(last_id) if last_id.isascii() and last_id.isdigit() and len(last_id) < 19 else after
    if start is None:
        start = int((await services.audit.head()).seq)
    types = tuple(type or ())
    return StreamingResponse(
        _sse(services, request, start, types),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _sse(
    services: Services, request: Request, after: int, types: tuple[str, ...]
) -> AsyncIterator[str]:
    subscription = services.bus.subscribe(types=types)
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    yield "retry: 2000\n\n"
    try:
        while not await request.is_disconnected():
            events = await services.audit.list_events(after=after, types=types, limit=500)
            for event in events:
                assert event.seq is not None
                after = event.seq
                payload = json.dumps(event_json(event), separators=(",", ":"))
                yield f"id: {event.seq}\nevent: {event.type}\ndata: {payload}\n\n"
                last_sent = loop.time()
            if len(events) == 500:
                continue
            if loop.time() - last_sent > HEARTBEAT_SECONDS:
                yield ": keep-alive\n\n"
                last_sent = loop.time()
            with contextlib.suppress(TimeoutError, SubscriberLagged):
                await asyncio.wait_for(subscription.get(), POLL_SECONDS)
            if subscription.lagged:
                subscription.close()
                subscription = services.bus.subscribe(types=types)
    except SubscriptionClosed:
        return
    finally:
        subscription.close()
