"""The HTTP gateway's rate limits (``gateway.http.rate_limit``): which requests go through, and
the ``RateLimit-Policy``/``RateLimit`` headers that tell a client where it stands.

The proxy calls :meth:`RateLimiter.check` once per request, before anything else reaches the
upstream. Each configured dimension that applies counts the request once, in a fixed window of
its own, in the shared :class:`~piigate.ports.RateCounters` (``store.memory_counters`` on one
node, ``store.redis_counters`` for several; :func:`piigate.store.memory_counters.open_counters`
picks by ``rate_limit.store``):

=============  ==================================  ==========================================
dimension      applies when                        counter key
=============  ==================================  ==========================================
per_subject    the request has a verified subject  ``gw:rl:subject:<digest of the subject id>``
per_api_key    the caller used an API key          ``gw:rl:api_key:<digest of the key's id>``
per_ip         the client address is known         ``gw:rl:ip:<digest of its network>``
per_route      a route matched                     ``gw:rl:route:<digest of the route's label>``
=============  ==================================  ==========================================

A digest is the first 32 hex digits of SHA-256, so the counters never hold a subject id, a key
id or an address in the clear, and every key has the same bounded length. It is a pseudonym,
not anonymity: an IPv4 address can be found again from its digest by trying them all. An
address is counted by its network (``origins.client_network``: an IPv6 client by its /64), so
rotating through one's own /64 gains nothing.

Windows are fixed and aligned: a dimension's window of ``w`` seconds ends at the next multiple
of ``w`` after the epoch, shifted by an offset in ``[0, w)`` taken from the key's digest. Every
node computes the same end without asking the store (no read for ``t``), and clients of
different keys do not all come back at the same second (the draft's thundering herd).

The caller's own dimensions (subject, API key, address) count the request together, in one
operation of the counters (one round trip to Redis), and the first of them over its limit, in
that order, refuses it. The route's budget, which everyone shares, is charged after them and
only when none of them refused, so one caller flooding a route cannot use it up.

Headers (draft-ietf-httpapi-ratelimit-headers-11, whose syntax this follows; the working group
has discussed renaming ``r``/``t``, and :func:`_headers` alone writes them): every answer names
the most constraining policy: the fewest requests left, then the latest end of window.
``RateLimit-Policy: "per_subject";q=120;w=60`` (the limit and its window) and
``RateLimit: "per_subject";r=5;t=30`` (requests left, seconds until the window ends). A refused
request names the dimension that refused it, with ``r=0`` and ``Retry-After`` equal to ``t``.
``per_route`` is named only when it refuses: its count is everyone's traffic on the route, which
no caller should learn.

Fail closed: when the counters cannot answer, :meth:`RateLimiter.check` raises what they raise
(``StoreUnavailable``, a 503 problem, for Redis) and the request is refused. It never answers
"allowed" without having counted every dimension that applies, on any route: the limiter cannot
know which upstream answers carry PII, so none goes through unlimited.

Pure: no I/O but through the counters port and the clock port (``GATEWAY_CORE`` in the layering
test).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from piigate.clock import Clock
from piigate.errors import TooManyRequests
from piigate.gateway.http.sections import Rate, RateLimits
from piigate.memo import Bounded
from piigate.origins import client_network
from piigate.ports import Hit, RateCounters, batch_of

__all__ = [
    "KEY_PREFIX",
    "Dimension",
    "RateLimited",
    "RateLimiter",
    "RateVerdict",
    "counter_key",
]

KEY_PREFIX: Final = "gw:rl:"
_ENDS_CACHE: Final = 16384  # as many as counter_key remembers
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


class Dimension(StrEnum):
    """A rate limit's dimension; its value is the configuration key and the policy's name."""

    SUBJECT = "per_subject"
    API_KEY = "per_api_key"
    IP = "per_ip"
    ROUTE = "per_route"

    @property
    def key_part(self) -> str:
        return self.value.removeprefix("per_")


@functools.lru_cache(maxsize=16384)
def counter_key(dimension: Dimension, identifier: str) -> str:
    """The counter key of ``identifier`` (a subject id, an API key's id, a client address, a
    route's label) in ``dimension``: ``gw:rl:<dimension>:<digest>``; an address is reduced to
    its network first. Remembered for the most recent callers: the same few come back with
    every request, and reading an address and hashing cost more than the count itself."""
    if dimension is Dimension.IP:
        identifier = client_network(identifier) or identifier
    digest = hashlib.sha256(identifier.encode("utf-8")).hexdigest()[:32]
    return f"{KEY_PREFIX}{dimension.key_part}:{digest}"


@dataclass(frozen=True, slots=True)
class _Count:
    """One dimension's count for this request."""

    dimension: Dimension
    rate: Rate
    count: int
    reset: int  # seconds until the window ends, at least 1

    @property
    def remaining(self) -> int:
        return max(0, self.rate.count - self.count)

    @property
    def over(self) -> bool:
        return self.count > self.rate.count


@dataclass(frozen=True, slots=True)
class RateVerdict:
    """What :meth:`RateLimiter.check` decided. ``headers`` go on every answer, the upstream's
    or the refusal; ``refused_by`` and ``retry_after`` (seconds) are set when refused."""

    allowed: bool
    headers: Mapping[str, str]
    refused_by: Dimension | None = None
    retry_after: int = 0

    def refusal(self) -> RateLimited:
        """The 429 problem for a refused request (its headers included)."""
        return RateLimited(self)


class RateLimited(TooManyRequests):
    """A request over one of the gateway's rate limits: 429 with ``Retry-After`` and the
    ``RateLimit`` headers; ``violated-policies`` names the dimension (the draft's member)."""

    code = "rate_limited"
    title = "Rate limit exceeded"

    def __init__(self, verdict: RateVerdict) -> None:
        if verdict.allowed or verdict.refused_by is None:
            raise ValueError("the request was allowed")
        name = verdict.refused_by.value
        super().__init__(verdict.retry_after, f"over the {name} rate limit; retry later")
        self.extra = {"violated-policies": [name]}
        self.verdict = verdict

    def headers(self) -> Mapping[str, str]:
        return self.verdict.headers


class RateLimiter:
    """The gateway's rate limits over shared counters; see the module's docstring."""

    def __init__(self, limits: RateLimits, counters: RateCounters, clock: Clock) -> None:
        self.limits = limits
        self.counters = counters
        self.clock = clock
        self._batch = batch_of(counters)
        # (counter key, window) -> the end of its current window: worked out again only once
        # that end has passed (most requests fall in the window of the one before).
        self._ends = Bounded[tuple[str, int], datetime](_ENDS_CACHE)

    async def check(
        self,
        *,
        subject: str | None,
        api_key: str | None,
        ip: str | None,
        route: str | None,
    ) -> RateVerdict:
        """Count this request in each configured dimension that applies and say whether it may
        go on. ``api_key`` is the key's id, never the key; ``route`` the matched route's label.
        Raises what the counters raise (``StoreUnavailable``): the request is then refused."""
        now = self.clock.now()
        limits = self.limits
        own = [
            (dimension, rate, identifier)
            for dimension, rate, identifier in (
                (Dimension.SUBJECT, limits.per_subject, subject),
                (Dimension.API_KEY, limits.per_api_key, api_key),
                (Dimension.IP, limits.per_ip, ip),
            )
            if rate is not None and identifier is not None
        ]
        counts = await self._hit_all(own, now)
        refused = next((counted for counted in counts if counted.over), None)
        if refused is None and limits.per_route is not None and route is not None:
            [shared] = await self._hit_all([(Dimension.ROUTE, limits.per_route, route)], now)
            refused = shared if shared.over else None
        if refused is not None:
            return RateVerdict(
                allowed=False,
                headers={**_headers(refused), "Retry-After": str(refused.reset)},
                refused_by=refused.dimension,
                retry_after=refused.reset,
            )
        if not counts:
            return RateVerdict(allowed=True, headers={})
        tightest = min(counts, key=lambda c: (c.remaining, -c.reset))
        return RateVerdict(allowed=True, headers=_headers(tightest))

    async def count(self, subject: str) -> int:
        """Requests of ``subject`` in its current ``per_subject`` window (0 when ``per_subject``
        is not configured): the velocity the risk engine can read. Reading adds nothing to it."""
        if self.limits.per_subject is None:
            return 0
        return await self.counters.peek(counter_key(Dimension.SUBJECT, subject), self.clock.now())

    async def _hit_all(
        self, applicable: list[tuple[Dimension, Rate, str]], now: datetime
    ) -> list[_Count]:
        """Count the request in each of ``applicable`` at once (one batch of the counters)."""
        if not applicable:
            return []
        hits: list[Hit] = []
        resets: list[int] = []
        for dimension, rate, identifier in applicable:
            key = counter_key(dimension, identifier)
            left = self._seconds_left(key, rate.window, now)
            hits.append(Hit(key, left))
            resets.append(max(1, math.ceil(left)))
        counted, _ = await self._batch(hits, (), now=now)
        return [
            _Count(dimension, rate, count, reset=reset)
            for (dimension, rate, _), count, reset in zip(applicable, counted, resets, strict=True)
        ]

    def _seconds_left(self, key: str, window: int, now: datetime) -> float:
        """Seconds from ``now`` to the end of the current window of ``key`` (:func:`_window_end`,
        remembered while it still is that end: not passed, and not more than a window away, as
        it would be after the clock went back)."""
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        end = self._ends.get((key, window))
        if end is not None:
            left = (end - now).total_seconds()
            if 0 < left <= window:
                return left
        end = _window_end(key, window, now)
        self._ends.put((key, window), end)
        return (end - now).total_seconds()


def _window_end(key: str, window: int, now: datetime) -> datetime:
    """The end of the current window of ``key``: the next multiple of ``window`` seconds after
    the epoch, shifted by the key's offset. In whole microseconds: no float rounding."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    offset = int(key.rsplit(":", 1)[1][:12], 16) % window
    size = window * 1_000_000
    elapsed = (now - _EPOCH) // _MICROSECOND - offset * 1_000_000
    return _EPOCH + _MICROSECOND * ((elapsed // size + 1) * size + offset * 1_000_000)


def _headers(counted: _Count) -> dict[str, str]:
    """The draft's two fields for one policy; its name is a Structured Field String."""
    name = counted.dimension.value
    return {
        "RateLimit-Policy": f'"{name}";q={counted.rate.count};w={counted.rate.window}',
        "RateLimit": f'"{name}";r={counted.remaining};t={counted.reset}',
    }
