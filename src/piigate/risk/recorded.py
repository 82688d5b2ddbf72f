"""Risk signals recorded by piigate itself, added to another engine's assessment.

- ``denied_push`` (CONTRACT §6): the subject answered a push "this wasn't me" within the last
  :data:`DENIED_PUSH_WINDOW` seconds. Evidence: the store's push ceremonies closed ``denied``
  (``factors.push``), by the time the push was sent; this node's ``alert`` events of kind
  ``push_denied``.
- ``reported_activity``: the subject reported one of their own events as not theirs ("this
  wasn't me" in the console, :mod:`piigate.risk.reports`) within the signal's ``window``
  (default a day). Evidence: the store's ``reported_activity`` ceremonies, by the time of the
  report; this node's ``alert`` events of kind ``reported_by_subject``.

Either way someone who holds the subject's password (or session) may be acting as them, so
their next requests weigh more: a rule with ``risk_at_least`` or ``signals: [...]`` can demand
a stronger factor or deny.

Decisions must not pay a query each, so every node keeps the window's evidence in memory: it
re-reads it from the store at most every :data:`REFRESH_SECONDS`, one query for every signal
(so evidence recorded on another node counts here within that time), and takes this node's own
at once from the event bus (the ``alert`` events). Risk only ever raises a requirement: each
signal adds its weight to what the wrapped engine found, capped at 100. If reading fails the
exception reaches the engine, which then scores 100 (fail closed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Protocol

from piigate.factors import CeremonyPurpose, CeremonyState
from piigate.model import AccessRequest, AuditEvent, RiskAssessment, Signal
from piigate.policy.holder import PolicyHolder
from piigate.risk.port import RiskEngine

__all__ = [
    "DENIED_PUSH",
    "DENIED_PUSH_WINDOW",
    "RECORDED_SIGNALS",
    "REFRESH_SECONDS",
    "REPORTED_ACTIVITY",
    "REPORTED_ACTIVITY_WINDOW",
    "REPORTED_BY_SUBJECT",
    "DenialSource",
    "RecordedRisk",
    "RecordedSignal",
]

DENIED_PUSH: Final = "denied_push"
REPORTED_ACTIVITY: Final = "reported_activity"
# The ``kind`` of the ``alert`` event a report by the subject appends (risk.reports).
REPORTED_BY_SUBJECT: Final = "reported_by_subject"
# How long a denied push keeps raising the subject's risk.
DENIED_PUSH_WINDOW: Final = 3600
# How long a report keeps raising it, unless the policy's ``reported_activity.window`` says.
REPORTED_ACTIVITY_WINDOW: Final = 86_400
# How stale this node's view of other nodes' evidence may be.
REFRESH_SECONDS: Final = 1.0
_ALERT: Final = "alert"
_SCAN_LIMIT: Final = 100_000


@dataclass(frozen=True, slots=True)
class RecordedSignal:
    """A signal whose evidence piigate records: ``purpose`` ceremonies (in ``states``; any
    state when None) opened within the window, and ``alert`` events of ``alert_kind``."""

    name: str
    purpose: CeremonyPurpose
    states: tuple[CeremonyState, ...] | None
    alert_kind: str
    default_weight: int  # when no policy is loaded (the loader's default for the signal)
    default_window: int  # seconds, unless the policy sets the signal's ``window``
    what: str  # the evidence counted, for the signal's detail

    def counts(self, row: Evidence) -> bool:
        """Whether ``row`` is evidence of this signal (its window aside)."""
        return row.purpose == self.purpose and (self.states is None or row.state in self.states)

    def detail(self, count: int, window: int) -> str:
        hours = window >= 7200 and window % 3600 == 0
        span = f"{window // 3600} h" if hours else f"{max(1, window // 60)} min"
        return f"{count} {self.what} in the last {span}"


RECORDED_SIGNALS: Final = (
    RecordedSignal(
        DENIED_PUSH,
        CeremonyPurpose.PUSH,
        (CeremonyState.DENIED,),
        "push_denied",
        50,
        DENIED_PUSH_WINDOW,
        "push approval(s) denied",
    ),
    RecordedSignal(
        REPORTED_ACTIVITY,
        CeremonyPurpose.REPORTED_ACTIVITY,
        None,
        REPORTED_BY_SUBJECT,
        40,
        REPORTED_ACTIVITY_WINDOW,
        "event(s) reported by the subject as not theirs",
    ),
)


class Evidence(Protocol):
    @property
    def subject_id(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def state(self) -> str: ...
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
    """``store.CeremonyStore.recent_ceremonies``."""

    async def recent_ceremonies(
        self,
        *,
        since: Mapping[str, datetime],
        states: Mapping[str, Iterable[str]] | None = None,
        limit: int = 100,
    ) -> Sequence[Evidence]: ...


class RecordedRisk:
    """``inner``'s assessment plus the signals piigate recorded about the subject."""

    def __init__(
        self,
        inner: RiskEngine,
        ceremonies: DenialSource,
        policy: PolicyHolder,
        *,
        bus: AlertFeed | None = None,
        signals: Sequence[RecordedSignal] = RECORDED_SIGNALS,
        refresh_seconds: float = REFRESH_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.ceremonies = ceremonies
        self.policy = policy
        self.signals = tuple(signals)
        self.refresh_seconds = refresh_seconds
        self._monotonic = monotonic
        self._bus = bus
        self._alerts: AlertSubscription | None = None
        self._by_kind = {signal.alert_kind: signal.name for signal in self.signals}
        # signal name → subject → when each piece of evidence was recorded
        self._seen: dict[str, dict[str, list[datetime]]] = {s.name: {} for s in self.signals}
        self._read_at: float | None = None
        self._reading = asyncio.Lock()

    async def assess(self, request: AccessRequest, *, now: datetime) -> RiskAssessment:
        assessed = await self.inner.assess(request, now=now)
        await self._refresh(now)
        subject = request.subject.id
        for recorded in self.signals:
            if recorded.name in assessed.signal_names:
                continue
            weight, window = self._settings(recorded)
            since = now - timedelta(seconds=window)
            found = self._seen[recorded.name].get(subject, ())
            count = sum(1 for at in found if since <= at <= now)
            if not count:
                continue
            signal = Signal(recorded.name, weight, recorded.detail(count, window))
            assessed = replace(
                assessed,
                score=min(100, assessed.score + weight),
                signals=(*assessed.signals, signal),
            )
        return assessed

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
            since = {s: now - timedelta(seconds=self._settings(s)[1]) for s in self.signals}
            rows = await self.ceremonies.recent_ceremonies(
                since=_earliest(since), states=_states(self.signals), limit=_SCAN_LIMIT
            )
            seen: dict[str, dict[str, list[datetime]]] = {s.name: {} for s in self.signals}
            for row in rows:
                for recorded in self.signals:
                    if recorded.counts(row) and row.created_at >= since[recorded]:
                        seen[recorded.name].setdefault(row.subject_id, []).append(row.created_at)
            self._seen = seen
            self._read_at = self._monotonic()

    def _take_local_alerts(self) -> None:
        """This node's evidence, from the bus: counted before the next store read."""
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
            name = self._by_kind.get(str(event.data.get("kind")))
            if name is not None and event.subject_id:
                self._seen[name].setdefault(event.subject_id, []).append(event.at)

    def _settings(self, recorded: RecordedSignal) -> tuple[int, int]:
        """The signal's weight and window (seconds): the policy's, or the defaults."""
        compiled = self.policy.current
        settings = None if compiled is None else compiled.policy.risk.signals.get(recorded.name)
        if settings is None:
            return recorded.default_weight, recorded.default_window
        return settings.weight, settings.params.get("window", recorded.default_window)


def _earliest(since: Mapping[RecordedSignal, datetime]) -> dict[str, datetime]:
    """Per purpose, the earliest time any of its signals reads from."""
    earliest: dict[str, datetime] = {}
    for recorded, at in since.items():
        purpose = str(recorded.purpose)
        earliest[purpose] = min(at, earliest.get(purpose, at))
    return earliest


def _states(signals: Iterable[RecordedSignal]) -> dict[str, tuple[str, ...]]:
    """Per purpose, the states its signals count (absent: a signal of it counts any state)."""
    states: dict[str, set[str]] = {}
    any_state: set[str] = set()
    for recorded in signals:
        purpose = str(recorded.purpose)
        if recorded.states is None:
            any_state.add(purpose)
        else:
            states.setdefault(purpose, set()).update(str(s) for s in recorded.states)
    return {p: tuple(sorted(found)) for p, found in states.items() if p not in any_state}
