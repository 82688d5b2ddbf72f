"""Ports every part above the store shares: the audit trail and the nodes' shared counters.

Narrow protocols that ``audit.log.AuditLog`` and ``store.counters.Counters`` (or
``store.redis_counters.RedisCounters``) satisfy without importing them, so the engine, the factor
ceremonies and the login logic can be tested with in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

__all__ = ["AuditRecorder", "CounterBatch", "Hit", "RateCounters", "batch_of"]


class RateCounters(Protocol):
    """Fixed-window counters shared by the nodes (``store.counters.Counters``): rate limits,
    nonces seen and short-lived locks. Every method is atomic across the nodes."""

    async def hit(
        self, key: str, *, window_seconds: float, now: datetime, amount: int = 1
    ) -> int: ...

    async def peek(self, key: str, now: datetime) -> int: ...

    async def active_until(self, key: str, now: datetime) -> datetime | None: ...

    async def reset(self, key: str) -> None: ...


class Hit(NamedTuple):
    """One hit of a batch: +1 on ``key`` (a new window of ``window_seconds`` if none is open).

    ``if_first``: the index of an earlier hit of the same batch; this one counts only when that
    one counted 1 (a first sighting in its window), and is a read otherwise. So "count each
    record once per window" takes one round trip.

    A named tuple: as immutable as a frozen dataclass, and built in about half its time (every
    decision makes one per risk counter).
    """

    key: str
    window_seconds: float
    if_first: int | None = None
    amount: int = 1  # what the hit adds (not with ``if_first``, which tests for a count of 1)


# ``batch(hits, peeks, now=)``: each :class:`Hit` of ``hits`` applied and each key of ``peeks``
# read, as one operation where the adapter can (one Redis round trip, one lock in memory).
CounterBatch = Callable[..., Awaitable[tuple[list[int], list[int]]]]


def batch_of(counters: RateCounters) -> CounterBatch:
    """``counters.batch`` when the adapter has one (memory, Redis); else one call each."""
    found: CounterBatch | None = getattr(counters, "batch", None)
    if found is not None:
        return found

    async def one_by_one(
        hits: Sequence[Hit], peeks: Sequence[str], *, now: datetime
    ) -> tuple[list[int], list[int]]:
        counted: list[int] = []
        for hit in hits:
            if hit.if_first is not None and counted[hit.if_first] != 1:
                counted.append(await counters.peek(hit.key, now))
            else:
                counted.append(
                    await counters.hit(
                        hit.key, window_seconds=hit.window_seconds, now=now, amount=hit.amount
                    )
                )
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
