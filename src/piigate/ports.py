"""Ports every part above the store shares: the audit trail and the nodes' shared counters.

Narrow protocols that ``audit.log.AuditLog`` and ``store.counters.Counters`` (or
``store.redis_counters.RedisCounters``) satisfy without importing them, so the engine, the factor
ceremonies and the login logic can be tested with in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

__all__ = ["AuditRecorder", "CounterBatch", "RateCounters", "batch_of"]


class RateCounters(Protocol):
    """Fixed-window counters shared by the nodes (``store.counters.Counters``): rate limits,
    nonces seen and short-lived locks. Every method is atomic across the nodes."""

    async def hit(
        self, key: str, *, window_seconds: float, now: datetime, amount: int = 1
    ) -> int: ...

    async def peek(self, key: str, now: datetime) -> int: ...

    async def active_until(self, key: str, now: datetime) -> datetime | None: ...

    async def reset(self, key: str) -> None: ...


# ``batch(hits, peeks, now=)``: each ``(key, window_seconds)`` of ``hits`` hit once and each key
# of ``peeks`` read, as one operation where the adapter can (one Redis round trip, one lock).
CounterBatch = Callable[..., Awaitable[tuple[list[int], list[int]]]]


def batch_of(counters: RateCounters) -> CounterBatch:
    """``counters.batch`` when the adapter has one (memory, Redis); else one call each."""
    found: CounterBatch | None = getattr(counters, "batch", None)
    if found is not None:
        return found

    async def one_by_one(
        hits: Sequence[tuple[str, float]], peeks: Sequence[str], *, now: datetime
    ) -> tuple[list[int], list[int]]:
        counted = [await counters.hit(k, window_seconds=w, now=now) for k, w in hits]
        return counted, [await counters.peek(k, now) for k in peeks]

    return one_by_one


class AuditRecorder(Protocol):
    """``AuditLog.record``: returns once the event is durable."""

    async def record(
        self,
        type: str,
        *,
        subject_id: str | None = None,
        data: Mapping[str, object] | None = None,
    ) -> object: ...
