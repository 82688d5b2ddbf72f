"""The gateway's rate limiter: dimensions, fixed windows, the draft's headers, fail closed."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from gateway_support import GATEWAY, policy

from piigate.clock import FixedClock
from piigate.gateway.http.config import load_gateway_config_text
from piigate.gateway.http.ratelimit import (
    Dimension,
    RateLimited,
    RateLimiter,
    RateVerdict,
    counter_key,
)
from piigate.gateway.http.sections import Rate, RateLimits
from piigate.ports import Hit
from piigate.store import StoreUnavailable
from piigate.store.memory_counters import MemoryCounters, open_counters
from piigate.store.redis_counters import RedisCounters

WHO = {"subject": "alice", "api_key": "key_1", "ip": "203.0.113.7", "route": "GET /customers/{id}"}
ARGUMENT = {
    Dimension.SUBJECT: "subject",
    Dimension.API_KEY: "api_key",
    Dimension.IP: "ip",
    Dimension.ROUTE: "route",
}


class RecordingCounters(MemoryCounters):
    """Memory counters that remember every key hit, and each batch's keys."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []
        self.batches: list[list[str]] = []

    async def hit(self, key: str, *, window_seconds: float, now: datetime, amount: int = 1) -> int:
        self.keys.append(key)
        return await super().hit(key, window_seconds=window_seconds, now=now, amount=amount)

    async def batch(
        self, hits: Sequence[Hit], peeks: Sequence[str], *, now: datetime
    ) -> tuple[list[int], list[int]]:
        self.keys += [hit.key for hit in hits]
        self.batches.append([hit.key.rsplit(":", 1)[0] for hit in hits])
        return await super().batch(hits, peeks, now=now)


def limiter(limits: RateLimits, clock: FixedClock | None = None) -> RateLimiter:
    return RateLimiter(limits, RecordingCounters(), clock or FixedClock())


async def check(rl: RateLimiter, **changes: str | None) -> RateVerdict:
    who: dict[str, str | None] = {**WHO, **changes}
    return await rl.check(
        subject=who["subject"], api_key=who["api_key"], ip=who["ip"], route=who["route"]
    )


def reset_of(verdict: RateVerdict) -> int:
    match = re.fullmatch(r'"\w+";r=\d+;t=(\d+)', verdict.headers["RateLimit"])
    assert match, verdict.headers
    return int(match.group(1))


@pytest.mark.parametrize("dimension", list(Dimension))
async def test_each_dimension_counts_its_own_identifier(dimension: Dimension) -> None:
    rl = limiter(RateLimits(**{dimension.value: Rate(2, 60)}))
    assert (await check(rl)).allowed
    assert (await check(rl)).allowed
    refused = await check(rl)
    assert not refused.allowed
    assert refused.refused_by is dimension
    # Another identifier in the same dimension has a count of its own.
    other = {ARGUMENT[dimension]: "another"}
    if dimension is Dimension.IP:
        other = {"ip": "198.51.100.9"}
    assert (await check(rl, **other)).allowed


async def test_a_dimension_without_its_identifier_is_not_counted() -> None:
    limits = RateLimits(per_subject=Rate(1, 60), per_api_key=Rate(1, 60), per_ip=Rate(1, 60))
    rl = limiter(limits)
    for _ in range(3):  # anonymous, no key, no address: nothing applies
        verdict = await check(rl, subject=None, api_key=None, ip=None)
        assert verdict == RateVerdict(allowed=True, headers={})
    assert await rl.count("alice") == 0


async def test_nothing_configured_counts_nothing() -> None:
    rl = limiter(RateLimits())
    assert await check(rl) == RateVerdict(allowed=True, headers={})
    assert isinstance(rl.counters, RecordingCounters)
    assert rl.counters.keys == []


async def test_headers_name_the_policy_in_the_drafts_syntax() -> None:
    rl = limiter(RateLimits(per_subject=Rate(3, 60)))
    first = await check(rl)
    t = reset_of(first)
    assert 1 <= t <= 60
    assert first.headers == {
        "RateLimit-Policy": '"per_subject";q=3;w=60',
        "RateLimit": f'"per_subject";r=2;t={t}',
    }
    await check(rl)
    await check(rl)
    refused = await check(rl)
    assert refused.headers == {
        "RateLimit-Policy": '"per_subject";q=3;w=60',
        "RateLimit": f'"per_subject";r=0;t={t}',
        "Retry-After": str(t),
    }
    assert refused.retry_after == t


async def test_the_window_rolls_over_at_its_end() -> None:
    clock = FixedClock()
    rl = limiter(RateLimits(per_subject=Rate(2, 10)), clock)
    await check(rl)
    await check(rl)
    refused = await check(rl)
    assert not refused.allowed
    wait = refused.retry_after
    assert 1 <= wait <= 10
    clock.advance(wait - 1)
    assert not (await check(rl)).allowed  # the same window
    assert await rl.count("alice") == 4
    clock.advance(1)
    fresh = await check(rl)  # the next window: counted from zero
    assert fresh.allowed
    assert await rl.count("alice") == 1
    assert reset_of(fresh) == 10  # a whole window ahead
    clock.advance(10)
    assert await rl.count("alice") == 0  # reading counts nothing


async def test_the_time_left_is_the_windows_own_wherever_the_clock_goes() -> None:
    """The end of a window is remembered between requests: the time left (``t``) is still
    worked out from the clock at each one, and a clock that went back a whole window or more
    gets its own window's end, not the remembered later one."""
    clock = FixedClock()
    rl = limiter(RateLimits(per_subject=Rate(1000, 60)), clock)
    start = clock.now()
    first = reset_of(await check(rl))
    clock.advance(7)
    assert reset_of(await check(rl)) == (first - 7 if first > 7 else first + 53)
    clock.set(start - timedelta(seconds=600))  # ten windows back
    back = await check(rl)
    assert reset_of(back) == first  # the windows are aligned: the same offset in the window
    assert 1 <= reset_of(back) <= 60


async def test_windows_end_at_different_times_for_different_callers() -> None:
    rl = limiter(RateLimits(per_subject=Rate(5, 60)))
    resets = {reset_of(await check(rl, subject=f"user-{n}")) for n in range(20)}
    assert len(resets) > 1  # not every client comes back at the same second


async def test_the_most_constraining_policy_is_shown() -> None:
    rl = limiter(RateLimits(per_subject=Rate(10, 60), per_ip=Rate(3, 60)))
    await check(rl)
    verdict = await check(rl)
    assert verdict.headers["RateLimit-Policy"] == '"per_ip";q=3;w=60'
    assert verdict.headers["RateLimit"].startswith('"per_ip";r=1;')


async def test_the_route_is_shown_only_when_it_refuses() -> None:
    """A route's count is everyone's traffic on it: no caller learns it from an answer."""
    rl = limiter(RateLimits(per_subject=Rate(100, 60), per_route=Rate(2, 3600)))
    for n in range(2):
        verdict = await check(rl, subject=f"user-{n}")
        assert verdict.headers["RateLimit-Policy"] == '"per_subject";q=100;w=60'
    refused = await check(rl, subject="user-9")
    assert refused.refused_by is Dimension.ROUTE
    assert refused.headers["RateLimit-Policy"] == '"per_route";q=2;w=3600'
    assert refused.headers["RateLimit"].startswith('"per_route";r=0;')


async def test_a_refused_request_is_not_charged_to_the_shared_route() -> None:
    rl = limiter(RateLimits(per_subject=Rate(1, 60), per_route=Rate(2, 60)))
    assert (await check(rl, subject="flooder")).allowed
    for _ in range(5):
        assert (await check(rl, subject="flooder")).refused_by is Dimension.SUBJECT
    assert (await check(rl, subject="bob")).allowed  # the route's budget is still there
    assert (await check(rl, subject="carol")).refused_by is Dimension.ROUTE


async def test_the_caller_s_dimensions_count_in_one_batch_and_the_route_after() -> None:
    rl = limiter(RateLimits(*(Rate(100, 60) for _ in range(4))))
    await check(rl)
    assert isinstance(rl.counters, RecordingCounters)
    assert rl.counters.batches == [["gw:rl:subject", "gw:rl:api_key", "gw:rl:ip"], ["gw:rl:route"]]


async def test_a_request_refused_for_its_subject_still_counts_for_its_address() -> None:
    rl = limiter(RateLimits(per_subject=Rate(1, 60), per_ip=Rate(3, 60)))
    assert (await check(rl, subject="flooder")).allowed
    assert (await check(rl, subject="flooder")).refused_by is Dimension.SUBJECT
    assert (await check(rl, subject="bob")).allowed  # the address's third request
    assert (await check(rl, subject="carol")).refused_by is Dimension.IP


async def test_counter_keys_hold_no_identifier_in_the_clear() -> None:
    limits = RateLimits(*(Rate(100, 60) for _ in range(4)))
    rl = limiter(limits)
    await check(rl)
    assert isinstance(rl.counters, RecordingCounters)
    keys = rl.counters.keys
    assert [k.rsplit(":", 1)[0] for k in keys] == [
        "gw:rl:subject",
        "gw:rl:api_key",
        "gw:rl:ip",
        "gw:rl:route",
    ]
    assert all(re.fullmatch(r"gw:rl:\w+:[0-9a-f]{32}", k) for k in keys)
    assert not any(value in key for key in keys for value in ("alice", "key_1", "203.0.113"))


def test_an_ipv6_client_is_counted_by_its_64() -> None:
    same = counter_key(Dimension.IP, "2001:db8:1:2::1")
    assert counter_key(Dimension.IP, "2001:db8:1:2:ffff::9") == same
    assert counter_key(Dimension.IP, "2001:db8:1:3::1") != same
    assert counter_key(Dimension.IP, "::ffff:203.0.113.7") == counter_key(
        Dimension.IP, "203.0.113.7"
    )


async def test_count_reads_the_subjects_window() -> None:
    rl = limiter(RateLimits(per_subject=Rate(100, 60)))
    for _ in range(3):
        await check(rl)
    assert await rl.count("alice") == 3
    assert await rl.count("bob") == 0
    assert await limiter(RateLimits(per_ip=Rate(5, 60))).count("alice") == 0


async def test_a_refusal_is_a_429_problem_with_the_headers() -> None:
    rl = limiter(RateLimits(per_api_key=Rate(1, 10)))
    allowed = await check(rl)
    with pytest.raises(ValueError):
        allowed.refusal()
    refused = await check(rl)
    error = refused.refusal()
    assert isinstance(error, RateLimited)
    assert error.status == 429
    assert error.headers() == refused.headers
    assert error.headers()["Retry-After"] == str(refused.retry_after)
    problem = error.problem()
    assert problem["code"] == "rate_limited"
    assert problem["violated-policies"] == ["per_api_key"]
    assert "key_1" not in str(problem)


@pytest.mark.redis
async def test_nodes_sharing_redis_hold_one_limit(redis_url: str) -> None:
    subject = f"shared-{secrets.token_hex(6)}"  # a fresh key: no earlier run's count
    counters = [open_counters(redis_url), open_counters(redis_url)]
    assert all(isinstance(c, RedisCounters) for c in counters)
    clock = FixedClock()
    limits = RateLimits(per_subject=Rate(3, 60))
    nodes = [RateLimiter(limits, c, clock) for c in counters]
    try:
        allowed = [(await check(nodes[n % 2], subject=subject)).allowed for n in range(4)]
        assert allowed == [True, True, True, False]
        assert await nodes[1].count(subject) == 4
    finally:
        for c in counters:
            await c.reset(counter_key(Dimension.SUBJECT, subject))
            await c.aclose()


async def test_unreachable_redis_refuses_the_request() -> None:
    counters = RedisCounters("redis://127.0.0.1:1/0", timeout=0.5)
    rl = RateLimiter(RateLimits(per_ip=Rate(600, 60)), counters, FixedClock())
    try:
        with pytest.raises(StoreUnavailable):
            await check(rl)
    finally:
        await counters.aclose()


async def test_the_configured_limits_apply() -> None:
    config = load_gateway_config_text(GATEWAY, policy())  # per_subject: 120/m, per_ip: 600/m
    rl = limiter(config.rate_limit)
    verdict = await check(rl)
    assert verdict.headers["RateLimit-Policy"] == '"per_subject";q=120;w=60'
    assert verdict.headers["RateLimit"].startswith('"per_subject";r=119;')
