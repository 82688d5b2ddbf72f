"""Catching up on the audit trail for alerts: what no watcher examined is examined from the store.

The alert desk's watcher (``audit/desk.py``) examines this node's events as they commit. An event
committed while no watcher looked -- the node stopped between the commit and the watcher, or
crashed; its audit writer process committed after the node's loop ended; the store failed
while the alert was being raised -- is examined by a catch-up: from the **watermark** (the
store's ``alert_watermark``: every source event at or below it has been examined) through a
given seq, reading the events from the store. The watermark then moves to that seq.

The nodes of a deployment share the watermark, and only a catch-up moves it, over events it has
examined in seq order itself: read from the store, or examined by its own node's watcher (it
skips those seqs and reads the rest). A watcher never moves it: another node may not yet have
examined an earlier event of its own. So the watermark never passes an event that no node has
examined. Seqs are assigned at commit, in commit order, so every event up to a head that was
read is in the store when a catch-up reads it.

Examining an event twice is harmless: the alerts table is unique on the source seq, and whether
a signal repeats an alert is judged by the event's time (``AlertStore.alert_around``), not by
when it is asked.

A catch-up examines at most :data:`CATCH_UP_BOUND` events back from its end, so that a deployment
upgraded to the watermark (none yet) or a watermark left far behind does not rescan millions of
decisions; the events before are skipped, and counted in its report.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from piigate.clock import Clock
from piigate.model import AuditEvent

__all__ = ["CATCH_UP_BOUND", "CatchUp", "CatchUpReport", "Examine", "WatermarkRows"]

# How many events a catch-up reads back from its end at most (a seq range: events of every type
# count, as the chain numbers them).
CATCH_UP_BOUND: Final = 100_000
_PAGE = 1000
# Seqs this node examined above the watermark, kept to skip them; forgotten past this many (a
# catch-up then reads those events again: slower, still correct).
_REMEMBERED = 1_000_000

# Examines one committed event: whether it raised an alert, None when the store failed (the
# event then stays above the watermark, for a later catch-up).
Examine = Callable[[AuditEvent], Awaitable[bool | None]]


class WatermarkRows(Protocol):
    """``store.alerts.AlertStore``."""

    async def watermark(self) -> int | None: ...

    async def advance_watermark(self, seq: int, *, at: datetime) -> int: ...

    async def event_seqs(
        self, *, after: int, through: int, types: Sequence[str], limit: int
    ) -> list[int]: ...


class EventReader(Protocol):
    """``AuditLog.events_at``."""

    async def events_at(self, seqs: Sequence[int]) -> list[AuditEvent]: ...


@dataclass(frozen=True, slots=True)
class CatchUpReport:
    """What one catch-up did (seqs and counts only)."""

    after: int  # the watermark it started from (0: none yet)
    through: int  # the watermark it left
    examined: int  # source events it read from the store and examined
    raised: int  # alerts they raised
    skipped: int  # events before its bound, not examined
    failed: int | None = None  # the seq the store failed on: examined again next time


class CatchUp:
    """The catch-ups of one node, and the seqs its watcher examined since the last one."""

    def __init__(
        self,
        *,
        rows: WatermarkRows,
        events: EventReader,
        clock: Clock,
        types: Sequence[str],
        bound: int = CATCH_UP_BOUND,
    ) -> None:
        if bound < 1:
            raise ValueError("a catch-up bound is at least one event")
        self.rows = rows
        self.events = events
        self.clock = clock
        self.types = tuple(types)
        self.bound = bound
        self.watermark = 0  # as last read or moved by this node
        self._examined: set[int] = set()

    def examined(self, seq: int) -> bool:
        """Whether the event ``seq`` is known to have been examined."""
        return seq <= self.watermark or seq in self._examined

    def note(self, seq: int) -> None:
        """The event ``seq`` was examined on this node: catch-ups skip it."""
        if seq <= self.watermark:
            return
        if len(self._examined) >= _REMEMBERED:
            self._examined.clear()
        self._examined.add(seq)

    async def run(self, through: int, examine: Examine) -> CatchUpReport:
        """Examine the source events from the watermark through ``through`` that this node has
        not examined (at most :attr:`bound` events back), in seq order; then move the watermark
        to ``through``, or to just before the event the store failed on."""
        mark = await self.rows.watermark()
        after = mark or 0
        if through <= after:
            self._moved(after)
            return CatchUpReport(after, after, 0, 0, 0)
        skipped = max(0, through - self.bound - after)
        position = after + skipped
        examined = raised = 0
        failed: int | None = None
        while position < through and failed is None:
            seqs = await self.rows.event_seqs(
                after=position, through=through, types=self.types, limit=_PAGE
            )
            todo = [seq for seq in seqs if seq not in self._examined]
            for event in await self.events.events_at(todo) if todo else []:
                outcome = await examine(event)
                if outcome is None:
                    assert event.seq is not None  # read from the store
                    failed = event.seq
                    break
                examined += 1
                raised += outcome
            position = seqs[-1] if len(seqs) == _PAGE else through
        reached = through if failed is None else failed - 1
        moved = await self.rows.advance_watermark(reached, at=self.clock.now())
        self._moved(moved)
        return CatchUpReport(after, moved, examined, raised, skipped, failed)

    def _moved(self, watermark: int) -> None:
        if watermark > self.watermark:
            self.watermark = watermark
            self._examined = {seq for seq in self._examined if seq > watermark}
