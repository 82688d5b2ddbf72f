"""Behaviour signals: what a subject does, counted over sliding windows in the nodes' shared
counters (``ports.RateCounters``: this process's memory, the SQL store, or Redis).

- ``velocity``: requests (every decision, the HTTP gateway's included) per window, per subject
  (``limit``) and per client address (``ip_limit``); fires above either limit.
- ``pii_enumeration``: distinct records (resource type and id) whose PII the subject read or
  exported in the window; fires above ``distinct_records``.
- ``bulk_destructive``: PII updates and deletes per window; fires above ``limit`` *and* above
  ``baseline_factor`` times the subject's own rate over ``baseline_window`` (so a subject whose
  work is bulk updates is judged against their habit, and one who suddenly deletes everything
  is caught either way).
- ``failed_stepups``: failed step-up verifications in the window (``RiskFeed.failed_stepup``);
  fires at ``limit``.

A window slides: two fixed windows, the previous one weighted by how much of it still lies
within the window (the estimate Cloudflare and nginx use). Counter keys hold keyed hashes only
(subject, address, record), never the values. Early warning: when an estimate reaches
:data:`WARN_AT` of its limit, one ``approaching_limit`` audit event per subject, signal and
window (shared counters make it one across the nodes) names the signal, the count, the limit,
the window and the trend against the previous window -- before the signal fires, and never
with an address. A counter that fails raises: the engine then scores the request as highest
risk.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from piigate.crypto.secret import Secret
from piigate.model import Action, Resource, Signal
from piigate.policy.model import RiskSettings, SignalSettings
from piigate.ports import AuditRecorder, RateCounters

__all__ = ["APPROACHING_LIMIT", "WARN_AT", "Behaviour", "Estimate"]

APPROACHING_LIMIT: Final = "approaching_limit"
WARN_AT: Final = 0.8
_READS: Final = frozenset({Action.READ, Action.EXPORT})
_WRITES: Final = frozenset({Action.UPDATE, Action.DELETE})
# Closed windows' counts are final: kept here so a decision reads one counter, not two.
_CLOSED_CACHE: Final = 100_000
# A window is taken as closed this long after its end (nodes' clocks differ a little).
_SETTLE_SECONDS: Final = 2.0


@dataclass(frozen=True, slots=True)
class Estimate:
    """A sliding-window count: this fixed window's, plus the previous one's share."""

    current: int
    previous: int
    value: float
    window: int

    @property
    def shown(self) -> int:
        return math.ceil(self.value - 1e-9)


class Behaviour:
    def __init__(
        self,
        counters: RateCounters,
        audit: AuditRecorder,
        *,
        key: Secret[bytes],
        prefix: str = "risk:",
    ) -> None:
        self.counters = counters
        self.audit = audit
        self._key = key
        self._prefix = prefix
        self._closed: OrderedDict[str, int] = OrderedDict()

    async def signals(
        self,
        subject_id: str,
        *,
        ip_key: str | None,
        action: Action,
        pii: bool,
        resource: Resource,
        settings: RiskSettings,
        now: datetime,
    ) -> tuple[Signal, ...]:
        """Count this request and return the behaviour signals that fire for it."""
        subject = self._digest("subject", subject_id)
        found = [
            await self._velocity(subject_id, subject, ip_key, settings, now),
            await self._failed_stepups(subject_id, subject, settings, now),
        ]
        if pii and action in _READS and resource.id is not None:
            found.append(await self._enumeration(subject_id, subject, resource, settings, now))
        if pii and action in _WRITES:
            found.append(await self._bulk(subject_id, subject, settings, now))
        return tuple(s for s in found if s is not None)

    async def failed_stepup(
        self, subject_id: str, *, settings: RiskSettings, now: datetime
    ) -> None:
        """Count a failed step-up verification of the subject's."""
        spec = _active(settings, "failed_stepups")
        if spec is None:
            return
        window = _window(spec)
        counted = await self._hit(f"fs:{self._digest('subject', subject_id)}", window, now)
        limit = spec.params.get("limit", 3)
        await self._warn(subject_id, "failed_stepups", "subject", counted, limit, now)

    async def _velocity(
        self,
        subject_id: str,
        subject: str,
        ip_key: str | None,
        settings: RiskSettings,
        now: datetime,
    ) -> Signal | None:
        spec = _active(settings, "velocity")
        if spec is None:
            return None
        window = _window(spec)
        details = []
        counted = await self._hit(f"v:s:{subject}", window, now)
        limit = spec.params.get("limit", 60)
        await self._warn(subject_id, "velocity", "subject", counted, limit, now)
        if counted.value > limit:
            details.append(f"{counted.shown} requests in {_text(window)} (limit {limit})")
        if ip_key is not None:
            ip_limit = spec.params.get("ip_limit", 300)
            by_ip = await self._hit(f"v:ip:{ip_key}", window, now)
            await self._warn(subject_id, "velocity", "ip", by_ip, ip_limit, now)
            if by_ip.value > ip_limit:
                details.append(
                    f"{by_ip.shown} requests from this address in {_text(window)} "
                    f"(limit {ip_limit})"
                )
        return Signal("velocity", spec.weight, "; ".join(details)) if details else None

    async def _failed_stepups(
        self, subject_id: str, subject: str, settings: RiskSettings, now: datetime
    ) -> Signal | None:
        spec = _active(settings, "failed_stepups")
        if spec is None:
            return None
        window = _window(spec)
        counted = await self._peek(f"fs:{subject}", window, now)
        limit = spec.params.get("limit", 3)
        if counted.value < limit:
            return None
        detail = f"{counted.shown} failed step-ups in {_text(window)} (limit {limit})"
        return Signal("failed_stepups", spec.weight, detail)

    async def _enumeration(
        self,
        subject_id: str,
        subject: str,
        resource: Resource,
        settings: RiskSettings,
        now: datetime,
    ) -> Signal | None:
        spec = _active(settings, "pii_enumeration")
        if spec is None:
            return None
        window = _window(spec)
        record = self._digest("record", f"{resource.type or ''}\x00{resource.id}")
        bucket, _ = _bucket(now, window)
        first = await self.counters.hit(
            f"{self._prefix}pe:seen:{subject}:{record}:{window}:{bucket}",
            window_seconds=_keep(now, window),
            now=now,
        )
        base = f"pe:{subject}"
        counted = await (
            self._hit(base, window, now) if first == 1 else self._peek(base, window, now)
        )
        limit = spec.params.get("distinct_records", 50)
        await self._warn(subject_id, "pii_enumeration", "subject", counted, limit, now)
        if counted.value <= limit:
            return None
        detail = (
            f"{counted.shown} distinct records with PII read in {_text(window)} (limit {limit})"
        )
        return Signal("pii_enumeration", spec.weight, detail)

    async def _bulk(
        self, subject_id: str, subject: str, settings: RiskSettings, now: datetime
    ) -> Signal | None:
        spec = _active(settings, "bulk_destructive")
        if spec is None:
            return None
        window = _window(spec)
        long_window = max(window, spec.params.get("baseline_window", 86_400))
        counted = await self._hit(f"bd:{subject}", window, now)
        habit = await self._hit(f"bd:{subject}", long_window, now)
        baseline = habit.value * window / long_window  # the subject's mean per window
        limit = spec.params.get("limit", 20)
        threshold = max(limit, spec.params.get("baseline_factor", 3) * baseline)
        await self._warn(subject_id, "bulk_destructive", "subject", counted, threshold, now)
        if counted.value <= threshold:
            return None
        detail = (
            f"{counted.shown} PII updates or deletes in {_text(window)} (limit {limit}; "
            f"this subject's usual rate {baseline:.1f})"
        )
        return Signal("bulk_destructive", spec.weight, detail)

    async def _hit(self, name: str, window: int, now: datetime) -> Estimate:
        bucket, elapsed = _bucket(now, window)
        key = f"{self._prefix}{name}:{window}:"
        current = await self.counters.hit(
            key + str(bucket), window_seconds=_keep(now, window), now=now
        )
        previous = await self._previous(key + str(bucket - 1), elapsed, now)
        return _estimate(current, previous, elapsed, window)

    async def _peek(self, name: str, window: int, now: datetime) -> Estimate:
        bucket, elapsed = _bucket(now, window)
        key = f"{self._prefix}{name}:{window}:"
        current = await self.counters.peek(key + str(bucket), now)
        previous = await self._previous(key + str(bucket - 1), elapsed, now)
        return _estimate(current, previous, elapsed, window)

    async def _previous(self, key: str, elapsed: float, now: datetime) -> int:
        cached = self._closed.get(key)
        if cached is not None:
            return cached
        value = await self.counters.peek(key, now)
        if elapsed >= _SETTLE_SECONDS:
            self._closed[key] = value
            if len(self._closed) > _CLOSED_CACHE:
                self._closed.popitem(last=False)
        return value

    async def _warn(
        self,
        subject_id: str,
        signal: str,
        per: str,
        counted: Estimate,
        limit: float,
        now: datetime,
    ) -> None:
        if counted.value < WARN_AT * limit:
            return
        bucket, _ = _bucket(now, counted.window)
        once = f"{self._prefix}warn:{signal}:{per}:{self._digest('subject', subject_id)}:{bucket}"
        if await self.counters.hit(once, window_seconds=_keep(now, counted.window), now=now) != 1:
            return  # already warned in this window (on this node or another)
        previous = counted.previous
        trend = "steady"
        if counted.current != previous:
            trend = "rising" if counted.current > previous else "falling"
        await self.audit.record(
            APPROACHING_LIMIT,
            subject_id=subject_id,
            data={
                "signal": signal,
                "per": per,
                "count": counted.shown,
                "limit": math.ceil(limit),
                "window": counted.window,
                "previous": previous,
                "trend": trend,
            },
        )

    def _digest(self, kind: str, value: str) -> str:
        mac = hmac.new(self._key.reveal(), f"{kind}\x00{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]


def _active(settings: RiskSettings, name: str) -> SignalSettings | None:
    found = settings.signals.get(name)
    return found if found is not None and found.weight > 0 else None


def _window(spec: SignalSettings) -> int:
    return max(1, spec.params.get("window", 60))


def _bucket(now: datetime, window: int) -> tuple[int, float]:
    """The fixed window ``now`` falls in, and how far into it (seconds)."""
    stamp = now.timestamp()
    bucket = math.floor(stamp / window)
    return bucket, stamp - bucket * window


def _keep(now: datetime, window: int) -> float:
    """How long a counter of the current window must last: to the end of the next one, while
    it is the previous window of the estimate."""
    _, elapsed = _bucket(now, window)
    return 2 * window - elapsed


def _estimate(current: int, previous: int, elapsed: float, window: int) -> Estimate:
    share = max(0.0, 1.0 - elapsed / window)
    return Estimate(current, previous, current + previous * share, window)


def _text(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
