"""The alert desk: alerts raised from this node's committed events, listed and acknowledged.

Its watcher (:meth:`AlertDesk.run`, a task of the node) follows this node's own events on the
event bus (``local_only``: events fanned in from other nodes are raised by the node that
committed them), asks :func:`~piigate.audit.alerts.alert_for` of each, stores the alert once
per source event (the table is unique on the event's seq, so a second try, here or elsewhere,
stores nothing), announces it as an ``alert_raised`` audit event, so live feeds show it, counts
it, and hands it to the sinks (which queue it and never make the desk wait). A decision's
signal that an open alert of the same kind and subject reported in the last ten minutes raises
nothing new. A watcher that falls behind the bus catches up from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final, Protocol

from piigate.audit.alerts import (
    ALERT_ACKNOWLEDGED,
    ALERT_RAISED,
    Alert,
    AlertDraft,
    AlertKind,
    alert_for,
)
from piigate.audit.bus import EventBus, SubscriberLagged, SubscriptionClosed
from piigate.audit.log import AuditLog
from piigate.audit.sinks import QueuedSink
from piigate.clock import Clock
from piigate.errors import Conflict, NotFound, ServiceUnavailable
from piigate.ids import new_id
from piigate.model import AuditEvent

__all__ = ["REPEAT_WINDOW", "SOURCE_TYPES", "AlertDesk", "AlertRows"]

_logger = logging.getLogger(__name__)

# The event types alert_for reads; the watcher subscribes to these only.
SOURCE_TYPES: Final = ("alert", "approaching_limit", "decision")
# Alerts from decisions repeat while the signal holds (each decision of a bulk delete carries
# it): an open alert of the same kind and subject this recent absorbs the repeats.
REPEATS: Final = frozenset({AlertKind.IMPOSSIBLE_TRAVEL, AlertKind.BULK_DESTRUCTIVE})
REPEAT_WINDOW: Final = timedelta(minutes=10)
_BACKLOG = 10_000
_PAGE = 1000
_MAX_LIMIT = 500
_REMEMBERED = 10_000


class AlertRows(Protocol):
    """``store.alerts.AlertStore``."""

    async def raise_alert(self, alert_id: str, draft: AlertDraft) -> Alert | None: ...

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
    ) -> None:
        self.rows = rows
        self.audit = audit
        self.bus = bus
        self.clock = clock
        self.sinks = tuple(sinks)
        self._count = count
        # When this node last raised an alert of a REPEATS kind, by (kind, subject): repeats
        # within the window are dropped without asking the store.
        self._raised: dict[tuple[AlertKind, str | None], datetime] = {}

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
        when it raises none or its alert exists already."""
        draft = alert_for(event)
        if draft is None or await self._repeats(draft):
            return None
        alert = await self.rows.raise_alert(new_id("alt"), draft)
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
        """Whether ``draft`` repeats an open alert of its kind and subject raised within
        :data:`REPEAT_WINDOW` before it (decision signals only)."""
        if draft.kind not in REPEATS:
            return False
        key = (draft.kind, draft.subject_id)
        since = draft.at - REPEAT_WINDOW
        last = self._raised.get(key)
        if last is not None and since <= last <= draft.at:
            return True
        found = await self.rows.list_alerts(
            open_only=True, subject_id=draft.subject_id, kinds=(draft.kind.value,), limit=1
        )
        if found and since <= found[0].at <= draft.at:
            self._remember(key, found[0].at)
            return True
        return False

    def _remember(self, key: tuple[AlertKind, str | None], at: datetime) -> None:
        if len(self._raised) >= _REMEMBERED:
            oldest = sorted(self._raised.items(), key=lambda item: item[1])
            self._raised = dict(oldest[len(oldest) // 2 :])
        self._raised[key] = at

    async def run(self) -> None:
        """Raise alerts from this node's events until cancelled or the bus closes."""
        subscription = self.bus.subscribe(types=SOURCE_TYPES, maxsize=_BACKLOG, local_only=True)
        try:
            while True:
                try:
                    event = await subscription.get()
                except SubscriberLagged as lagged:
                    subscription = self.bus.subscribe(
                        types=SOURCE_TYPES, maxsize=_BACKLOG, local_only=True
                    )
                    await self._catch_up(lagged.last_seq or 0)
                    continue
                await self._raise_logged(event)
        except SubscriptionClosed:
            return
        finally:
            subscription.close()

    async def _catch_up(self, after: int) -> None:
        """Events of the source types after ``after`` from the store (every node's: the unique
        source seq keeps each alert single)."""
        while True:
            events = await self.audit.list_events(after=after, types=SOURCE_TYPES, limit=_PAGE)
            for event in events:
                await self._raise_logged(event)
            if len(events) < _PAGE:
                return
            after = events[-1].seq or after

    async def _raise_logged(self, event: AuditEvent) -> None:
        """:meth:`raise_from`; a store that fails is logged (the event stays in the chain)."""
        for attempt in range(3):
            try:
                await self.raise_from(event)
                return
            except ServiceUnavailable:
                await asyncio.sleep(0.2 * (attempt + 1))
            except Exception as exc:
                _logger.error("alert not raised for seq %s: %s", event.seq, type(exc).__name__)
                return
        _logger.error("alert not raised for seq %s: the store is unavailable", event.seq)
