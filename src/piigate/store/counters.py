"""Fixed-window counters: the port, and its SQL adapter shared by every node using the same
database. ``piigate.store.redis_counters`` is the Redis adapter (nodes sharing Redis); which one
a node uses is configuration (``PIIGATE_REDIS_URL``).

Counters hold rate limits and short-lived locks (login throttling, SMS sends, push fatigue) —
never the consecutive failures of a factor, which live in the factor's own row so that a
restart of Redis (which here keeps nothing on disk) cannot lift a lockout.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, case, delete, literal, select

from piigate.ports import Hit
from piigate.store._sql import Repo, insert_for, utc
from piigate.store.tables import TS, counters

__all__ = ["Counters", "SqlCounters"]


class Counters(Protocol):
    """Fixed-window counters. Every method is atomic across the nodes sharing the adapter."""

    async def hit(
        self, key: str, *, window_seconds: float, now: datetime, amount: int = 1
    ) -> int: ...

    async def peek(self, key: str, now: datetime) -> int: ...

    async def active_until(self, key: str, now: datetime) -> datetime | None: ...

    async def reset(self, key: str) -> None: ...


class SqlCounters(Repo):
    async def hit(self, key: str, *, window_seconds: float, now: datetime, amount: int = 1) -> int:
        """Add ``amount`` to ``key`` and return its count in the current window.

        One statement, so concurrent hits from any number of processes never lose an update:
        the row is created, restarted (its window is over) or incremented by the database.
        """
        return int(await self._write_returning(self._hit(key, window_seconds, utc(now), amount)))

    async def batch(
        self, hits: Sequence[Hit], peeks: Sequence[str], *, now: datetime
    ) -> tuple[list[int], list[int]]:
        """Apply each :class:`~piigate.ports.Hit` and read each key of ``peeks``, in one
        transaction (the risk engine's counters of one decision)."""
        now = utc(now)
        statements = [self._hit(hit.key, hit.window_seconds, now, hit.amount) for hit in hits]
        live = counters.c.window_end > literal(now, TS)

        def read(conn: Connection, keys: Sequence[str]) -> dict[str, int]:
            if not keys:
                return {}
            stmt = select(counters.c.key, counters.c.value).where(counters.c.key.in_(keys), live)
            return {key: int(value) for key, value in conn.execute(stmt).all()}

        def work(conn: Connection) -> tuple[list[int], list[int]]:
            counted: list[int] = []
            for hit, stmt in zip(hits, statements, strict=True):
                if hit.if_first is not None and counted[hit.if_first] != 1:
                    counted.append(read(conn, [hit.key]).get(hit.key, 0))
                else:
                    counted.append(int(conn.execute(stmt).scalar_one()))
            found = read(conn, list(dict.fromkeys(peeks)))
            return counted, [found.get(key, 0) for key in peeks]

        return await self.db.write(work)

    def _hit(self, key: str, window_seconds: float, now: datetime, amount: int) -> Any:
        window_end = now + timedelta(seconds=window_seconds)
        expired = counters.c.window_end <= literal(now, TS)
        insert = insert_for(self.db, counters).values(key=key, value=amount, window_end=window_end)
        return insert.on_conflict_do_update(
            index_elements=[counters.c.key],
            set_={
                "value": case((expired, literal(amount)), else_=counters.c.value + amount),
                "window_end": case((expired, literal(window_end, TS)), else_=counters.c.window_end),
            },
        ).returning(counters.c.value)

    async def peek(self, key: str, now: datetime) -> int:
        """The count in the current window (0 when none or the window is over)."""
        stmt = select(counters.c.value).where(
            counters.c.key == key, counters.c.window_end > utc(now)
        )
        value = await self._scalar(stmt)
        return 0 if value is None else int(value)

    async def active_until(self, key: str, now: datetime) -> datetime | None:
        """When the current window of ``key`` ends, if it has a count; None otherwise.

        Used as a lock with an expiry: ``hit(key, window_seconds=delay)`` starts it and this
        says how long it still holds.
        """
        stmt = select(counters.c.window_end).where(
            counters.c.key == key, counters.c.window_end > utc(now), counters.c.value > 0
        )
        value = await self._scalar(stmt)
        return None if value is None else utc(value)

    async def reset(self, key: str) -> None:
        await self._write(delete(counters).where(counters.c.key == key))

    async def purge_counters(self, now: datetime) -> int:
        """Drop counters whose window is over (they would restart from zero anyway)."""
        return await self._write(delete(counters).where(counters.c.window_end <= utc(now)))
