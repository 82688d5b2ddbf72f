"""What the alert desk's catch-ups cost, and what one read of the recorded risk signals costs
against one read per signal.

Run: ``.venv/bin/python bench/catchup.py [--quick] [--database-url URL]``. One JSON object per
line on stdout (progress on stderr); see docs/BENCHMARKS.md. Nothing here asserts on time.

1. Catch-ups (``audit/catchup.py``). A fresh store (SQLite in a temporary directory, or the
   PostgreSQL database given, which must be empty) receives N decision events shaped as
   ``Engine.decide`` audits them (one in 50 carrying ``bulk_destructive``, so alerts are
   raised), 32 at a time through the audit log's group commit: the process's CPU per event
   committed is the baseline, what every decision costs a node anyway. Then catch-ups over
   those N events, alternating, the watermark removed before each:
   - ``own``: this node's watcher examined them all (``CatchUp.note``), as on a single node:
     only the seqs are read;
   - ``unseen``: nobody here examined them (another node's, or committed while no node ran):
     each event is read and examined again (its alert exists already: nothing is raised).
   The process's CPU per event of each (every thread: the store's readers too).
2. The recorded risk signals (``risk/recorded.py``): one ``recent_ceremonies`` for both signals
   against a ``list_ceremonies`` per signal with the same filters (how the store was read per
   refresh before), alternating, on a store holding 2,000 push ceremonies of the last hour (one
   in a hundred denied) and 20 reported events of the last day (40 rows of evidence); wall time
   p50 per refresh and CPU per refresh.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from _common import emit, logs_to_stderr, note, summary
from piigate.audit import AuditLog, EventBus
from piigate.audit.catchup import CatchUp
from piigate.audit.desk import SOURCE_TYPES, AlertDesk
from piigate.clock import FixedClock
from piigate.model import AuditEvent
from piigate.risk.recorded import RECORDED_SIGNALS
from piigate.store import Database, Store
from piigate.store.alerts import AlertStore
from piigate.store.tables import alert_watermark

BENCH = "catchup"
NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
CONCURRENCY = 32


def decision(n: int) -> AuditEvent:
    signals = [{"name": "new_device", "weight": 20, "detail": "first seen"}]
    if n % 50 == 0:
        signals.append({"name": "bulk_destructive", "weight": 60, "detail": "12 deletes in 60 s"})
    data: dict[str, Any] = {
        "decision_id": f"dec_{n:012d}",
        "outcome": "step_up",
        "rules": ["ssn-update", "risk-at-least-40"],
        "action": "delete" if n % 50 == 0 else "update",
        "pii": ["ssn"],
        "mask": [],
        "resource": {"type": "customer", "id": str(n % 997)},
        "risk": {"score": 45, "signals": signals},
        "policy": "sha256:" + "ab" * 32,
        "required": {"level": "aal2", "max_age": 300},
        "challenge_id": f"chl_{n:012d}",
        "session_id": f"ses_{n % 300:08d}",
    }
    return AuditEvent("decision", NOW + timedelta(milliseconds=n), f"user{n % 300}", data)


async def commit(audit: AuditLog, count: int) -> float:
    """Commit ``count`` decisions, ``CONCURRENCY`` at a time; the process's CPU per event (µs)."""
    started = time.process_time()
    for first in range(0, count, CONCURRENCY):
        batch = range(first, min(first + CONCURRENCY, count))
        await asyncio.gather(*(audit.append(decision(n)) for n in batch))
    return (time.process_time() - started) * 1e6 / count


async def catch_up(desk: AlertDesk, db: Database, head: int, *, own: bool) -> float:
    """One catch-up through ``head`` from no watermark; the process's CPU per event (µs)."""
    await db.write(lambda conn: conn.execute(delete(alert_watermark)))
    sweep = CatchUp(rows=desk.rows, events=desk.audit, clock=desk.clock, types=SOURCE_TYPES)
    if own:
        for seq in range(1, head + 1):
            sweep.note(seq)

    async def examine(event: AuditEvent) -> bool:
        return await desk.raise_from(event) is not None

    started = time.process_time()
    report = await sweep.run(head, examine)
    assert report.through == head and report.skipped == 0, report
    return (time.process_time() - started) * 1e6 / head


async def catch_ups(url: str, count: int, rounds: int) -> None:
    db = Database.open(url)
    await db.upgrade()
    clock = FixedClock(NOW)
    audit = AuditLog(db, clock, EventBus())
    try:
        if (await audit.head()).seq:
            raise SystemExit("the store must be empty")
        note(f"committing {count} decisions")
        per_commit = await commit(audit, count)
        head = (await audit.head()).seq
        desk = AlertDesk(rows=AlertStore(db), audit=audit, bus=EventBus(), clock=clock)
        await catch_up(desk, db, head, own=False)  # warm-up: raises the alerts
        raised = len(await desk.recent(limit=500))
        cpu: dict[bool, list[float]] = {True: [], False: []}
        for number in range(rounds):
            for own in (True, False) if number % 2 == 0 else (False, True):
                cpu[own].append(await catch_up(desk, db, head, own=own))
                note(f"round {number + 1} {'own' if own else 'unseen'}: {cpu[own][-1]:.1f} us")
        baseline_is = "the process's CPU per decision committed (audit group commit), same run"
        extra = {"events": count, "alerts": raised, "backend": db.dialect}
        for own, name in ((True, "own"), (False, "unseen")):
            value = sum(cpu[own]) / len(cpu[own])
            emit(BENCH, f"cpu_us_per_event_{name}", value, "us", per_commit,
                 baseline_is=baseline_is, **extra)  # fmt: skip
    finally:
        await audit.stop()
        await db.close()


async def recorded_reads(url: str, reps: int) -> None:
    db = Database.open(url)
    store = Store(db)
    try:
        for n in range(2000):
            at = NOW - timedelta(minutes=n % 55)
            await store.open_ceremony(
                id=f"cer_push_{n}", subject_id=f"user{n % 300}", purpose="push", now=at,
                expires_at=at + timedelta(minutes=2),
            )  # fmt: skip
            if n % 100 == 0:
                await store.close_ceremony(f"cer_push_{n}", new="denied", now=at)
        for n in range(20):
            at = NOW - timedelta(hours=n % 23)
            await store.open_ceremony(
                id=f"cer_rep_{n}", subject_id=f"user{n % 300}", purpose="reported_activity",
                now=at, expires_at=at + timedelta(days=1),
            )  # fmt: skip
        since = {s: NOW - timedelta(seconds=s.default_window) for s in RECORDED_SIGNALS}

        async def one_read() -> int:
            rows = await store.recent_ceremonies(
                since={str(s.purpose): at for s, at in since.items()},
                states={str(s.purpose): s.states for s in RECORDED_SIGNALS if s.states},
                limit=100_000,
            )
            return len(rows)

        async def per_signal() -> int:
            found = 0
            for s, at in since.items():
                rows = await store.list_ceremonies(
                    purposes=[s.purpose], states=s.states, since=at, limit=100_000
                )
                found += len(rows)
            return found

        assert await one_read() == await per_signal() == 40
        wall: dict[str, list[int]] = {"one": [], "per_signal": []}
        cpu: dict[str, float] = {"one": 0.0, "per_signal": 0.0}
        for rep in range(reps):
            for name in ("one", "per_signal") if rep % 2 == 0 else ("per_signal", "one"):
                read = one_read if name == "one" else per_signal
                started, cpu_started = time.perf_counter_ns(), time.process_time()
                await read()
                wall[name].append(time.perf_counter_ns() - started)
                cpu[name] += time.process_time() - cpu_started
        one, each = summary(wall["one"]), summary(wall["per_signal"])
        baseline_is = "a list_ceremonies per recorded signal (2), same filters, same run"
        extra = {"rows": 40, "reps": reps, "backend": db.dialect}
        emit(BENCH, "recorded_refresh_p50_us", one["p50"], "us", each["p50"],
             baseline_is=baseline_is, **extra)  # fmt: skip
        emit(BENCH, "recorded_refresh_cpu_us", cpu["one"] * 1e6 / reps, "us",
             cpu["per_signal"] * 1e6 / reps, baseline_is=baseline_is, **extra)  # fmt: skip
    finally:
        await db.close()


async def run(args: argparse.Namespace) -> None:
    count, rounds, reps = (5_000, 2, 100) if args.quick else (20_000, 6, 400)
    with tempfile.TemporaryDirectory(prefix="piigate-bench-catchup-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'piigate.db'}"
        await catch_ups(url, count, rounds)
        await recorded_reads(url, reps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run with fewer samples")
    parser.add_argument("--database-url", help="an empty PostgreSQL database to use instead")
    args = parser.parse_args()
    logs_to_stderr()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
