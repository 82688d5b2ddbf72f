"""Verifying the audit chain from the console: one verification at a time per node, in the
background, with its progress and its result.

The verification is ``AuditLog.verify`` (``audit/chain.py``'s ``ChainVerifier`` over one
snapshot of the store, read in batches in a reader thread, off the event loop), as
``piigate audit verify`` runs it. Each one that runs to the end is audited as ``audit_verified``
(who asked, ``ok``, the events checked, ``broken_at``: the first bad seq), never with any event's
contents.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from piigate.audit.chain import ChainReport
from piigate.audit.log import AuditLog
from piigate.clock import Clock
from piigate.errors import ServiceUnavailable

__all__ = ["VERIFIED_EVENT", "ChainCheck", "ChainChecks", "verified_data"]

log = logging.getLogger(__name__)

VERIFIED_EVENT: Final = "audit_verified"


@dataclass(slots=True)
class ChainCheck:
    """One verification run on this node. ``checked``: the seq of the last event checked,
    written by the store's reader thread as the scan goes."""

    by: str
    started_at: datetime
    total: int  # the head's seq when it started
    checked: int = 0
    finished_at: datetime | None = None
    report: ChainReport | None = None
    failure: str | None = None  # why it did not finish, or was not audited

    @property
    def running(self) -> bool:
        return self.finished_at is None

    def seen(self, seq: int) -> None:
        self.checked = seq
        if seq > self.total:  # appended between reading the head and the snapshot
            self.total = seq


def verified_data(report: ChainReport) -> dict[str, object]:
    """The ``audit_verified`` event's data: the verdict and where the chain breaks."""
    data: dict[str, object] = {
        "ok": report.ok,
        "count": report.count,
        "broken_at": report.first_bad_seq,
    }
    if not report.ok and report.reason:
        data["reason"] = report.reason  # names sequence numbers only
    return data


class ChainChecks:
    """This node's verifications: at most one runs; the latest is kept for the page."""

    def __init__(self, audit: AuditLog, clock: Clock) -> None:
        self.audit = audit
        self.clock = clock
        self.latest: ChainCheck | None = None
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()

    async def start(self, by: str) -> ChainCheck:
        """A new verification asked for by ``by``, or the one already running."""
        async with self._starting:
            if self.latest is not None and self.latest.running:
                return self.latest
            head = await self.audit.head()
            check = ChainCheck(by=by, started_at=self.clock.now(), total=head.seq)
            self.latest = check
            self._task = asyncio.create_task(self._run(check), name="piigate-audit-verify")
            return check

    async def settle(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the running verification (a small log's is done by
        then, so the page can show its result at once)."""
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=seconds)

    async def _run(self, check: ChainCheck) -> None:
        try:
            report = await self.audit.verify(progress=check.seen)
        except ServiceUnavailable:
            self._finish(check, failure="the store could not be read: nothing was verified")
            return
        except Exception:
            log.exception("audit_verify_failed")
            self._finish(check, failure="the verification failed: nothing was verified")
            return
        check.report = report
        try:
            await self.audit.record(VERIFIED_EVENT, subject_id=check.by, data=verified_data(report))
        except ServiceUnavailable:
            check.failure = "the result could not be written to the audit trail"
        self._finish(check)

    def _finish(self, check: ChainCheck, *, failure: str | None = None) -> None:
        if failure is not None:
            check.failure = failure
        check.finished_at = self.clock.now()
