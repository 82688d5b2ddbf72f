"""Audit events live over Server-Sent Events: what ``GET /v1/events/stream`` and the console's
live feed (``console/live.py``) share.

A stream reads from the store, not only from this node's bus, so a client connected to any node
sees every node's events; the local bus only wakes it early. It starts after a sequence number
(the browser's ``Last-Event-ID`` when it reconnects, else the one asked for, else the head), sends
each event as one frame with its seq as the id, and a comment line now and then so proxies keep
the connection open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Final

from fastapi.responses import StreamingResponse
from starlette.requests import Request

from piigate.api.services import Services
from piigate.audit.bus import EventBus, SubscriberLagged, SubscriptionClosed
from piigate.model import AuditEvent

__all__ = [
    "HEARTBEAT_SECONDS",
    "MAX_SEQ",
    "PAGE_SIZE",
    "POLL_SECONDS",
    "EventFrame",
    "ReadAfter",
    "event_stream",
    "resume_seq",
]

# Sequence numbers are BIGINT (PostgreSQL) / INTEGER (SQLite): a larger one is bad input, not a
# store failure.
MAX_SEQ: Final = 2**63 - 1
POLL_SECONDS: Final = 2.0
HEARTBEAT_SECONDS: Final = 15.0
# How many events one read of the store returns at most.
PAGE_SIZE: Final = 500

# The events after a seq, oldest first, at most ``limit`` of them, filtered as the stream wants.
ReadAfter = Callable[[int, int], Awaitable[Sequence[AuditEvent]]]
# One event as an SSE frame (``id:``, ``data:`` lines and the blank line that ends it).
EventFrame = Callable[[AuditEvent], str]
# Whether the client may still read the stream (a session still open, a role still held).
StillAllowed = Callable[[], Awaitable[bool]]


def resume_seq(last_event_id: str | None, after: int | None) -> int | None:
    """Where a stream starts: after the ``Last-Event-ID`` a reconnecting browser sends (when it
    is a plain decimal seq), else after ``after`` (None: at the head)."""
    text = last_event_id or ""
    if text.isascii() and text.isdigit() and len(text) < 19:
        return int(text)
    return after


async def event_stream(
    services: Services,
    request: Request,
    *,
    after: int | None,
    read: ReadAfter,
    frame: EventFrame,
    wake_types: Iterable[str] = (),
    still_allowed: StillAllowed | None = None,
    recheck_seconds: float = 30.0,
) -> StreamingResponse:
    """The ``text/event-stream`` response: the events ``read`` finds after ``after`` (the head
    when None), then each new one as it is committed. ``wake_types`` narrows which events of
    the local bus wake the stream early. ``still_allowed`` is asked every ``recheck_seconds``;
    the stream ends once it answers False."""
    start = after if after is not None else int((await services.audit.head()).seq)
    frames = _frames(
        services.bus,
        request,
        start,
        read=read,
        frame=frame,
        wake_types=tuple(wake_types),
        still_allowed=still_allowed,
        recheck_seconds=recheck_seconds,
    )
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _frames(
    bus: EventBus,
    request: Request,
    after: int,
    *,
    read: ReadAfter,
    frame: EventFrame,
    wake_types: tuple[str, ...],
    still_allowed: StillAllowed | None,
    recheck_seconds: float,
) -> AsyncIterator[str]:
    subscription = bus.subscribe(types=wake_types)
    loop = asyncio.get_running_loop()
    last_sent = checked = loop.time()
    yield "retry: 2000\n\n"
    try:
        while not await request.is_disconnected():
            events = await read(after, PAGE_SIZE)
            # Asked after the read: what was read was committed before the answer, so nothing
            # committed after the caller lost the right to see it is ever sent.
            if still_allowed is not None and loop.time() - checked >= recheck_seconds:
                if not await still_allowed():
                    return
                checked = loop.time()
            for event in events:
                assert event.seq is not None
                after = event.seq
                yield frame(event)
                last_sent = loop.time()
            if len(events) >= PAGE_SIZE:
                continue
            if loop.time() - last_sent > HEARTBEAT_SECONDS:
                yield ": keep-alive\n\n"
                last_sent = loop.time()
            with contextlib.suppress(TimeoutError, SubscriberLagged):
                await asyncio.wait_for(subscription.get(), POLL_SECONDS)
            if subscription.lagged:
                subscription.close()
                subscription = bus.subscribe(types=wake_types)
    except SubscriptionClosed:
        return
    finally:
        subscription.close()
