"""Alerts: what the security team should look at, derived from committed audit events.

Pure. :func:`alert_for` reads one event and returns the alert it raises (an
:class:`AlertDraft`), or None. The rules:

- an ``alert`` event: ``push_denied`` (a push answered "this wasn't me"), ``reported_by_subject``
  (a person said an event of theirs was not them), and any other kind as ``other``;
- an ``approaching_limit`` event: a behaviour signal nearing its limit (the early warning);
- a ``decision`` event whose risk signals include ``impossible_travel`` or ``bulk_destructive``.

An alert names ids and names only: its summary is built from the event's ids, counts and names,
and any value that does not look like one is shown as ``?`` (events never carry PII, and this
keeps it so should one ever carry something unexpected).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from piigate.model import AuditEvent

__all__ = [
    "ALERT_ACKNOWLEDGED",
    "ALERT_RAISED",
    "Alert",
    "AlertDraft",
    "AlertKind",
    "Severity",
    "alert_for",
    "alert_json",
]

# The audit events the alert desk appends (never themselves a source of alerts).
ALERT_RAISED: Final = "alert_raised"
ALERT_ACKNOWLEDGED: Final = "alert_acknowledged"


class AlertKind(StrEnum):
    PUSH_DENIED = "push_denied"
    REPORTED_BY_SUBJECT = "reported_by_subject"
    IMPOSSIBLE_TRAVEL = "impossible_travel"
    BULK_DESTRUCTIVE = "bulk_destructive"
    APPROACHING_LIMIT = "approaching_limit"
    OTHER = "other"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


SEVERITY: Final[Mapping[AlertKind, Severity]] = {
    AlertKind.PUSH_DENIED: Severity.HIGH,
    AlertKind.REPORTED_BY_SUBJECT: Severity.HIGH,
    AlertKind.IMPOSSIBLE_TRAVEL: Severity.HIGH,
    AlertKind.BULK_DESTRUCTIVE: Severity.HIGH,
    AlertKind.APPROACHING_LIMIT: Severity.MEDIUM,
    AlertKind.OTHER: Severity.MEDIUM,
}
# Decision signals that raise an alert, the first present naming it.
_SIGNAL_KINDS: Final = (AlertKind.IMPOSSIBLE_TRAVEL, AlertKind.BULK_DESTRUCTIVE)
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,79}")
_MAX_SUMMARY = 240


@dataclass(frozen=True, slots=True)
class AlertDraft:
    """An alert before it is stored: what the event says."""

    kind: AlertKind
    severity: Severity
    subject_id: str | None
    at: datetime
    event_seq: int
    summary: str


@dataclass(frozen=True, slots=True)
class Alert:
    """A stored alert (``store/alerts.py``); open until someone acknowledges it."""

    id: str
    kind: AlertKind
    severity: Severity
    subject_id: str | None
    at: datetime
    event_seq: int
    summary: str
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.acknowledged_at is None


def alert_json(alert: Alert) -> dict[str, object]:
    """The alert as sinks and the API show it."""
    return {
        "id": alert.id,
        "kind": alert.kind.value,
        "severity": alert.severity.value,
        "subject": alert.subject_id,
        "at": alert.at.isoformat(),
        "event_seq": alert.event_seq,
        "summary": alert.summary,
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": _iso(alert.acknowledged_at),
    }


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def alert_for(event: AuditEvent) -> AlertDraft | None:
    """The alert ``event`` raises, or None. ``event`` must be committed (it has a seq)."""
    if event.seq is None:
        return None
    found: tuple[AlertKind, str] | None
    if event.type == "alert":
        found = _alert_event(event.data)
    elif event.type == "approaching_limit":
        found = (AlertKind.APPROACHING_LIMIT, _approaching(event.data))
    elif event.type == "decision":
        found = _decision(event.data)
    else:
        return None
    if found is None:
        return None
    kind, summary = found
    return AlertDraft(
        kind=kind,
        severity=SEVERITY[kind],
        subject_id=event.subject_id,
        at=event.at,
        event_seq=event.seq,
        summary=summary[:_MAX_SUMMARY],
    )


def _alert_event(data: Mapping[str, object]) -> tuple[AlertKind, str]:
    kind = data.get("kind")
    if kind == AlertKind.PUSH_DENIED:
        return AlertKind.PUSH_DENIED, (
            f"push {_name(data.get('push_id'))} denied on device {_name(data.get('factor_id'))}"
            f" (challenge {_name(data.get('challenge_id'))})"
        )
    if kind == AlertKind.REPORTED_BY_SUBJECT:
        return AlertKind.REPORTED_BY_SUBJECT, (
            f"the subject reported event #{_number(data.get('event_seq'))}"
            f" ({_name(data.get('event_type'))}) as not theirs"
        )
    return AlertKind.OTHER, f"alert of kind {_name(kind)}"


def _approaching(data: Mapping[str, object]) -> str:
    return (
        f"{_name(data.get('signal'))} at {_number(data.get('count'))} of"
        f" {_number(data.get('limit'))} in {_number(data.get('window'))} s"
        f" (per {_name(data.get('per'))}, trend {_name(data.get('trend'))})"
    )


def _decision(data: Mapping[str, object]) -> tuple[AlertKind, str] | None:
    risk = data.get("risk")
    signals = risk.get("signals") if isinstance(risk, Mapping) else None
    if not isinstance(signals, list):
        return None
    names = {s.get("name") for s in signals if isinstance(s, Mapping)}
    present = [kind for kind in _SIGNAL_KINDS if kind.value in names]
    if not present:
        return None
    score = risk.get("score") if isinstance(risk, Mapping) else None
    resource = data.get("resource")
    target = ""
    if isinstance(resource, Mapping):
        target = f" on {_name(resource.get('type'))}/{_name(resource.get('id'))}"
    return present[0], (
        f"{' and '.join(kind.value.replace('_', ' ') for kind in present)}:"
        f" {_name(data.get('action'))}{target} {_name(data.get('outcome'))}"
        f" (risk {_number(score)}, decision {_name(data.get('decision_id'))})"
    )


def _name(value: object) -> str:
    """An id or a name as it may be shown; anything else as ``?``."""
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value
    return "?"


def _number(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "?"
    return str(round(value, 2)) if isinstance(value, float) else str(value)
