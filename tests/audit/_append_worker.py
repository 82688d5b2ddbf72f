"""Appends N audit events (from concurrent tasks) once told to go; prints the seqs it got."""

from __future__ import annotations

import asyncio
import sys

from piigate.audit import AuditLog
from piigate.clock import SystemClock
from piigate.store import Database


async def main(url: str, name: str, n: int) -> None:
    db = Database.open(url)
    log = AuditLog(db, SystemClock())
    try:
        await db.ping()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def writer(w: int) -> list[int]:
            seqs = []
            for i in range(n // 10):
                appended = await log.record("test", subject_id=name, data={"w": w, "i": i})
                assert appended.seq is not None
                seqs.append(appended.seq)
                await asyncio.sleep(0.005)  # spread the work out so the processes overlap
            return seqs

        results = await asyncio.gather(*(writer(w) for w in range(10)))
        print(" ".join(str(s) for seqs in results for s in seqs), flush=True)
        print(f"batches {log.stats.batches}", file=sys.stderr)
    finally:
        await log.stop()
        await db.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
