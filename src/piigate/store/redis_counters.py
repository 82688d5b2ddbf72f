"""Fixed-window counters in Redis, for nodes that share a Redis server (``PIIGATE_REDIS_URL``).

Same contract as :class:`~piigate.store.counters.SqlCounters`: windows follow the *injected*
clock (the window's end is stored with the count and compared with ``now`` inside one Lua
script, so a hit is atomic across nodes), while Redis expires each key on its own shortly after
its window, so nothing needs purging. Any Redis failure becomes ``StoreUnavailable``: the caller
fails closed (a login that cannot be throttled is refused, not let through).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from piigate.ports import Hit
from piigate.store.db import StoreUnavailable

__all__ = ["RedisCounters"]

_PREFIX = "piigate:ctr:"
# KEYS[1] the counter; ARGV: now (ms), window (ms), amount. Returns the count in the window.
_HIT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local stored = redis.call('HMGET', KEYS[1], 'v', 'e')
local value = tonumber(stored[1])
local window_end = tonumber(stored[2])
if (not window_end) or window_end <= now then
  value = amount
  window_end = now + window
else
  value = value + amount
end
redis.call('HSET', KEYS[1], 'v', value, 'e', window_end)
redis.call('PEXPIRE', KEYS[1], math.max(1, window_end - now) + 1000)
return value
"""
# KEYS: the keys to hit, then the keys to read. ARGV: now (ms), how many hits, then per hit its
# window (ms), the 1-based index of the hit it depends on (0: none; see ports.Hit.if_first) and
# the amount it adds.
# Returns the counts in KEYS' order (a read of an ended window is 0).
_BATCH = """
local now = tonumber(ARGV[1])
local hits = tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  local stored = redis.call('HMGET', KEYS[i], 'v', 'e')
  local value = tonumber(stored[1])
  local window_end = tonumber(stored[2])
  local live = value and window_end and window_end > now
  local gate = i <= hits and tonumber(ARGV[3 * i + 1]) or 0
  if i <= hits and (gate == 0 or out[gate] == 1) then
    local amount = tonumber(ARGV[3 * i + 2])
    if not live then
      value = amount
      window_end = now + tonumber(ARGV[3 * i])
    else
      value = value + amount
    end
    redis.call('HSET', KEYS[i], 'v', value, 'e', window_end)
    redis.call('PEXPIRE', KEYS[i], math.max(1, window_end - now) + 1000)
    out[i] = value
  elseif live then
    out[i] = value
  else
    out[i] = 0
  end
end
return out
"""


def _ms(at: datetime) -> int:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


class RedisCounters:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        prefix: str = _PREFIX,
        max_connections: int = 32,
    ) -> None:
        # A blocking pool: a burst waits (up to ``timeout``) for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self._redis: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._hit = self._redis.register_script(_HIT)
        self._batch = self._redis.register_script(_BATCH)
        self._prefix = prefix  # several deployments (or test runs) can share one Redis

    async def hit(self, key: str, *, window_seconds: float, now: datetime, amount: int = 1) -> int:
        window = max(1, int(window_seconds * 1000))
        result = await self._call(
            self._hit(keys=[self._prefix + key], args=[_ms(now), window, amount])
        )
        return int(result)

    async def batch(
        self, hits: Sequence[Hit], peeks: Sequence[str], *, now: datetime
    ) -> tuple[list[int], list[int]]:
        """Apply each :class:`~piigate.ports.Hit` and read each key of ``peeks``: one round
        trip, atomic (the keys must live on one Redis node, as they do without a cluster)."""
        keys = [self._prefix + hit.key for hit in hits] + [self._prefix + key for key in peeks]
        args: list[int] = [_ms(now), len(hits)]
        for hit in hits:
            gate = 0 if hit.if_first is None else hit.if_first + 1
            args += [max(1, int(hit.window_seconds * 1000)), gate, hit.amount]
        result = await self._call(self._batch(keys=keys, args=args))
        counts = [int(value) for value in cast(list[int], result)]
        return counts[: len(hits)], counts[len(hits) :]

    async def peek(self, key: str, now: datetime) -> int:
        value, window_end = await self._read(key)
        return value if window_end is not None and window_end > _ms(now) else 0

    async def active_until(self, key: str, now: datetime) -> datetime | None:
        value, window_end = await self._read(key)
        if window_end is None or window_end <= _ms(now) or value <= 0:
            return None
        return datetime.fromtimestamp(window_end / 1000, tz=UTC)

    async def reset(self, key: str) -> None:
        await self._call(self._redis.delete(self._prefix + key))

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers (readiness)."""
        await self._call(self._redis.ping())

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _read(self, key: str) -> tuple[int, int | None]:
        stored = await self._call(self._redis.hmget(self._prefix + key, ["v", "e"]))
        value, window_end = cast(list[bytes | None], stored)
        if value is None or window_end is None:
            return 0, None
        return int(value), int(window_end)

    @staticmethod
    async def _call(awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"counters unavailable: {type(exc).__name__}") from exc
