"""Hits one counter N times (concurrently) once told to go; prints each count it got.

``URL N [PREFIX]``: a database URL (SQL counters) or a ``redis://`` URL (Redis counters under
PREFIX).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from piigate.store import Database, SqlCounters
from piigate.store.redis_counters import RedisCounters


async def main(url: str, n: int, prefix: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    if url.startswith("redis://"):
        redis = RedisCounters(url, prefix=prefix)
        try:
            await redis.ping()
            await _hits(redis, n, now)
        finally:
            await redis.aclose()
        return
    db = Database.open(url)
    try:
        await db.ping()
        await _hits(SqlCounters(db), n, now)
    finally:
        await db.close()


async def _hits(counters: SqlCounters | RedisCounters, n: int, now: datetime) -> None:
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    counts = await asyncio.gather(
        *(counters.hit("shared", window_seconds=60, now=now) for _ in range(n))
    )
    print(" ".join(map(str, counts)), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ""))
