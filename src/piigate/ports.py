"""Ports every part above the store shares: the audit trail and the nodes' shared counters.

Narrow protocols that ``audit.log.AuditLog`` and ``store.counters.Counters`` (or
``store.redis_counters.RedisCounters``) satisfy without importing them, so the engine, the factor
ceremonies and the login logic can be tested with in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

__all__ = ["AuditRecorder", "RateCounters"]


class RateCounters(Protocol):
    """Fixed-window counters shared by the nodes (``store.counters.Counters``): rate limits,
    nonces seen and short-lived locks. Every method is atomic across the nodes."""

    async def hit(
        self, key: str, *, window_seconds: float, now: datetime, amount: int = 1
    ) -> int: ...

    async def peek(self, key: str, now: datetime) -> int: ...

    async def active_until(self, key: str, now: datetime) -> datetime | None: ...

    async def reset(self, key: str) -> None: ...


class AuditRecorder(Protocol):
    """``AuditLog.record``: returns once the event is durable."""

    async def record(
        self,
        type: str,
        *,
        subject_id: str | None = None,
        data: Mapping[str, object] | None = None,
    ) -> object: ...
