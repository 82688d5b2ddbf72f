"""Risk signals recorded by piigate itself, added to another engine's assessment.

``denied_push`` (CONTRACT §6): the subject answered a push "this wasn't me" within the last
:data:`DENIED_PUSH_WINDOW` seconds. Someone who holds their password (or session) is then
probably trying to step up as them, so their next requests weigh more — a rule with
``risk_at_least`` or ``signals: [denied_push]`` can demand a stronger factor or deny.

The evidence is the store's push ceremonies closed ``denied`` (``factors.push``), by the time the
push was sent. Decisions must not pay a query each, so every node keeps the denials of the
window in memory: it re-reads them from the store at most every :data:`REFRESH_SECONDS` (so a
denial on another node counts here within that time), and takes this node's own denials at
once from the event bus (the ``alert`` events). Risk only ever raises a requirement: the signal
adds its weight to what the wrapped engine found, capped at 100. If reading fails the exception
reaches the engine, which then scores 100 (fail closed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from piigate.factors import CeremonyPurpose, CeremonyState
from piigate.model import AccessRequest, AuditEvent, RiskAssessment, Signal
from piigate.policy.holder import PolicyHolder
from piigate.risk.port import RiskEngine

__all__ = ["DENIED_PUSH", "DENIED_PUSH_WINDOW", "REFRESH_SECONDS", "DenialSource", "RecordedRisk"]

DENIED_PUSH = "denied_push"
# How long a denied push keeps raising the subject's risk.
DENIED_PUSH_WINDOW = 3600
# How stale this node's view of other nodes' denials may be.
REFRESH_SECONDS = 1.0
# Weight when no policy is loaded (the loader's default for the signal).
_DEFAULT_WEIGHT = 50
_ALERT = "alert"
_SCAN_LIMIT = 100_000


class DeniedPush(Protocol):
    @property
    def subject_id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


class AlertSubscription(Protocol):
    """A subscription to this node's committed events (``audit.bus.Subscription``)."""

    closed: bool
    lagged: bool

    def drain(self) -> list[AuditEvent]: ...

    def close(self) -> None: ...


class AlertFeed(Protocol):
    """This node's committed events as they happen (``audit.bus.EventBus``)."""

    def subscribe(self, *, types: Iterable[str], local_only: bool) -> AlertSubscription: ...


class DenialSource(Protocol):
    """``store.CeremonyStore.list_ceremonies``."""

    async def list_ceremonies(
        self,
        *,
        purposes: Iterable[str] | None = None,
        states: Iterable[str] | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> Sequence[DeniedPush]: ...


class RecordedRisk:
    """``inner``'s assessment plus the signals piigate recorded about the subject."""

    def __init__(
        self,
        inner: RiskEngine,
        ceremonies: DenialSource,
        policy: PolicyHolder,
        *,
        bus: AlertFeed | None = None,
        window: int = DENIED_PUSH_WINDOW,
        refresh_seconds: float = REFRESH_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.ceremonies = ceremonies
        self.policy = policy
        self.window = window
        self.refresh_seconds = refresh_seconds
        self._monotonic = monotonic
        self._bus = bus
        self._alerts: AlertSubscription | None = None
        self._denials: dict[str, list[datetime]] = {}
        self._read_at: float | None = None
        self._reading = asyncio.Lock()

    async def assess(self, request: AccessRequest, *, now: datetime) -> RiskAssessment:
        assessed = await self.inner.assess(request, now=now)
        if DENIED_PUSH in assessed.signal_names:
            return assessed
        await self._refresh(now)
        since = now - timedelta(seconds=self.window)
        denied = sum(1 for at in self._denials.get(request.subject.id, ()) if since <= at <= now)
        if not denied:
            return assessed
        weight = self._weight()
        minutes = self.window // 60
        signal = Signal(
            DENIED_PUSH, weight, f"{denied} push approval(s) denied in the last {minutes} min"
        )
        return replace(
            assessed,
            score=min(100, assessed.score + weight),
            signals=(*assessed.signals, signal),
        )

    def close(self) -> None:
        if self._alerts is not None:
            self._alerts.close()
            self._alerts = None

    async def _refresh(self, now: datetime) -> None:
        self._take_local_alerts()
        read_at = self._read_at
        if read_at is not None and self._monotonic() - read_at < self.refresh_seconds:
            return
        async with self._reading:
            if self._read_at is not None and self._read_at != read_at:
                return  # another request read meanwhile
            since = now - timedelta(seconds=self.window)
            rows = await self.ceremonies.list_ceremonies(
                purposes=[CeremonyPurpose.PUSH],
                states=[CeremonyState.DENIED],
                since=since,
                limit=_SCAN_LIMIT,
            )
            denials: dict[str, list[datetime]] = {}
            for row in rows:
                denials.setdefault(row.subject_id, []).append(row.created_at)
            self._denials = denials
            self._read_at = self._monotonic()

    def _take_local_alerts(self) -> None:
        """This node's denials, from the bus: counted before the next store read."""
        if self._bus is None:
            return
        if self._alerts is None or self._alerts.closed or self._alerts.lagged:
            # (Re)subscribe; a subscription dropped for lagging only delays until the next read.
            if self._alerts is not None:
                self._alerts.close()
            # This node's own only: other nodes' denials come with the next store read.
            self._alerts = self._bus.subscribe(types=[_ALERT], local_only=True)
            self._read_at = None
        for event in self._alerts.drain():
            if event.data.get("kind") == "push_denied" and event.subject_id:
                self._denials.setdefault(event.subject_id, []).append(event.at)

    def _weight(self) -> int:
        compiled = self.policy.current
        if compiled is None:
            return _DEFAULT_WEIGHT
        settings = compiled.policy.risk.signals.get(DENIED_PUSH)
        return _DEFAULT_WEIGHT if settings is None else settings.weight
