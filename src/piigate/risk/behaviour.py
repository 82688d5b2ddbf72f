"""Behaviour signals: what a subject does, counted over sliding windows in the nodes' shared
counters (``ports.RateCounters``: this process's memory, the SQL store, or Redis).

- ``velocity``: requests (every decision, the HTTP gateway's included) per window, per subject
  (``limit``) and per client address (``ip_limit``); fires above either limit.
- ``pii_enumeration``: distinct records (resource type and id) whose PII the subject read or
  exported in the window; fires above ``distinct_records``. A request for many rows at once (a
  database statement, ``rows``) counts each of its rows as a record.
- ``bulk_destructive``: PII updates and deletes per window (a statement's rows each count);
  fires above ``limit`` *and* above
  ``baseline_factor`` times the subject's own rate over ``baseline_window`` (so a subject whose
  work is bulk updates is judged against their habit, and one who suddenly deletes everything
  is caught either way).
- ``failed_stepups``: failed step-up verifications in the window (``RiskFeed.failed_stepup``);
  fires at ``limit``.

Windows slide (``risk.windows``); what one request counts goes to the counters in one batch
(one Redis round trip; a record's first read in the window is counted once). Counter keys hold
keyed hashes only (subject, address, record), never the values. Early warning: when an estimate
reaches :data:`WARN_AT` of its limit, one ``approaching_limit`` audit event per subject, signal
and window (shared counters make it one across the nodes) names the signal, the count, the limit,
the window and the trend against the previous window -- before the signal fires, and never
with an address. A counter that fails raises: the engine then scores the request as highest
risk.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from piigate.crypto.secret import Secret
from piigate.model import Action, Resource, Signal
from piigate.policy.model import RiskSettings, SignalSettings
from piigate.ports import AuditRecorder, RateCounters
from piigate.risk.windows import Estimate, Sliding, Windows

__all__ = ["APPROACHING_LIMIT", "WARN_AT", "Behaviour"]

APPROACHING_LIMIT: Final = "approaching_limit"
WARN_AT: Final = 0.8
_READS: Final = frozenset({Action.READ, Action.EXPORT})
_WRITES: Final = frozenset({Action.UPDATE, Action.DELETE})
_SUBJECTS: Final = 65_536  # subjects whose keyed hash is kept


@dataclass(slots=True)
class _Plan:
    """What one request counts, by signal."""

    velocity: Sliding | None = None
    by_ip: Sliding | None = None
    failed: Sliding | None = None
    bulk: Sliding | None = None
    habit: Sliding | None = None
    distinct: Sliding | None = None

    def counters(self) -> list[Sliding]:
        found = (self.velocity, self.by_ip, self.failed, self.bulk, self.habit, self.distinct)
        return [c for c in found if c is not None]


class Behaviour:
    def __init__(
        self,
        counters: RateCounters,
        audit: AuditRecorder | None,
        *,
        key: Secret[bytes],
        prefix: str = "risk:",
    ) -> None:
        """``audit`` None: no early warnings (``risk eval``)."""
        self.windows = Windows(counters, prefix=prefix)
        self.audit = audit
        self._key = key
        self._subjects: dict[str, str] = {}

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
        rows: int | None = None,
    ) -> tuple[Signal, ...]:
        """Count this request and return the behaviour signals that fire for it. ``rows``: how
        many rows it reads or changes (a database statement), each counted."""
        amount = 1 if rows is None else max(1, rows)
        subject = self._subject(subject_id)
        plan, spec = _Plan(), settings.signals
        velocity = _active(spec, "velocity")
        if velocity is not None:
            plan.velocity = Sliding(f"v:s:{subject}", _window(velocity), hit=True)
            if ip_key is not None:
                plan.by_ip = Sliding(f"v:ip:{ip_key}", _window(velocity), hit=True)
        failed = _active(spec, "failed_stepups")
        if failed is not None:
            plan.failed = Sliding(f"fs:{subject}", _window(failed), hit=False)
        bulk = _active(spec, "bulk_destructive") if pii and action in _WRITES else None
        if bulk is not None:
            plan.bulk = Sliding(f"bd:{subject}", _window(bulk), hit=True, amount=amount)
            habit = max(_window(bulk), bulk.params.get("baseline_window", 86_400))
            plan.habit = Sliding(f"bd:{subject}", habit, hit=True, amount=amount)
        reads = pii and action in _READS and (resource.id is not None or rows is not None)
        enumeration = _active(spec, "pii_enumeration") if reads else None
        plain: list[tuple[str, int]] = []
        if enumeration is not None and rows is not None and resource.id is None:
            window = _window(enumeration)
            plan.distinct = Sliding(f"pe:{subject}", window, hit=True, amount=amount)
        elif enumeration is not None:
            # The record's first read in the window (the plain hit) counts it, once.
            record = self._digest("record", f"{resource.type or ''}\x00{resource.id}")
            plain.append((f"pe:seen:{subject}:{record}", _window(enumeration)))
            plan.distinct = Sliding(f"pe:{subject}", _window(enumeration), hit=True, if_first=0)
        await self.windows.count(plan.counters(), now=now, plain=plain)
        found = [
            await self._velocity(subject_id, plan, velocity, now),
            await self._failed(subject_id, plan, failed, now),
            await self._bulk(subject_id, plan, bulk, now),
            await self._enumeration(subject_id, plan, enumeration, now),
        ]
        return tuple(s for s in found if s is not None)

    async def failed_stepup(
        self, subject_id: str, *, settings: RiskSettings, now: datetime
    ) -> None:
        """Count a failed step-up verification of the subject's."""
        spec = _active(settings.signals, "failed_stepups")
        if spec is None:
            return
        counter = Sliding(f"fs:{self._subject(subject_id)}", _window(spec), hit=True)
        await self.windows.count([counter], now=now)
        limit = spec.params.get("limit", 3)
        await self._warn(subject_id, "failed_stepups", "subject", counter.estimate(), limit, now)

    async def _velocity(
        self, subject_id: str, plan: _Plan, spec: SignalSettings | None, now: datetime
    ) -> Signal | None:
        if spec is None or plan.velocity is None:
            return None
        details = []
        counted = plan.velocity.estimate()
        limit = spec.params.get("limit", 60)
        await self._warn(subject_id, "velocity", "subject", counted, limit, now)
        if counted.value > limit:
            details.append(f"{counted.shown} requests in {_text(counted.window)} (limit {limit})")
        if plan.by_ip is not None:
            by_ip, ip_limit = plan.by_ip.estimate(), spec.params.get("ip_limit", 300)
            await self._warn(subject_id, "velocity", "ip", by_ip, ip_limit, now)
            if by_ip.value > ip_limit:
                details.append(
                    f"{by_ip.shown} requests from this address in {_text(by_ip.window)} "
                    f"(limit {ip_limit})"
                )
        return Signal("velocity", spec.weight, "; ".join(details)) if details else None

    async def _failed(
        self, subject_id: str, plan: _Plan, spec: SignalSettings | None, now: datetime
    ) -> Signal | None:
        if spec is None or plan.failed is None:
            return None
        counted, limit = plan.failed.estimate(), spec.params.get("limit", 3)
        if counted.value < limit:
            return None
        detail = f"{counted.shown} failed step-ups in {_text(counted.window)} (limit {limit})"
        return Signal("failed_stepups", spec.weight, detail)

    async def _enumeration(
        self, subject_id: str, plan: _Plan, spec: SignalSettings | None, now: datetime
    ) -> Signal | None:
        if spec is None or plan.distinct is None:
            return None
        counted, limit = plan.distinct.estimate(), spec.params.get("distinct_records", 50)
        await self._warn(subject_id, "pii_enumeration", "subject", counted, limit, now)
        if counted.value <= limit:
            return None
        detail = (
            f"{counted.shown} distinct records with PII read in {_text(counted.window)} "
            f"(limit {limit})"
        )
        return Signal("pii_enumeration", spec.weight, detail)

    async def _bulk(
        self, subject_id: str, plan: _Plan, spec: SignalSettings | None, now: datetime
    ) -> Signal | None:
        if spec is None or plan.bulk is None or plan.habit is None:
            return None
        counted, habit = plan.bulk.estimate(), plan.habit.estimate()
        baseline = habit.value * counted.window / habit.window  # the subject's mean per window
        limit = spec.params.get("limit", 20)
        threshold = max(limit, spec.params.get("baseline_factor", 3) * baseline)
        await self._warn(subject_id, "bulk_destructive", "subject", counted, threshold, now)
        if counted.value <= threshold:
            return None
        detail = (
            f"{counted.shown} PII updates or deletes in {_text(counted.window)} (limit {limit}; "
            f"this subject's usual rate {baseline:.1f})"
        )
        return Signal("bulk_destructive", spec.weight, detail)

    async def _warn(
        self,
        subject_id: str,
        signal: str,
        per: str,
        counted: Estimate,
        limit: float,
        now: datetime,
    ) -> None:
        if self.audit is None or counted.value < WARN_AT * limit:
            return
        once = f"warn:{signal}:{per}:{self._subject(subject_id)}"
        if not await self.windows.once(once, counted.window, now=now):
            return  # already warned in this window (on this node or another)
        await self.audit.record(
            APPROACHING_LIMIT,
            subject_id=subject_id,
            data={
                "signal": signal,
                "per": per,
                "count": counted.shown,
                "limit": math.ceil(limit),
                "window": counted.window,
                "previous": counted.previous,
                "trend": counted.trend,
            },
        )

    def _subject(self, subject_id: str) -> str:
        found = self._subjects.get(subject_id)
        if found is None:
            found = self._digest("subject", subject_id)
            if len(self._subjects) >= _SUBJECTS:
                self._subjects.clear()
            self._subjects[subject_id] = found
        return found

    def _digest(self, kind: str, value: str) -> str:
        mac = hmac.new(self._key.reveal(), f"{kind}\x00{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]


def _active(signals: Mapping[str, SignalSettings], name: str) -> SignalSettings | None:
    found = signals.get(name)
    return found if found is not None and found.weight > 0 else None


def _window(spec: SignalSettings) -> int:
    return max(1, spec.params.get("window", 60))


def _text(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
