"""Hits one counter N times (concurrently) once told to go; prints each count it got."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from piigate.store import Database, SqlCounters


async def main(url: str, n: int) -> None:
    db = Database.open(url)
    try:
        await db.ping()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        counters = SqlCounters(db)
        now = datetime(2026, 1, 1, tzinfo=UTC)
        counts = await asyncio.gather(
            *(counters.hit("shared", window_seconds=60, now=now) for _ in range(n))
        )
        print(" ".join(map(str, counts)), flush=True)
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
