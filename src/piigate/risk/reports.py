"""A person's report that one of their own audit events was not them ("this wasn't me").

A report does two things, in this order:

1. it keeps the evidence of the ``reported_activity`` risk signal (:mod:`piigate.risk.recorded`)
   in the store, where every node reads it: a ``ceremonies`` row of purpose
   ``reported_activity`` for the subject, kept for the signal's window. Its id is derived from
   the event's sequence number, so reporting the same event again adds nothing;
2. it appends an ``alert`` event ``{"kind": "reported_by_subject", "event_seq": N,
   "event_type": "..."}``, from which the security team's alerts are derived, and which this
   node's risk engine counts at once (from the event bus).

The evidence is written first: when the alert reaches the bus, a store read finds it too.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from piigate.errors import Conflict, NotFound
from piigate.factors import CeremonyPurpose
from piigate.model import AuditEvent
from piigate.policy.holder import PolicyHolder
from piigate.ports import AuditRecorder
from piigate.risk.recorded import REPORTED_ACTIVITY, REPORTED_ACTIVITY_WINDOW, REPORTED_BY_SUBJECT

__all__ = ["ActivityReports", "ReportStore", "is_reportable"]

_ALERT: Final = "alert"


class StoredReport(Protocol):
    @property
    def data(self) -> dict[str, Any]: ...


class ReportStore(Protocol):
    """``store.CeremonyStore.open_ceremony_once``."""

    async def open_ceremony_once(
        self,
        *,
        id: str,
        subject_id: str,
        purpose: str,
        now: datetime,
        expires_at: datetime,
        secret: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> StoredReport: ...


def is_reportable(event: AuditEvent) -> bool:
    """Whether a person may report ``event`` as not theirs: any event of theirs but a report
    itself."""
    return not (event.type == _ALERT and event.data.get("kind") == REPORTED_BY_SUBJECT)


class ActivityReports:
    def __init__(
        self,
        *,
        store: ReportStore,
        audit: AuditRecorder,
        policy: PolicyHolder,
        marks: Callable[[], str] = lambda: secrets.token_hex(8),
    ) -> None:
        self.store = store
        self.audit = audit
        self.policy = policy
        self.marks = marks  # tells one request's stored report from another's

    async def report(self, event: AuditEvent, *, subject_id: str, now: datetime) -> bool:
        """Record that ``subject_id`` did not do ``event``: True for a new report, False when
        the event was reported already (nothing more is recorded). ``NotFound`` unless the
        event is the subject's own; ``Conflict`` for a report itself."""
        if event.seq is None or event.subject_id != subject_id:
            raise NotFound("no such event")
        if not is_reportable(event):
            raise Conflict("this is your own report")
        mark = self.marks()
        stored = await self.store.open_ceremony_once(
            id=f"cer_rep_{event.seq}",
            subject_id=subject_id,
            purpose=CeremonyPurpose.REPORTED_ACTIVITY.value,
            now=now,
            expires_at=now + timedelta(seconds=self._window()),
            data={"event_seq": event.seq, "event_type": event.type, "mark": mark},
        )
        if stored.data.get("mark") != mark:
            return False
        await self.audit.record(
            _ALERT,
            subject_id=subject_id,
            data={"kind": REPORTED_BY_SUBJECT, "event_seq": event.seq, "event_type": event.type},
        )
        return True

    def _window(self) -> int:
        """How long the report raises the subject's risk: the policy's window for the signal."""
        compiled = self.policy.current
        settings = None if compiled is None else compiled.policy.risk.signals.get(REPORTED_ACTIVITY)
        if settings is None:
            return REPORTED_ACTIVITY_WINDOW
        return settings.params.get("window", REPORTED_ACTIVITY_WINDOW)
