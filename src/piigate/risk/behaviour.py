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

What does not change from request to request is worked out once: the policy's limits and windows
(``risk.limits``, read again when a reload brings new settings), each subject's keyed hash and
counter keys (:class:`_Tracks`), each address's counter key and each record's keyed hash (the
newest of each kept, ``memo.Bounded``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from piigate.crypto.secret import Secret
from piigate.memo import Bounded
from piigate.model import Action, Resource, Signal
from piigate.policy.model import RiskSettings
from piigate.ports import AuditRecorder, RateCounters
from piigate.risk.limits import Rule, Rules, read_rules
from piigate.risk.windows import Estimate, Sliding, Track, Windows

__all__ = ["APPROACHING_LIMIT", "WARN_AT", "Behaviour"]

APPROACHING_LIMIT: Final = "approaching_limit"
WARN_AT: Final = 0.8
_READS: Final = frozenset({Action.READ, Action.EXPORT})
_WRITES: Final = frozenset({Action.UPDATE, Action.DELETE})
_SUBJECTS: Final = 10_000  # subjects whose counter keys are kept (about 1 kB each)
_ADDRESSES: Final = 10_000  # client addresses whose velocity counter key is kept
_RECORDS: Final = 16_384  # records whose keyed hash is kept


@dataclass(frozen=True, slots=True, eq=False)
class _Tracks:
    """A subject's sliding counters under one policy's rules (None: that signal is off)."""

    rules: Rules
    digest: str  # the subject's keyed hash: what counter keys and warnings hold of them
    velocity: Track | None
    failed: Track | None
    bulk: Track | None
    habit: Track | None  # the same counter as ``bulk``, over the habit's window
    distinct: Track | None


@dataclass(slots=True)
class _Plan:
    """What one request counts, by signal."""

    velocity: Sliding | None = None
    by_ip: Sliding | None = None
    failed: Sliding | None = None
    bulk: Sliding | None = None
    habit: Sliding | None = None
    distinct: Sliding | None = None
    # The record's first read in the window, ``(name, window)``: it counts ``distinct``, once.
    record: tuple[str, int] | None = None
    counters: list[Sliding] = field(default_factory=list)  # the above, in the batch's order

    def add(self, counter: Sliding) -> Sliding:
        self.counters.append(counter)
        return counter

    def plain(self) -> tuple[tuple[str, int], ...]:
        return () if self.record is None else (self.record,)


@dataclass(frozen=True, slots=True)
class _Due:
    """An early warning to give: a count that reached :data:`WARN_AT` of its limit."""

    signal: str
    per: str
    counted: Estimate
    limit: float


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
        self._rules: Rules | None = None
        self._subjects = Bounded[str, _Tracks](_SUBJECTS)
        self._addresses = Bounded[str, Track](_ADDRESSES)
        self._records = Bounded[str, str](_RECORDS)

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
        mine = self._tracks(subject_id, self._rules_of(settings))
        plan = self._plan(mine, ip_key=ip_key, action=action, pii=pii, resource=resource, rows=rows)
        await self.windows.count(plan.counters, now=now, plain=plan.plain())
        rules = mine.rules
        due: list[_Due] = []  # early warnings, given in this order once the signals are known
        found = (
            _velocity(rules.velocity, plan, due),
            _failed(rules.failed, plan),
            _bulk(rules.bulk, plan, due),
            _enumeration(rules.enumeration, plan, due),
        )
        for warning in due:
            await self._warn(subject_id, mine.digest, warning, now)
        return tuple(s for s in found if s is not None)

    async def failed_stepup(
        self, subject_id: str, *, settings: RiskSettings, now: datetime
    ) -> None:
        """Count a failed step-up verification of the subject's."""
        mine = self._tracks(subject_id, self._rules_of(settings))
        rule = mine.rules.failed
        if rule is None or mine.failed is None:
            return
        counter = Sliding(mine.failed, hit=True)
        await self.windows.count([counter], now=now)
        due: list[_Due] = []
        _approaching(due, "failed_stepups", "subject", counter, rule.limit)
        for warning in due:
            await self._warn(subject_id, mine.digest, warning, now)

    def _plan(
        self,
        mine: _Tracks,
        *,
        ip_key: str | None,
        action: Action,
        pii: bool,
        resource: Resource,
        rows: int | None,
    ) -> _Plan:
        amount = 1 if rows is None else max(1, rows)
        plan = _Plan()
        if mine.velocity is not None:
            plan.velocity = plan.add(Sliding(mine.velocity, hit=True))
            if ip_key is not None:
                by_ip = self._address(ip_key, mine.velocity.window)
                plan.by_ip = plan.add(Sliding(by_ip, hit=True))
        if mine.failed is not None:
            plan.failed = plan.add(Sliding(mine.failed, hit=False))
        if mine.bulk is not None and mine.habit is not None and pii and action in _WRITES:
            plan.bulk = plan.add(Sliding(mine.bulk, hit=True, amount=amount))
            plan.habit = plan.add(Sliding(mine.habit, hit=True, amount=amount))
        reads = pii and action in _READS and (resource.id is not None or rows is not None)
        if mine.distinct is not None and reads:
            if rows is not None and resource.id is None:
                plan.distinct = plan.add(Sliding(mine.distinct, hit=True, amount=amount))
            else:
                # The record's first read in the window (the plain hit) counts it, once.
                seen = f"pe:seen:{mine.digest}:{self._record(resource)}"
                plan.record = (seen, mine.distinct.window)
                plan.distinct = plan.add(Sliding(mine.distinct, hit=True, if_first=0))
        return plan

    async def _warn(self, subject_id: str, digest: str, due: _Due, now: datetime) -> None:
        if self.audit is None:
            return
        counted = due.counted
        once = f"warn:{due.signal}:{due.per}:{digest}"
        if not await self.windows.once(once, counted.window, now=now):
            return  # already warned in this window (on this node or another)
        await self.audit.record(
            APPROACHING_LIMIT,
            subject_id=subject_id,
            data={
                "signal": due.signal,
                "per": due.per,
                "count": counted.shown,
                "limit": math.ceil(due.limit),
                "window": counted.window,
                "previous": counted.previous,
                "trend": counted.trend,
            },
        )

    def _rules_of(self, settings: RiskSettings) -> Rules:
        """The rules of ``settings``: read again only when the policy brings new settings."""
        rules = self._rules
        if rules is None or rules.settings is not settings:
            rules = self._rules = read_rules(settings)
        return rules

    def _tracks(self, subject_id: str, rules: Rules) -> _Tracks:
        """The subject's counters under ``rules``: built on the subject's first request (and
        again after a reload)."""
        found = self._subjects.get(subject_id)
        if found is not None and found.rules is rules:
            return found
        digest = self._digest("subject", subject_id) if found is None else found.digest
        found = _Tracks(
            rules,
            digest,
            velocity=self._track(f"v:s:{digest}", rules.velocity),
            failed=self._track(f"fs:{digest}", rules.failed),
            bulk=self._track(f"bd:{digest}", rules.bulk),
            habit=None
            if rules.bulk is None
            else self.windows.track(f"bd:{digest}", rules.bulk.habit_window),
            distinct=self._track(f"pe:{digest}", rules.enumeration),
        )
        self._subjects.put(subject_id, found)
        return found

    def _track(self, name: str, rule: Rule | None) -> Track | None:
        return None if rule is None else self.windows.track(name, rule.window)

    def _address(self, ip_key: str, window: int) -> Track:
        """The velocity counter of a client address (its keyed hash) over ``window``."""
        found = self._addresses.get(ip_key)
        if found is None or found.window != window:
            found = self.windows.track(f"v:ip:{ip_key}", window)
            self._addresses.put(ip_key, found)
        return found

    def _record(self, resource: Resource) -> str:
        """The keyed hash of a record (its type and id)."""
        value = f"{resource.type or ''}\x00{resource.id}"
        found = self._records.get(value)
        if found is None:
            found = self._digest("record", value)
            self._records.put(value, found)
        return found

    def _digest(self, kind: str, value: str) -> str:
        mac = hmac.digest(self._key.reveal(), f"{kind}\x00{value}".encode(), hashlib.sha256)
        return mac.hex()[:32]


def _velocity(rule: Rule | None, plan: _Plan, due: list[_Due]) -> Signal | None:
    if rule is None or plan.velocity is None:
        return None
    details = []
    counted = plan.velocity
    _approaching(due, "velocity", "subject", counted, rule.limit)
    if counted.value > rule.limit:
        shown = counted.estimate().shown
        details.append(f"{shown} requests in {_text(counted.window)} (limit {rule.limit})")
    by_ip = plan.by_ip
    if by_ip is not None:
        _approaching(due, "velocity", "ip", by_ip, rule.ip_limit)
        if by_ip.value > rule.ip_limit:
            details.append(
                f"{by_ip.estimate().shown} requests from this address in {_text(by_ip.window)} "
                f"(limit {rule.ip_limit})"
            )
    return Signal("velocity", rule.weight, "; ".join(details)) if details else None


def _failed(rule: Rule | None, plan: _Plan) -> Signal | None:
    if rule is None or plan.failed is None:
        return None
    counted = plan.failed
    if counted.value < rule.limit:
        return None
    detail = (
        f"{counted.estimate().shown} failed step-ups in {_text(counted.window)} "
        f"(limit {rule.limit})"
    )
    return Signal("failed_stepups", rule.weight, detail)


def _enumeration(rule: Rule | None, plan: _Plan, due: list[_Due]) -> Signal | None:
    if rule is None or plan.distinct is None:
        return None
    counted = plan.distinct
    _approaching(due, "pii_enumeration", "subject", counted, rule.limit)
    if counted.value <= rule.limit:
        return None
    detail = (
        f"{counted.estimate().shown} distinct records with PII read in {_text(counted.window)} "
        f"(limit {rule.limit})"
    )
    return Signal("pii_enumeration", rule.weight, detail)


def _bulk(rule: Rule | None, plan: _Plan, due: list[_Due]) -> Signal | None:
    if rule is None or plan.bulk is None or plan.habit is None:
        return None
    counted, habit = plan.bulk, plan.habit
    baseline = habit.value * counted.window / habit.window  # the subject's mean per window
    threshold = max(rule.limit, rule.baseline_factor * baseline)
    _approaching(due, "bulk_destructive", "subject", counted, threshold)
    if counted.value <= threshold:
        return None
    detail = (
        f"{counted.estimate().shown} PII updates or deletes in {_text(counted.window)} "
        f"(limit {rule.limit}; this subject's usual rate {baseline:.1f})"
    )
    return Signal("bulk_destructive", rule.weight, detail)


def _approaching(due: list[_Due], signal: str, per: str, counter: Sliding, limit: float) -> None:
    """Add the early warning of ``counter`` to ``due`` when it reached :data:`WARN_AT` of
    ``limit`` (whether it was already given in this window is the counters' to say)."""
    if counter.value >= WARN_AT * limit:
        due.append(_Due(signal, per, counter.estimate(), limit))


def _text(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
