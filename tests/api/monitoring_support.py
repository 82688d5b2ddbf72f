"""Helpers of the monitoring tests (imported by name: ``tests/api`` is on ``sys.path``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from api_support import Node

from piigate.audit.alerts import Alert
from piigate.model import AuditEvent

__all__ = ["alerts_of", "eventually", "record_alert_event"]

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, seconds: float = 15.0, what: str = "it"
) -> T:
    """``probe()``'s first truthy answer, asked every 20 ms; fails after ``seconds`` (a bound on
    the wait, not a timing assertion: background tasks get there in milliseconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        found = await probe()
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        await asyncio.sleep(0.02)


async def record_alert_event(node: Node, subject: str = "alice", **data: object) -> AuditEvent:
    """A ``push_denied`` alert event committed on ``node`` (as ``factors/push/answers.py``
    records one)."""
    body = {
        "kind": "push_denied",
        "challenge_id": "chl_x",
        "push_id": "cer_x",
        "factor_id": "fac_x",
    }
    return await node.services.audit.record("alert", subject_id=subject, data={**body, **data})


async def alerts_of(node: Node, seq: int | None) -> list[Alert]:
    """The alerts raised from the event ``seq``, once wholly raised: stored, offered to the
    sinks and announced (its ``alert_raised`` event committed; the row alone comes first)."""
    found = [a for a in await node.services.monitoring.desk.recent(limit=500) if a.event_seq == seq]
    announced = {
        e.data.get("alert_id")
        for e in await node.services.audit.latest_events(types=["alert_raised"], limit=1000)
    }
    return found if all(a.id in announced for a in found) else []
