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
from piigate.store.turn_batches import Asked, TurnBatches, split_counts

__all__ = ["RedisCounters"]

_PREFIX = "piigate:ctr:"
# The hits and reads of one or more callers' batches, in order. ARGV: four numbers per key of
# KEYS: its caller's now (ms); the window (ms) a hit opens, or 0 for a read; the 1-based index
# of the key whose count of 1 lets this hit count (0: none; see ports.Hit.if_first); the amount
# a hit adds. Returns the counts in KEYS' order (a read of an ended window is 0).
_BATCH = """
local out = {}
for i = 1, #KEYS do
  local now = tonumber(ARGV[4 * i - 3])
  local window = tonumber(ARGV[4 * i - 2])
  local gate = tonumber(ARGV[4 * i - 1])
  local stored = redis.call('HMGET', KEYS[i], 'v', 'e')
  local value = tonumber(stored[1])
  local window_end = tonumber(stored[2])
  local live = value and window_end and window_end > now
  if window > 0 and (gate == 0 or out[gate] == 1) then
    local amount = tonumber(ARGV[4 * i])
    if not live then
      value = amount
      window_end = now + window
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
# At most this many keys in one call: a script holds Redis for its whole run, so a burst of
# batches goes out as several calls rather than one long one.
_MAX_KEYS_A_CALL = 512


def _ms(at: datetime) -> int:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


class RedisCounters:
    """The counters in Redis, one Lua script a call.

    A call costs the caller far more CPU in redis-py than Redis spends on it, and under load many
    requests count at once: the batches (and single hits) asked for in one turn of the event
    loop go out as one call of the script (:class:`~piigate.store.turn_batches.TurnBatches`),
    each with its own ``now``, in the order asked. Each batch stays atomic; a batch asked alone
    waits one more loop turn.
    """

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
        self._script = self._redis.register_script(_BATCH)
        self._prefix = prefix  # several deployments (or test runs) can share one Redis
        self._turns = TurnBatches(self._send, max_keys=_MAX_KEYS_A_CALL)

    async def hit(self, key: str, *, window_seconds: float, now: datetime, amount: int = 1) -> int:
        counted, _ = await self.batch([Hit(key, window_seconds, amount=amount)], (), now=now)
        return counted[0]

    async def batch(
        self, hits: Sequence[Hit], peeks: Sequence[str], *, now: datetime
    ) -> tuple[list[int], list[int]]:
        """Apply each :class:`~piigate.ports.Hit` and read each key of ``peeks``, atomically
        (the keys must live on one Redis node, as they do without a cluster), in the call to
        Redis that carries this loop turn's batches."""
        return await self._turns.batch(hits, peeks, now=now)

    async def _send(self, group: list[Asked]) -> list[list[int]]:
        keys: list[str] = []
        args: list[int] = []
        for asked in group:
            offset = len(keys)  # where this batch's keys start: its gates are its own
            now = _ms(asked.now)
            for hit in asked.hits:
                keys.append(self._prefix + hit.key)
                gate = 0 if hit.if_first is None else offset + hit.if_first + 1
                args += (now, max(1, int(hit.window_seconds * 1000)), gate, hit.amount)
            for key in asked.peeks:
                keys.append(self._prefix + key)
                args += (now, 0, 0, 0)
        result = await self._call(self._script(keys=keys, args=args))
        return split_counts(group, [int(value) for value in cast(list[int], result)])

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
        await self._turns.aclose()  # batches on their way: let their callers have their counts
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
