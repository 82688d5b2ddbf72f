"""In-process decision latency: ``policy.evaluate`` on a 50-rule policy, and ``Engine.decide``.

Run: ``.venv/bin/python bench/decide.py [--quick]``. Prints one JSON object per line on stdout
(progress on stderr). See docs/BENCHMARKS.md for what is measured and the targets; nothing here
asserts on time.

Baseline (same run, same requests, same ``evaluate`` function): the policy compiled *without*
its PII index. Each action's bucket holds every rule that can apply to that action as a plain
"no PII condition" list, so ``evaluate`` scans all of them and its own matching predicate (which
re-checks ``when.pii`` on every candidate) rejects the ones the index would have skipped. The
action dimension stays a dict lookup in both: ``_matching_rules`` never re-checks
``when.actions`` (the bucket is the only action filter), so putting every rule in every bucket
would change the answers. The script checks that both variants give identical evaluations
before timing them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import itertools
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import _common
from _common import emit, note, summary
from piigate.api.schemas import DecisionRequestIn
from piigate.callers import Caller
from piigate.clock import FixedClock
from piigate.model import (
    AccessRequest,
    ProvenLevel,
    RiskAssessment,
    Signal,
)
from piigate.policy import CompiledPolicy, compile_policy, evaluate, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.risk.port import CarriedRisk
from piigate.stepup.binding import binding_digest
from piigate.stepup.engine import AMR_METHODS, Engine
from piigate.stepup.ports import MemoryAudit, MemoryChallenges, MemoryGrantLedger

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
BENCH = "decide"
TARGET_P99_US = 100.0

# Risk scores of the mix → the signals that would have produced them.
_SIGNALS = {
    0: (),
    45: (Signal("new_device", 30), Signal("unfamiliar_client", 15)),
    65: (Signal("new_country", 40), Signal("new_asn", 15), Signal("unfamiliar_client", 15)),
    95: (Signal("impossible_travel", 70), Signal("new_device", 30)),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    request: AccessRequest
    risk: RiskAssessment
    proven: tuple[ProvenLevel, ...]
    binding: str


def build_cases(compiled: CompiledPolicy) -> list[Case]:
    cases = []
    for body, score in _common.request_bodies(int(NOW.timestamp())):
        request = DecisionRequestIn.model_validate(body).to_domain(compiled)
        risk = RiskAssessment(score, _SIGNALS[score])
        # What Engine._collect_proofs derives from the session (the IdP proof).
        proven: tuple[ProvenLevel, ...] = ()
        session = request.session
        if session.level is not None and session.auth_time is not None:
            methods = frozenset(AMR_METHODS[a] for a in session.amr if a in AMR_METHODS)
            proven = (ProvenLevel(session.level, session.auth_time, "idp", methods=methods),)
        # Engine.decide reads risk from the request (CarriedRisk), so carry it there too.
        request = dataclasses.replace(request, risk=risk)
        cases.append(Case(request, risk, proven, binding_digest(request)))
    return cases


def unindexed(compiled: CompiledPolicy) -> CompiledPolicy:
    """The same policy with every candidate of an action in one list: a scan, no PII index."""
    buckets = {}
    for action, bucket in compiled.buckets.items():
        rules = {r.index: r for r in (*bucket.no_pii, *bucket.any_pii)}
        for group in bucket.by_pii.values():
            rules.update((r.index, r) for r in group)
        ordered = tuple(rules[i] for i in sorted(rules))
        buckets[action] = type(bucket)(by_pii={}, any_pii=(), no_pii=ordered)
    return dataclasses.replace(compiled, buckets=buckets)


def _same(a: Any, b: Any) -> bool:
    return (a.outcome, a.rules, a.mask, a.required, a.reason, a.missing_scope) == (
        b.outcome,
        b.rules,
        b.mask,
        b.required,
        b.reason,
        b.missing_scope,
    )


def time_evaluate(compiled: CompiledPolicy, cases: list[Case], calls: int) -> list[int]:
    """Nanoseconds of each of ``calls`` evaluate() calls as the engine makes them (no trace),
    rotating through the cases."""
    samples = [0] * calls
    clock = time.perf_counter_ns
    rotation = itertools.cycle(cases)
    for i in range(calls):
        case = next(rotation)
        request, risk, proven, binding = case.request, case.risk, case.proven, case.binding
        t0 = clock()
        evaluate(compiled, request, risk, proven, now=NOW, binding=binding, explain=False)
        samples[i] = clock() - t0
    return samples


# The app that asks, as the API's API-key callers do (its id goes into the challenge and the
# decision's audit event).
BENCH_APP = Caller.app("bench")


async def time_engine(engine: Engine, cases: list[Case], calls: int) -> list[int]:
    """Nanoseconds of each ``await engine.decide(...)`` with in-memory ports."""
    samples = [0] * calls
    clock = time.perf_counter_ns
    rotation = itertools.cycle(cases)
    audit, challenges = engine.audit, engine.challenges
    assert isinstance(audit, MemoryAudit) and isinstance(challenges, MemoryChallenges)
    for i in range(calls):
        if i % 1000 == 0:  # keep the in-memory ports from growing without bound (untimed)
            audit.events.clear()
            challenges.items.clear()
        request = next(rotation).request
        t0 = clock()
        await engine.decide(request, caller=BENCH_APP)
        samples[i] = clock() - t0
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~10 s run")
    parser.add_argument("--rounds", type=int, default=None, help="alternating timing rounds")
    parser.add_argument("--calls", type=int, default=None, help="evaluate calls per round")
    args = parser.parse_args(argv)
    rounds = args.rounds or (4 if args.quick else 8)
    calls = args.calls or (15_000 if args.quick else 25_000)
    engine_calls = calls // 2

    started = time.monotonic()
    policy = load_policy_text(_common.policy_text(), source="bench-policy.yaml")
    compiled = compile_policy(policy)
    scan = unindexed(compiled)
    cases = build_cases(compiled)

    outcomes: Counter[str] = Counter()
    for case in cases:
        a = evaluate(compiled, case.request, case.risk, case.proven, now=NOW, binding=case.binding)
        b = evaluate(scan, case.request, case.risk, case.proven, now=NOW, binding=case.binding)
        if not _same(a, b):
            note(f"decide: indexed and unindexed disagree on {case.request}: {a} != {b}")
            return 1
        outcomes[a.outcome.value + ("+mask" if a.mask else "")] += 1
    indexed_candidates = statistics.fmean(
        len(compiled.candidates(c.request.action.value, c.request.pii)) for c in cases
    )
    scan_candidates = statistics.fmean(
        len(scan.candidates(c.request.action.value, c.request.pii)) for c in cases
    )
    note(
        f"decide: {len(policy.rules)} rules, {len(policy.pii)} PII classes, {len(cases)} requests "
        f"({dict(sorted(outcomes.items()))}); {rounds} rounds x {calls} calls"
    )

    engine = Engine(
        policy=PolicyHolder(compiled),
        risk=CarriedRisk(),
        grants=None,
        ledger=MemoryGrantLedger(),
        challenges=MemoryChallenges(),
        audit=MemoryAudit(),
        clock=FixedClock(NOW + timedelta(seconds=1)),
    )

    # Warm-up: caches, CEL program, branch paths, allocator.
    time_evaluate(compiled, cases, 5_000)
    time_evaluate(scan, cases, 5_000)

    fast: list[int] = []
    slow: list[int] = []
    engine_ns: list[int] = []
    gc.collect()
    with asyncio.Runner() as runner:
        runner.run(time_engine(engine, cases, 2_000))  # warm-up
        # Alternate the variants in rounds, so drift in machine load hits them alike.
        for r in range(rounds):
            first, second = (compiled, scan) if r % 2 == 0 else (scan, compiled)
            for variant in (first, second):
                out = fast if variant is compiled else slow
                out.extend(time_evaluate(variant, cases, calls))
            engine_ns.extend(runner.run(time_engine(engine, cases, engine_calls)))

    idx, base, eng = summary(fast), summary(slow), summary(engine_ns)
    note(f"decide: measured in {time.monotonic() - started:.1f} s")
    common = {"samples": idx["n"], "rules": len(policy.rules), "requests": len(cases)}
    baseline_is = "evaluate on the same policy compiled without its PII index (rule scan)"
    emit(BENCH, "evaluate_p50_us", idx["p50"], "us", base["p50"], baseline_is=baseline_is, **common)
    emit(
        BENCH,
        "evaluate_p99_us",
        idx["p99"],
        "us",
        base["p99"],
        baseline_is=baseline_is,
        target=f"<= {TARGET_P99_US:g} us (no audit)",
        target_met=idx["p99"] <= TARGET_P99_US,
        **common,
    )
    emit(BENCH, "evaluate_mean_us", idx["mean"], "us", base["mean"], baseline_is=baseline_is)
    emit(
        BENCH,
        "candidate_rules_mean",
        indexed_candidates,
        "rules",
        scan_candidates,
        baseline_is="rules the unindexed scan tests per request",
    )
    emit(
        BENCH,
        "evaluate_p99_ratio",
        idx["p99"] / base["p99"],
        "x",
        1.0,
        baseline_is="indexed p99 / unindexed p99 (below 1 = the index pays off)",
    )
    engine_base = "evaluate p50/p99 (indexed) in the same run"
    extra = {"samples": eng["n"], "ports": "in-memory (MemoryAudit, MemoryChallenges, ...)"}
    emit(BENCH, "engine_decide_p50_us", eng["p50"], "us", idx["p50"], baseline_is=engine_base)
    emit(
        BENCH,
        "engine_decide_p99_us",
        eng["p99"],
        "us",
        idx["p99"],
        baseline_is=engine_base,
        **extra,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
