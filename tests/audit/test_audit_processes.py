from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from piigate.audit import AuditLog
from piigate.clock import SystemClock
from piigate.store import Database

WORKER = Path(__file__).with_name("_append_worker.py")


async def test_two_processes_append_one_valid_chain(database_url: str) -> None:
    db = Database.open(database_url)
    await db.upgrade()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            database_url,
            f"proc{i}",
            "200",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(2)
    ]
    try:
        for proc in procs:  # both connected before either starts appending
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        outputs = [await asyncio.wait_for(proc.communicate(), 30) for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0]
        per_process = [sorted(int(s) for s in out.split()) for out, _ in outputs]
        assert sorted(per_process[0] + per_process[1]) == list(range(1, 401))
        # Interleaved, not one process after the other: the lock really was contended.
        assert per_process[0][-1] > per_process[1][0] and per_process[1][-1] > per_process[0][0]

        log = AuditLog(db, SystemClock())
        report = await log.verify()
        assert (report.ok, report.count) == (True, 400), report
        events = await log.list_events(limit=1000)
        assert {e.subject_id for e in events} == {"proc0", "proc1"}
        assert len({(e.subject_id, e.data["w"], e.data["i"]) for e in events}) == 400
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await db.close()
