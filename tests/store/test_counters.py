from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from piigate.store import Database, SqlCounters

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WORKER = Path(__file__).with_name("_counter_worker.py")


async def test_fixed_window(db: Database) -> None:
    counters = SqlCounters(db)
    assert await counters.peek("k", T0) == 0
    assert await counters.hit("k", window_seconds=60, now=T0) == 1
    assert await counters.hit("k", window_seconds=60, now=T0.replace(second=30), amount=3) == 4
    assert await counters.peek("k", T0.replace(second=59)) == 4
    assert await counters.active_until("k", T0.replace(second=59)) == T0.replace(minute=1)
    assert await counters.active_until("k", T0.replace(minute=1)) is None
    assert await counters.active_until("never", T0) is None
    # The window ends 60 s after its first hit; the next hit starts a new one.
    assert await counters.peek("k", T0.replace(minute=1)) == 0
    assert await counters.hit("k", window_seconds=60, now=T0.replace(minute=1)) == 1
    assert await counters.hit("other", window_seconds=60, now=T0) == 1
    await counters.reset("k")
    assert await counters.peek("k", T0.replace(minute=1)) == 0
    assert await counters.purge_counters(T0.replace(minute=5)) == 1


async def test_hundred_concurrent_hits_lose_nothing(db: Database) -> None:
    counters = SqlCounters(db)
    results = await asyncio.gather(
        *(counters.hit("burst", window_seconds=60, now=T0) for _ in range(100))
    )
    assert sorted(results) == list(range(1, 101))
    assert await counters.peek("burst", T0) == 100


async def test_two_processes_share_one_count(database_url: str) -> None:
    db = Database.open(database_url)
    try:
        await db.upgrade()
    finally:
        await db.close()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            database_url,
            "150",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for proc in procs:  # both connected before either starts: real overlap
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    outputs = [await asyncio.wait_for(proc.communicate(), 30) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    seen = sorted(int(v) for out, _ in outputs for v in out.split())
    assert seen == list(range(1, 301))  # every hit got its own count: none lost or doubled
    db = Database.open(database_url)
    try:
        assert await SqlCounters(db).peek("shared", T0) == 300
    finally:
        await db.close()
