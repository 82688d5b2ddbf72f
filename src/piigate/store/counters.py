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
from typing import Any, NamedTuple, Protocol

from sqlalchemy import (
    ARRAY,
    DateTime,
    Float,
    Integer,
    Text,
    bindparam,
    case,
    cast,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from piigate.ports import Hit
from piigate.store._sql import Repo, utc
from piigate.store.driver import DriverStatement, DriverTransaction
from piigate.store.tables import TS, counters
from piigate.store.turn_batches import Asked, TurnBatches, split_counts

__all__ = ["Counters", "SqlCounters"]


class Counters(Protocol):
    """Fixed-window counters. Every method is atomic across the nodes sharing the adapter."""

    async def hit(
        self, key: str, *, window_seconds: float, now: datetime, amount: int = 1
    ) -> int: ...

    async def peek(self, key: str, now: datetime) -> int: ...

    async def active_until(self, key: str, now: datetime) -> datetime | None: ...

    async def reset(self, key: str) -> None: ...


# One upsert of a hit and one read of a count, compiled once per dialect and run at the driver
# level (SQLAlchemy's per-statement work was most of a batch's CPU).
_NOW = bindparam("now", type_=TS)
_ENDS = bindparam("window_end", type_=TS)
_AMOUNT = bindparam("amount", type_=Integer)


def _upsert(insert: Any) -> DriverStatement:
    expired = counters.c.window_end <= _NOW
    return DriverStatement(
        insert.values(key=bindparam("key"), value=_AMOUNT, window_end=_ENDS)
        .on_conflict_do_update(
            index_elements=[counters.c.key],
            set_={
                "value": case((expired, _AMOUNT), else_=counters.c.value + _AMOUNT),
                "window_end": case((expired, _ENDS), else_=counters.c.window_end),
            },
        )
        .returning(counters.c.value)
    )


_HIT = {
    "sqlite": _upsert(sqlite.insert(counters)),
    "postgresql": _upsert(postgresql.insert(counters)),
}
_COUNT = DriverStatement(
    select(counters.c.value).where(counters.c.key == bindparam("key"), counters.c.window_end > _NOW)
)
# PostgreSQL counts a whole group in one statement: migration 0013's function, which runs the
# same upsert and read per key, in the order given (``_ordered``).
_COUNT_ALL = DriverStatement(
    select(
        func.piigate_count(
            cast(bindparam("keys"), ARRAY(Text)),
            cast(bindparam("nows"), ARRAY(DateTime(timezone=True))),
            cast(bindparam("windows"), ARRAY(Float)),
            cast(bindparam("gates"), ARRAY(Integer)),
            cast(bindparam("amounts"), ARRAY(Integer)),
            type_=ARRAY(Integer),
        ).label("counts")
    )
)
# The most keys one transaction counts: a group holds its rows' locks until it commits.
_MAX_KEYS_A_GROUP = 1024


class _Op(NamedTuple):
    """One key of a group: a hit (``window`` > 0, gated by the op at ``gate`` when set) or a
    read (``window`` 0)."""

    key: str
    now: datetime
    window: float
    gate: int | None
    amount: int


def _ops(group: Sequence[Asked]) -> list[_Op]:
    ops: list[_Op] = []
    for asked in group:
        offset, now = len(ops), utc(asked.now)
        for hit in asked.hits:
            gate = None if hit.if_first is None else offset + hit.if_first
            ops.append(_Op(hit.key, now, hit.window_seconds, gate, hit.amount))
        ops.extend(_Op(key, now, 0.0, None, 0) for key in asked.peeks)
    return ops


def _ordered(ops: list[_Op]) -> list[int]:
    """The order to run ``ops`` in: by key, the keys counted only after a first sighting
    (``Hit.if_first``) after the others, each key's ops in the order asked.

    Ops on different keys do not depend on each other but through a gate, which this order
    runs first; so the counts are those of the batches run one after another. And every
    transaction takes its rows' locks in one global order, so two nodes counting their groups
    at once can wait for each other but never deadlock.
    """
    gated = {op.key for op in ops if op.gate is not None}
    if any(ops[op.gate].key in gated for op in ops if op.gate is not None):
        return list(range(len(ops)))  # a gate that is itself gated: as asked (never built here)
    return sorted(range(len(ops)), key=lambda i: (ops[i].key in gated, ops[i].key))


class SqlCounters(Repo):
    """The counters in the store's ``counters`` table, shared by every node on the database.

    :meth:`batch` (and :meth:`hit`) go through :class:`~piigate.store.turn_batches.TurnBatches`:
    what concurrent requests count goes to the database one transaction at a time, each holding
    every batch asked for while the one before ran, so requests counting on the same row (one
    client address) do not queue for its lock one transaction and commit each. On PostgreSQL a
    transaction is one statement (migration 0013's ``piigate_count``); on SQLite, in process,
    one statement per key.
    """

    @property
    def _turns(self) -> TurnBatches:
        # Made on first use: ``Store`` combines the repositories, and only ``Repo.__init__`` runs.
        turns: TurnBatches | None = self.__dict__.get("_turn_batches")
        if turns is None:
            turns = self.__dict__["_turn_batches"] = TurnBatches(
                self._count_group, max_keys=_MAX_KEYS_A_GROUP, in_flight=1
            )
        return turns

    async def hit(self, key: str, *, window_seconds: float, now: datetime, amount: int = 1) -> int:
        """Add ``amount`` to ``key`` and return its count in the current window.

        Atomic, so concurrent hits from any number of processes never lose an update: the row is
        created, restarted (its window is over) or incremented by the database.
        """
        counted, _ = await self.batch([Hit(key, window_seconds, amount=amount)], (), now=now)
        return counted[0]

    async def batch(
        self, hits: Sequence[Hit], peeks: Sequence[str], *, now: datetime
    ) -> tuple[list[int], list[int]]:
        """Apply each :class:`~piigate.ports.Hit` and read each key of ``peeks``, in one
        transaction (with the batches of other requests asked for at the same time)."""
        return await self._turns.batch(hits, peeks, now=now)

    async def _count_group(self, group: list[Asked]) -> list[list[int]]:
        ops = _ops(group)
        order = _ordered(ops)
        if self.db.dialect == "postgresql":
            position = {index: at for at, index in enumerate(order)}
            runs = [ops[i] for i in order]
            params = {
                "keys": [op.key for op in runs],
                "nows": [op.now for op in runs],
                "windows": [float(op.window) for op in runs],
                "gates": [0 if op.gate is None else position[op.gate] + 1 for op in runs],
                "amounts": [op.amount for op in runs],
            }

            def one_statement(conn: DriverTransaction) -> list[int]:
                found: list[int] = _COUNT_ALL.execute(conn, params).scalar()
                return [found[position[i]] for i in range(len(ops))]

            return split_counts(group, await self.db.write(one_statement, driver=True))
        upsert = _HIT[self.db.dialect]

        def statements(conn: DriverTransaction) -> list[int]:
            counts = [0] * len(ops)
            for i in order:
                op = ops[i]
                if op.window > 0 and (op.gate is None or counts[op.gate] == 1):
                    ends = op.now + timedelta(seconds=op.window)
                    params = {"key": op.key, "now": op.now, "window_end": ends, "amount": op.amount}
                    counts[i] = int(upsert.execute(conn, params).scalar())
                else:
                    found = _COUNT.execute(conn, {"key": op.key, "now": op.now}).scalar()
                    counts[i] = 0 if found is None else int(found)
            return counts

        return split_counts(group, await self.db.write(statements, driver=True))

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
