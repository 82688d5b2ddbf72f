"""Counter batches asked for in one turn of the event loop, sent to the store together.

Under load many requests count at once (their rate limits, their risk counters), and what a
call to a shared store costs the caller (a Redis call through redis-py, a PostgreSQL statement
and its commit) is mostly the same whatever it carries. :class:`TurnBatches` queues the batches
of one loop turn and hands them to the adapter's ``send`` as one group; each caller gets its own
counts back, or the group's error. ``send`` must apply each batch atomically and as if the
batches ran one after another in the order asked.

With ``in_flight`` set, at most that many groups are on their way at once, and the batches asked
for meanwhile wait to go as the next group, as a group commit does: one transaction at a time
holds the rows it counts on, so requests that count on the same row (one client address, one
subject) do not queue for its lock one transaction each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import NamedTuple

from piigate.ports import Hit

__all__ = ["Asked", "Send", "TurnBatches", "split_counts"]


class Asked(NamedTuple):
    """One caller's batch: its hits, then the keys it reads, at its own ``now``."""

    hits: Sequence[Hit]
    peeks: Sequence[str]
    now: datetime


# The counts of each batch of the group, in its order: its hits', then its reads'.
Send = Callable[[list[Asked]], Awaitable[list[list[int]]]]


def split_counts(group: Sequence[Asked], counts: Sequence[int]) -> list[list[int]]:
    """The counts of a whole group, in the order of its batches' keys, cut into each batch's."""
    out, start = [], 0
    for asked in group:
        end = start + len(asked.hits) + len(asked.peeks)
        out.append(list(counts[start:end]))
        start = end
    return out


class TurnBatches:
    """``batch(hits, peeks, now=)`` for a counters adapter, through groups of one loop turn.

    ``max_keys``: a larger group is split (a Redis script or a statement holds its rows while
    it runs); a single batch is never split. ``in_flight``: see the module's docstring; None
    sends every loop turn's group at once.
    """

    def __init__(self, send: Send, *, max_keys: int, in_flight: int | None = None) -> None:
        self.send = send
        self.max_keys = max_keys
        self.in_flight = in_flight
        self._waiting: list[tuple[Asked, asyncio.Future[list[int]]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False

    async def batch(
        self, hits: Sequence[Hit], peeks: Sequence[str], *, now: datetime
    ) -> tuple[list[int], list[int]]:
        if not hits and not peeks:
            return [], []
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop: what the old one left can never be answered
            self._loop, self._waiting, self._sending, self._scheduled = loop, [], set(), False
        answer: asyncio.Future[list[int]] = loop.create_future()
        self._waiting.append((Asked(hits, peeks, now), answer))
        if not self._scheduled and self._room():
            self._scheduled = True
            loop.call_soon(self._start)
        counts = await answer
        return counts[: len(hits)], counts[len(hits) :]

    async def aclose(self) -> None:
        """Wait for the groups on their way (their callers get their counts)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _room(self) -> bool:
        return self.in_flight is None or len(self._sending) < self.in_flight

    def _start(self) -> None:
        self._scheduled = False
        while self._waiting and self._room():
            size, taken = 0, 0
            for asked, _ in self._waiting:
                size += len(asked.hits) + len(asked.peeks)
                if size > self.max_keys and taken:
                    break
                taken += 1
            group, self._waiting = self._waiting[:taken], self._waiting[taken:]
            task = asyncio.ensure_future(self._send(group))
            self._sending.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if self._waiting and not self._scheduled and task.get_loop() is self._loop:
            self._scheduled = True
            task.get_loop().call_soon(self._start)

    async def _send(self, group: list[tuple[Asked, asyncio.Future[list[int]]]]) -> None:
        try:
            counts = await self.send([asked for asked, _ in group])
            if len(counts) != len(group):
                raise RuntimeError(f"{len(counts)} answers to a group of {len(group)} batches")
        except asyncio.CancelledError:  # the loop is closing: so are the callers
            for _, answer in group:
                answer.cancel()
            raise
        except Exception as exc:  # StoreUnavailable, or a fault: every caller fails closed
            for _, answer in group:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, answer), counted in zip(group, counts, strict=True):
            if not answer.done():  # a caller that gave up (cancelled) no longer listens
                answer.set_result(counted)
