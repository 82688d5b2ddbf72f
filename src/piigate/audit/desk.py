"""The alert desk: alerts raised from committed audit events, listed and acknowledged.

Its watcher (:meth:`AlertDesk.run`, a task of the node) follows this node's own events on the
event bus (``local_only``: events fanned in from other nodes are raised by the node that
committed them), asks :func:`~piigate.audit.alerts.alert_for` of each (as the bus publishes
it: an event that raises nothing, most decisions, is noted as examined without waking the
watcher), stores the alert once per source event (the table is unique on the event's seq, so a
second try, here or elsewhere, stores nothing), announces it as an ``alert_raised`` audit
event, so live feeds show it, counts it, and hands it to the sinks (which queue it and never
make the desk wait). A decision's signal within ten minutes of an alert of the same kind and
subject that was open at the time raises nothing new.

What no watcher examined (committed while no node watched, or while the store failed) is
examined by a catch-up from the store's watermark (``audit/catchup.py``): when the watcher
starts, after it falls behind the bus, and every :data:`SWEEP_EVERY` seconds through the head
read one period before (the watchers have examined their own events by then; a store failure
brings the next one forward to the failed event).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final, Protocol

import structlog

from piigate.audit.alerts import (
    ALERT_ACKNOWLEDGED,
    ALERT_RAISED,
    Alert,
    AlertDraft,
    AlertKind,
    alert_for,
)
from piigate.audit.bus import EventBus, SubscriberLagged, Subscription, SubscriptionClosed
from piigate.audit.catchup import CATCH_UP_BOUND, CatchUp, CatchUpReport, WatermarkRows
from piigate.audit.log import AuditLog
from piigate.audit.sinks import QueuedSink
from piigate.clock import Clock
from piigate.errors import Conflict, NotFound, ServiceUnavailable
from piigate.ids import new_id
from piigate.model import AuditEvent

__all__ = ["REPEAT_WINDOW", "SOURCE_TYPES", "SWEEP_EVERY", "AlertDesk", "AlertRows"]

_logger = logging.getLogger(__name__)
log = structlog.get_logger("piigate.alerts")

# The event types alert_for reads; the watcher subscribes to these only.
SOURCE_TYPES: Final = ("alert", "approaching_limit", "decision")
# Alerts from decisions repeat while the signal holds (each decision of a bulk delete carries
# it): an alert of the same kind and subject within REPEAT_WINDOW of a decision, either side,
# and open at the decision's time, absorbs it.
REPEATS: Final = frozenset({AlertKind.IMPOSSIBLE_TRAVEL, AlertKind.BULK_DESTRUCTIVE})
REPEAT_WINDOW: Final = timedelta(minutes=10)
# Seconds between catch-ups while the watcher runs.
SWEEP_EVERY: Final = 30.0
_BACKLOG = 10_000
_MAX_LIMIT = 500
_REMEMBERED = 10_000
_ATTEMPTS = 3


class AlertRows(WatermarkRows, Protocol):
    """``store.alerts.AlertStore``."""

    async def raise_alert(
        self, alert_id: str, draft: AlertDraft, *, unless_within: timedelta | None = None
    ) -> Alert | None: ...

    async def get_alert(self, alert_id: str) -> Alert | None: ...

    async def list_alerts(
        self,
        *,
        open_only: bool = False,
        acknowledged_only: bool = False,
        subject_id: str | None = None,
        kinds: tuple[str, ...] = (),
        limit: int = 100,
    ) -> list[Alert]: ...

    async def acknowledge_alert(self, alert_id: str, *, by: str, at: datetime) -> bool: ...

    async def alert_around(
        self, kind: str, subject_id: str | None, *, at: datetime, within: timedelta
    ) -> Alert | None: ...


class AlertDesk:
    def __init__(
        self,
        *,
        rows: AlertRows,
        audit: AuditLog,
        bus: EventBus,
        clock: Clock,
        sinks: Sequence[QueuedSink] = (),
        count: Callable[[AlertKind], None] | None = None,
        sweep_every: float = SWEEP_EVERY,
        bound: int = CATCH_UP_BOUND,
    ) -> None:
        self.rows = rows
        self.audit = audit
        self.bus = bus
        self.clock = clock
        self.sinks = tuple(sinks)
        self._count = count
        self.sweep_every = sweep_every
        self.catch_up = CatchUp(
            rows=rows, events=audit, clock=clock, types=SOURCE_TYPES, bound=bound
        )
        # When this node last raised an alert of a REPEATS kind, by (kind, subject): repeats
        # within the window are dropped without asking the store.
        self._raised: dict[tuple[AlertKind, str | None], datetime] = {}
        # The highest seq the store failed on since the last catch-up (0: none).
        self._failed = 0

    # -- reading and acknowledging ------------------------------------------------------------
    async def recent(
        self,
        *,
        open_only: bool = False,
        acknowledged_only: bool = False,
        subject_id: str | None = None,
        kinds: Sequence[str] = (),
        limit: int = 100,
    ) -> list[Alert]:
        """The newest alerts first (``limit`` at most 500): all, the open ones or the
        acknowledged ones, of ``subject_id`` and of ``kinds`` when given (an unknown kind
        matches nothing)."""
        wanted = tuple(k for k in kinds if k in set(AlertKind))
        if kinds and not wanted:
            return []
        return await self.rows.list_alerts(
            open_only=open_only,
            acknowledged_only=acknowledged_only,
            subject_id=subject_id,
            kinds=wanted,
            limit=max(1, min(limit, _MAX_LIMIT)),
        )

    async def acknowledge(self, alert_id: str, by: str) -> Alert:
        """Acknowledge an open alert as ``by`` (audited ``alert_acknowledged``); NotFound for
        an unknown id, Conflict when it was acknowledged already."""
        now = self.clock.now()
        if not await self.rows.acknowledge_alert(alert_id, by=by, at=now):
            found = await self.rows.get_alert(alert_id)
            if found is None:
                raise NotFound("no such alert")
            raise Conflict("the alert was acknowledged already")
        alert = await self.rows.get_alert(alert_id)
        assert alert is not None  # acknowledged rows are never deleted
        self._raised.pop((alert.kind, alert.subject_id), None)
        await self.audit.record(
            ALERT_ACKNOWLEDGED,
            subject_id=alert.subject_id,
            data={"alert_id": alert.id, "kind": alert.kind.value, "by": by},
            at=now,
        )
        return alert

    # -- raising ------------------------------------------------------------------------------
    async def raise_from(self, event: AuditEvent) -> Alert | None:
        """The alert ``event`` raises, stored, announced, counted and sent to the sinks; None
        when it raises none or its alert exists already.

        Once begun, raising runs to its end even when the desk is stopped meanwhile (the
        stop waits for it): an alert stored but never announced would stay so, since every
        later try finds it stored."""
        draft = alert_for(event)
        if draft is None:
            return None
        raising = asyncio.ensure_future(self._raise(draft))
        try:
            return await asyncio.shield(raising)
        except asyncio.CancelledError:
            await asyncio.wait([raising])
            if not raising.cancelled():
                raising.exception()  # retrieved: the stop is what the caller sees
            raise

    async def _raise(self, draft: AlertDraft) -> Alert | None:
        if await self._repeats(draft):
            return None
        # A repeat is checked again as the alert is stored: another node may be raising one.
        within = REPEAT_WINDOW if draft.kind in REPEATS else None
        alert = await self.rows.raise_alert(new_id("alt"), draft, unless_within=within)
        if alert is None:
            return None
        if alert.kind in REPEATS:
            self._remember((alert.kind, alert.subject_id), alert.at)
        if self._count is not None:
            self._count(alert.kind)
        for sink in self.sinks:
            sink.offer(alert)
        await self.audit.record(
            ALERT_RAISED,
            subject_id=alert.subject_id,
            data={
                "alert_id": alert.id,
                "kind": alert.kind.value,
                "severity": alert.severity.value,
                "event_seq": alert.event_seq,
            },
        )
        return alert

    async def _repeats(self, draft: AlertDraft) -> bool:
        """Whether ``draft`` repeats an alert of its kind and subject dated within
        :data:`REPEAT_WINDOW` of it and open at its time (decision signals only)."""
        if draft.kind not in REPEATS:
            return False
        key = (draft.kind, draft.subject_id)
        last = self._raised.get(key)
        if last is not None and draft.at - REPEAT_WINDOW <= last <= draft.at:
            return True
        found = await self.rows.alert_around(
            draft.kind.value, draft.subject_id, at=draft.at, within=REPEAT_WINDOW
        )
        if found is None:
            return False
        if found.at <= draft.at:
            self._remember(key, found.at)
        return True

    def _remember(self, key: tuple[AlertKind, str | None], at: datetime) -> None:
        if len(self._raised) >= _REMEMBERED:
            oldest = sorted(self._raised.items(), key=lambda item: item[1])
            self._raised = dict(oldest[len(oldest) // 2 :])
        self._raised[key] = at

    # -- watching -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Catch up, then raise alerts from this node's events as they commit, catching up
        every :attr:`sweep_every` seconds, until cancelled or the bus closes."""
        loop = asyncio.get_running_loop()
        subscription = self._subscribe()
        try:
            # At start: through the head (what no watcher examined while none ran).
            through = await self._sweep(None, started=True)
            due = loop.time() + self.sweep_every
            while True:
                try:
                    async with asyncio.timeout_at(due):
                        event = await subscription.get()
                except TimeoutError:
                    through = await self._sweep(through, started=through is None)
                    due = loop.time() + self.sweep_every
                    continue
                except SubscriberLagged:
                    subscription = self._subscribe()
                    await self._sweep(None)
                    continue
                if event.seq is not None and not self.catch_up.examined(event.seq):
                    # A turn first for whoever the event's commit released (an answer waiting
                    # for it must not wait for the alert check too).
                    await asyncio.sleep(0)
                    await self._examine(event)
        except SubscriptionClosed:
            return
        finally:
            subscription.close()

    def _subscribe(self) -> Subscription:
        return self.bus.subscribe(
            types=SOURCE_TYPES, maxsize=_BACKLOG, local_only=True, where=self._worth_waking
        )

    def _worth_waking(self, event: AuditEvent) -> bool:
        """Whether the watcher must examine ``event``: not when it raises no alert (most
        decisions), which is then noted as examined there and then, in the turn that
        published it, as the watcher's examination would have noted it."""
        if event.seq is None or alert_for(event) is not None:
            return True
        self.catch_up.note(event.seq)
        return False

    async def _sweep(self, through: int | None, *, started: bool = False) -> int | None:
        """A catch-up through ``through`` (through the head when None, or through the event the
        store last failed on if that is later); the head read now, where the next one ends.
        None when the store could not be read (the next one then goes through the head)."""
        try:
            head = (await self.audit.head()).seq
            end = head if through is None else max(through, min(self._failed, head))
            report = await self.catch_up.run(end, self._examine)
        except Exception as exc:  # the store failing, mostly: tried again at the next one
            log.warning("alert_catch_up_failed", error=type(exc).__name__)
            return None if started else through
        # What failed is above the watermark still, and at or below the head the next one
        # goes through.
        self._failed = 0
        if started or report.raised or report.skipped or report.failed is not None:
            _report(report)
        return head

    async def _examine(self, event: AuditEvent) -> bool | None:
        """:meth:`raise_from`, tried again while the store is unavailable: whether it raised an
        alert, None when the store kept failing (the event is then examined again by the next
        catch-up). Any other error is logged, and the event counts as examined."""
        for attempt in range(_ATTEMPTS):
            try:
                raised = await self.raise_from(event) is not None
            except ServiceUnavailable:
                if attempt + 1 < _ATTEMPTS:
                    await asyncio.sleep(0.2 * (attempt + 1))
                continue
            except Exception as exc:
                _logger.error("alert not raised for seq %s: %s", event.seq, type(exc).__name__)
                raised = False
            if event.seq is not None:
                self.catch_up.note(event.seq)
            return raised
        _logger.error("alert not raised for seq %s: the store is unavailable", event.seq)
        if event.seq is not None:
            self._failed = max(self._failed, event.seq)
        return None


def _report(report: CatchUpReport) -> None:
    """One log line of what a catch-up did: seqs and counts only."""
    log.info(
        "alerts_caught_up",
        after=report.after,
        through=report.through,
        examined=report.examined,
        raised=report.raised,
        skipped=report.skipped,
        failed=report.failed,
    )
