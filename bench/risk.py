"""The risk engine's cost per decision: ``ContextRisk.assess`` against ``policy.evaluate`` alone.

Run: ``.venv/bin/python bench/risk.py [--quick] [--redis-url URL]``. Prints one JSON object per
line on stdout (progress on stderr). See docs/BENCHMARKS.md; nothing here asserts on time.

The same 100 decision requests as ``bench/decide.py`` (the 50-rule policy), each given a context:
one of 300 public addresses, one of six browsers, the subject's own device. Every subject has
20 verified activities in its history, so the context signals run their full course (history,
population, familiarity, travel). The measured path is a decision's in steady state: the address
and user agent already in their caches (their first lookups are reported apart), the subject's
history in this node's cache (``SqlHistoryStore`` on SQLite), the counters in memory -- or in
Redis, measured in the same run when it is reachable. The baseline is ``evaluate`` on the same
requests in the same run; the target is an assessment within 50 µs with in-memory counters.
With Redis, each round also takes the process's CPU an assessment while ``CONCURRENT`` tasks
assess at once (their counter batches then share Redis calls), against the same in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import itertools
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _common
from _common import emit, note, summary
from piigate.api.schemas import DecisionRequestIn
from piigate.crypto.secret import Secret
from piigate.model import AccessRequest, Context, RiskAssessment
from piigate.policy import CompiledPolicy, compile_policy, evaluate, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.ports import RateCounters
from piigate.risk.behaviour import Behaviour
from piigate.risk.clients import ClientParser
from piigate.risk.engine import ContextRisk
from piigate.risk.geo import MaxMindLocator, open_locator
from piigate.risk.geo_settings import GeoSettings
from piigate.risk.observer import ContextObserver
from piigate.stepup.binding import binding_digest
from piigate.store import Database, StoreUnavailable
from piigate.store.memory_counters import MemoryCounters
from piigate.store.redis_counters import RedisCounters
from piigate.store.risk_history import SqlHistoryStore

BENCH = "risk"
NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
TARGET_US = 50.0
STEP = timedelta(milliseconds=100)  # simulated time between decisions
CONCURRENT = 32  # tasks assessing at once in the concurrent measurement
UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
]


class _NoAudit:
    async def record(self, type: str, **kwargs: object) -> object:
        return None


def addresses(count: int, rnd: random.Random) -> list[str]:
    found: list[str] = []
    while len(found) < count:
        address = ipaddress.IPv4Address(rnd.randrange(1 << 24, 223 << 24))
        if address.is_global:
            found.append(str(address))
    return found


def requests(compiled: CompiledPolicy) -> list[AccessRequest]:
    rnd = random.Random(_common.SEED)
    pool = addresses(300, rnd)
    home: dict[str, tuple[str, str]] = {}
    out = []
    for body, _ in _common.request_bodies(int(NOW.timestamp())):
        request = DecisionRequestIn.model_validate(body).to_domain(compiled)
        subject = request.subject.id
        ip, ua = home.setdefault(subject, (rnd.choice(pool), rnd.choice(UAS)))
        if rnd.random() < 0.2:  # now and then from elsewhere
            ip, ua = rnd.choice(pool), rnd.choice(UAS)
        out.append(
            AccessRequest(
                request.subject,
                request.action,
                request.pii,
                request.resource,
                request.session,
                Context(ip, ua, f"device-{subject}"),
                request.transaction,
            )
        )
    return out


def engine(
    db: Database, geo: MaxMindLocator, counters: RateCounters, holder: PolicyHolder
) -> ContextRisk:
    key = Secret(b"b" * 32)
    return ContextRisk(
        observer=ContextObserver(geo=geo, clients=ClientParser(), key=key),
        # Steady state: every subject asked within the cache's lifetime.
        history=SqlHistoryStore(db, subject_ttl=1e9, population_refresh=1e9),
        behaviour=Behaviour(counters, _NoAudit(), key=key),
        policy=holder,
    )


async def remember(risk: ContextRisk, cases: list[AccessRequest]) -> None:
    """Twenty verified activities per subject, from their usual context."""
    seen: set[str] = set()
    for case in cases:
        if case.subject.id in seen:
            continue
        seen.add(case.subject.id)
        for day in range(20):
            await risk.verified(case.subject.id, case.context, now=NOW - timedelta(days=day + 1))


def time_evaluate(compiled: CompiledPolicy, cases: list[AccessRequest], calls: int) -> list[int]:
    samples = [0] * calls
    clock = time.perf_counter_ns
    rotation = itertools.cycle([(request, binding_digest(request)) for request in cases])
    none = RiskAssessment()
    for i in range(calls):
        request, binding = next(rotation)
        t0 = clock()
        evaluate(compiled, request, none, (), now=NOW, binding=binding, explain=False)
        samples[i] = clock() - t0
    return samples


async def time_assess(
    risk: ContextRisk, cases: list[AccessRequest], calls: int, start: datetime
) -> tuple[list[int], datetime]:
    samples = [0] * calls
    clock = time.perf_counter_ns
    rotation = itertools.cycle(cases)
    now = start
    for i in range(calls):
        request = next(rotation)
        now += STEP
        t0 = clock()
        await risk.assess(request, now=now)
        samples[i] = clock() - t0
    return samples, now


async def cpu_concurrent(
    risk: ContextRisk, cases: list[AccessRequest], calls: int, start: datetime
) -> tuple[int, datetime]:
    """The process's CPU an assessment (ns) while ``CONCURRENT`` tasks assess in closed loops,
    as a gateway's requests do under load (with Redis, their counter batches share calls)."""
    rotation = itertools.cycle(cases)
    clock = itertools.count(1)
    left = calls

    async def loop() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await risk.assess(next(rotation), now=start + next(clock) * STEP)

    cpu = time.process_time_ns()
    await asyncio.gather(*(loop() for _ in range(CONCURRENT)))
    used = time.process_time_ns() - cpu
    return used // calls, start + next(clock) * STEP


async def time_roundtrip(redis: RedisCounters, calls: int, now: datetime) -> list[int]:
    """One Redis round trip through the same client (a counter read)."""
    samples = [0] * calls
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        await redis.peek("bench-roundtrip", now)
        samples[i] = clock() - t0
    return samples


def first_lookups(geo: MaxMindLocator, rnd: random.Random) -> tuple[list[int], list[int]]:
    """What a new address and a new user agent cost (their caches miss)."""
    parser = ClientParser()
    geo_ns, ua_ns = [], []
    for address in addresses(300, rnd):
        t0 = time.perf_counter_ns()
        geo.locate(address)
        geo_ns.append(time.perf_counter_ns() - t0)
    for n in range(300):
        ua = f"{UAS[n % len(UAS)]} Build/{n}"
        t0 = time.perf_counter_ns()
        parser.parse(ua)
        ua_ns.append(time.perf_counter_ns() - t0)
    return geo_ns, ua_ns


async def redis_counters(url: str | None) -> RedisCounters | None:
    if url is None:
        return None
    counters = RedisCounters(url, prefix=f"piigate-bench:{secrets.token_hex(6)}:")
    try:
        await counters.ping()
    except StoreUnavailable:
        note(f"risk: Redis not reachable at {url}: its lines are left out")
        await counters.aclose()
        return None
    return counters


async def measure(args: argparse.Namespace) -> dict[str, list[int]]:
    policy = load_policy_text(_common.policy_text(), source="bench-policy.yaml")
    compiled = compile_policy(policy)
    holder = PolicyHolder(compiled)
    cases = requests(compiled)
    geo = open_locator(GeoSettings(), announce=False)
    found: dict[str, list[int]] = {
        "evaluate": [], "memory": [], "redis": [], "roundtrip": [],
        "memory_cpu_concurrent": [], "redis_cpu_concurrent": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        await db.upgrade()
        redis = await redis_counters(args.redis_url)
        try:
            memory = engine(db, geo, MemoryCounters(), holder)
            await remember(memory, cases)
            shared = engine(db, geo, redis, holder) if redis is not None else None
            now = NOW
            for risk in (memory, shared):  # warm-up: caches, regexes, allocator
                if risk is not None:
                    _, now = await time_assess(risk, cases, 1_000, now)
            time_evaluate(compiled, cases, 5_000)
            gc.collect()
            for _ in range(args.rounds):  # alternate, so drift in machine load hits all alike
                found["evaluate"].extend(time_evaluate(compiled, cases, args.calls))
                samples, now = await time_assess(memory, cases, args.calls, now)
                found["memory"].extend(samples)
                if shared is not None and redis is not None:
                    samples, now = await time_assess(shared, cases, args.calls // 10, now)
                    found["redis"].extend(samples)
                    found["roundtrip"].extend(await time_roundtrip(redis, args.calls // 10, now))
                    for name, risk in (("memory", memory), ("redis", shared)):
                        cpu, now = await cpu_concurrent(risk, cases, args.calls // 5, now)
                        found[f"{name}_cpu_concurrent"].append(cpu)
            found["geo_first"], found["ua_first"] = first_lookups(geo, random.Random(1))
        finally:
            if redis is not None:
                await redis.aclose()
            await db.close()
            geo.close()
    return found


def report(found: dict[str, list[int]]) -> None:
    base, mem = summary(found["evaluate"]), summary(found["memory"])
    baseline_is = "policy evaluate alone on the same requests, same run"
    for stat in ("p50", "p99", "mean"):
        extra: dict[str, object] = {"samples": mem["n"], "counters": "memory"}
        if stat == "p50":
            extra.update(target=f"<= {TARGET_US:g} us", target_met=mem["p50"] <= TARGET_US)
        emit(BENCH, f"assess_memory_{stat}_us", mem[stat], "us", base[stat],
             baseline_is=baseline_is, **extra)  # fmt: skip
    if found["redis"]:
        red = summary(found["redis"])
        for stat in ("p50", "p99", "mean"):
            emit(BENCH, f"assess_redis_{stat}_us", red[stat], "us", mem[stat],
                 baseline_is="the assessment with in-memory counters, same run",
                 samples=red["n"], counters="redis (one server on loopback)")  # fmt: skip
        trip = summary(found["roundtrip"])
        emit(BENCH, "redis_roundtrip_p50_us", trip["p50"], "us", red["p50"],
             baseline_is="assess p50 with Redis counters: one counter read alone, same client",
             samples=trip["n"])  # fmt: skip
        memory_cpu = statistics.median(found["memory_cpu_concurrent"]) / 1000
        emit(BENCH, f"assess_redis_cpu_us_{CONCURRENT}_concurrent",
             statistics.median(found["redis_cpu_concurrent"]) / 1000, "us", memory_cpu,
             baseline_is=f"the process's CPU an assessment with in-memory counters, "
             f"{CONCURRENT} tasks assessing at once, same run (median of the rounds)",
             rounds=len(found["redis_cpu_concurrent"]))  # fmt: skip
    geo, ua = summary(found["geo_first"]), summary(found["ua_first"])
    emit(BENCH, "geo_first_lookup_p50_us", geo["p50"], "us", mem["p50"],
         baseline_is="assess p50 (in memory): an address's first lookup misses the cache",
         samples=geo["n"])  # fmt: skip
    emit(BENCH, "ua_first_parse_p50_us", ua["p50"], "us", mem["p50"],
         baseline_is="assess p50 (in memory): a user agent's first parse misses the cache",
         samples=ua["n"])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~10 s run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None, help="calls per round and variant")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 6)
    args.calls = args.calls or (5_000 if args.quick else 10_000)
    started = time.monotonic()
    found = asyncio.run(measure(args))
    note(f"risk: measured in {time.monotonic() - started:.1f} s")
    report(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
