"""``ContextRisk``: real requests scored from the context, the history and the counters; the
same scoring for ``risk eval``'s observations; fail closed; the decision's audit event."""

from __future__ import annotations

import secrets
import tempfile
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from piigate.clock import FixedClock
from piigate.crypto.secret import Secret
from piigate.model import (
    AccessRequest,
    Action,
    Context,
    Outcome,
    Resource,
    RiskAssessment,
    Signal,
    Subject,
)
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.ports import RateCounters
from piigate.risk import engine as engine_module
from piigate.risk.behaviour import APPROACHING_LIMIT, Behaviour
from piigate.risk.clients import ClientParser
from piigate.risk.context import SteadySignals, steady_signals
from piigate.risk.engine import ContextRisk, combine
from piigate.risk.geo import GeoLookupError, MemoryLocator
from piigate.risk.memory_history import MemoryHistory
from piigate.risk.observation import Observation, Place
from piigate.risk.observer import ContextObserver
from piigate.stepup.engine import Engine
from piigate.stepup.ports import MemoryAudit, MemoryChallenges, MemoryGrantLedger
from piigate.store.db import Database
from piigate.store.memory_counters import MemoryCounters
from piigate.store.redis_counters import RedisCounters
from piigate.store.risk_history import SqlHistoryStore
from stepup_support import RecordingAudit

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KEY = Secret(b"k" * 32)
OSLO = Place("NO", "Oslo", "Oslo", 59.91, 10.75, 20.0, 2119)
NEW_YORK = Place("US", "New York", "New York", 40.71, -74.01, 20.0, 7922)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
HOME = Context("81.2.69.160", CHROME, "device-1")
POLICY = textwrap.dedent(
    """
    version: 1
    levels: {aal1: {acr: a1}, aal2: {acr: a2}}
    pii: {ssn: {sensitivity: high}}
    factors: {totp: {level: aal2}}
    rules:
      - name: read-ssn
        when: {pii: [ssn], action: [read]}
        require: {level: aal2}
        otherwise: mask
      - name: risky
        when: {risk_at_least: 60}
        require: {level: aal2}
    risk:
      velocity: {weight: 30, window: 1m, limit: 5, ip_limit: 100}
    """
)
HOLDER = PolicyHolder(compile_policy(load_policy_text(POLICY)))


def engine(
    counters: RateCounters | None = None,
    *,
    history: MemoryHistory | None = None,
    audit: RecordingAudit | None = None,
) -> ContextRisk:
    geo = MemoryLocator({"81.2.69.160": OSLO, "198.51.100.1": OSLO, "7.7.7.7": NEW_YORK})
    return ContextRisk(
        observer=ContextObserver(geo=geo, clients=ClientParser(), key=KEY),
        history=history if history is not None else MemoryHistory(),
        behaviour=Behaviour(
            counters if counters is not None else MemoryCounters(),
            audit if audit is not None else RecordingAudit(),
            key=KEY,
        ),
        policy=HOLDER,
    )


def request(
    context: Context = HOME,
    *,
    subject: str = "ann",
    action: Action = Action.READ,
    carried: RiskAssessment | None = None,
) -> AccessRequest:
    return AccessRequest(
        Subject(subject),
        action,
        frozenset({"ssn"}),
        Resource("customer", "7"),
        context=context,
        risk=carried,
    )


def named(assessment: RiskAssessment) -> dict[str, int]:
    return {s.name: s.weight for s in assessment.signals}


async def test_a_first_activity_has_no_history_and_a_routine_one_scores_nothing() -> None:
    risk = engine()
    first = await risk.assess(request(), now=T0)
    assert named(first) == {"no_history": 20} and first.score == 20
    for day in range(10):
        await risk.verified("ann", HOME, now=T0 + timedelta(days=day))
    usual = await risk.assess(request(), now=T0 + timedelta(days=10))
    assert usual == RiskAssessment(0, (), usual.evidence)


async def test_a_stranger_from_far_away_scores_high() -> None:
    risk = engine()
    for day in range(10):
        await risk.verified("ann", HOME, now=T0 + timedelta(days=day))
    at = T0 + timedelta(days=9, hours=1)
    stranger = await risk.assess(request(Context("7.7.7.7", FIREFOX, "other")), now=at)
    fired = named(stranger)
    assert {"new_device", "new_country", "new_asn", "impossible_travel"} <= set(fired)
    assert stranger.score == min(100, sum(fired.values())) == 100
    travel = next(s for s in stranger.signals if s.name == "impossible_travel")
    assert "km/h" in travel.detail


async def test_only_verified_activity_enters_the_history() -> None:
    risk = engine()
    for _ in range(3):
        await risk.assess(request(), now=T0)
    assert "no_history" in named(await risk.assess(request(), now=T0))


async def test_a_request_without_context_gets_behaviour_signals_only() -> None:
    risk = engine()
    quiet = await risk.assess(request(Context()), now=T0)
    assert quiet == RiskAssessment()
    for n in range(6):
        busy = await risk.assess(request(Context()), now=T0 + timedelta(seconds=n))
    assert named(busy) == {"velocity": 30}


async def test_the_carried_risk_only_raises() -> None:
    risk = engine()
    carried = RiskAssessment(95, (Signal("new_country", 0),))
    raised = await risk.assess(request(carried=carried), now=T0)
    assert raised.score == 95 and named(raised) == {"no_history": 20, "new_country": 0}
    lower = await risk.assess(request(carried=RiskAssessment(5)), now=T0)
    assert lower.score == 20
    assert combine([Signal("a", 70), Signal("b", 70)]).score == 100
    assert combine([Signal("a", 10)], RiskAssessment(0, (Signal("a", 40),))).score == 40


async def test_replaying_observations_scores_as_requests_do() -> None:
    live, replay = engine(), engine()
    observer = replay.observer
    assert observer is not None
    for day in range(5):
        at = T0 + timedelta(days=day)
        await live.verified("ann", HOME, now=at)
        await replay.remember_observation("ann", observer.observe(HOME, now=at))
    at = T0 + timedelta(days=5)
    odd = Context("7.7.7.7", FIREFOX, "device-1")
    assert await live.assess(request(odd), now=at) == await replay.assess_observation(
        "ann",
        observer.observe(odd, now=at),
        action=Action.READ,
        pii=True,
        resource=Resource("customer", "7"),
        now=at,
    )


async def test_failed_stepups_are_fed_and_fire() -> None:
    risk = engine()
    for n in range(3):
        await risk.failed_stepup("ann", now=T0 + timedelta(seconds=n))
    assert named(await risk.assess(request(Context()), now=T0 + timedelta(seconds=5))) == {
        "failed_stepups": 40
    }


async def test_the_evidence_holds_no_raw_address_user_agent_or_device() -> None:
    assessed = await engine().assess(request(), now=T0)
    seen = dict(assessed.evidence)
    assert seen["country"] == "NO" and seen["asn"] == "AS2119"
    assert seen["client"] == "Chrome/Windows/desktop" and len(seen["ip"]) == 32
    text = repr(assessed)
    for raw in ("81.2.69", "Mozilla", "device-1"):
        assert raw not in text


class BrokenGeo:
    def locate(self, ip: str) -> Place:
        raise GeoLookupError("the city database failed: ValueError")


async def test_a_fault_fails_closed_in_the_engine() -> None:
    risk = engine()
    risk.observer = ContextObserver(geo=BrokenGeo(), clients=ClientParser(), key=KEY)
    with pytest.raises(GeoLookupError):
        await risk.assess(request(), now=T0)
    audit = MemoryAudit()
    decider = Engine(
        policy=HOLDER,
        risk=risk,
        grants=None,
        ledger=MemoryGrantLedger(),
        challenges=MemoryChallenges(),
        audit=audit,
        clock=FixedClock(T0),
    )
    decision = await decider.decide(request())
    assert decision.outcome is not Outcome.ALLOW
    assert [s.name for s in decision.risk.signals] == ["risk_unavailable"]


async def test_the_decision_event_names_each_contribution_and_no_raw_context() -> None:
    audit = MemoryAudit()
    decider = Engine(
        policy=HOLDER,
        risk=engine(),
        grants=None,
        ledger=MemoryGrantLedger(),
        challenges=MemoryChallenges(),
        audit=audit,
        clock=FixedClock(T0),
    )
    await decider.decide(request())
    [event] = audit.events
    risk = event.data["risk"]
    assert isinstance(risk, dict)
    assert risk["score"] == 20 and risk["signals"] == [{"name": "no_history", "weight": 20}]
    assert risk["context"]["country"] == "NO"  # type: ignore[index]
    text = repr(event.data)
    assert "81.2.69.160" not in text and "Mozilla" not in text and "ip" not in event.data


@pytest.fixture
async def shared_redis(redis_url: str) -> AsyncIterator[tuple[RedisCounters, RedisCounters]]:
    prefix = f"piigate-test:{secrets.token_hex(6)}:"
    first, second = RedisCounters(redis_url, prefix=prefix), RedisCounters(redis_url, prefix=prefix)
    try:
        yield first, second
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.redis
async def test_two_nodes_share_the_counters_in_redis(
    shared_redis: tuple[RedisCounters, RedisCounters],
) -> None:
    audit = RecordingAudit()
    node_a = engine(shared_redis[0], audit=audit)
    node_b = engine(shared_redis[1], audit=audit)
    for n in range(5):
        node = node_a if n % 2 else node_b
        assert "velocity" not in named(
            await node.assess(request(Context()), now=T0 + timedelta(seconds=n))
        )
    # The sixth request, on either node, is over the limit of 5 counted across both.
    assert "velocity" in named(
        await node_a.assess(request(Context()), now=T0 + timedelta(seconds=6))
    )
    assert "velocity" in named(
        await node_b.assess(request(Context()), now=T0 + timedelta(seconds=7))
    )
    # One early warning for the window, though both nodes passed 80 %.
    assert [d["signal"] for d in audit.of(APPROACHING_LIMIT)] == ["velocity"]
    for n in range(3):
        await (node_a if n % 2 else node_b).failed_stepup("ann", now=T0 + timedelta(seconds=n))
    assert "failed_stepups" in named(
        await node_a.assess(request(Context()), now=T0 + timedelta(seconds=9))
    )


async def test_repeated_requests_reuse_the_context_signals_until_something_changes() -> None:
    # The store's history hands out the same objects while cached: the memo's case.
    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(f"sqlite:///{tmp}/risk.db")
        await db.upgrade()
        risk = engine()
        risk.history = SqlHistoryStore(db, subject_ttl=1e9, population_refresh=1e9)
        first = await risk.assess(request(), now=T0)
        again = await risk.assess(request(), now=T0 + timedelta(seconds=1))
        assert first.signals == again.signals and "no_history" in named(first)
        # This node's verified activity drops the cached history: the signals are recomputed.
        await risk.verified("ann", HOME, now=T0 + timedelta(seconds=2))
        after = await risk.assess(request(), now=T0 + timedelta(seconds=3))
        assert "no_history" not in named(after)
        # Another place right after: the travel signal is computed, never taken from the memo.
        far = await risk.assess(
            request(Context("7.7.7.7", CHROME, "device-1")), now=T0 + timedelta(seconds=4)
        )
        assert "impossible_travel" in named(far)
        back = await risk.assess(request(), now=T0 + timedelta(seconds=5))
        assert "impossible_travel" not in named(back)
        await db.close()


async def test_the_steady_signals_of_a_subjects_recent_contexts_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    computed: list[str | None] = []

    def counting(observation: Observation, *inputs: Any) -> SteadySignals:
        computed.append(observation.ip_key)
        return steady_signals(observation, *inputs)

    monkeypatch.setattr(engine_module, "steady_signals", counting)
    risk = engine()
    for day in range(5):
        await risk.verified("ann", HOME, now=T0 + timedelta(days=day))
    office, at = Context("198.51.100.1", FIREFOX, "device-2"), T0 + timedelta(days=5)
    found = [
        await risk.assess(request(context), now=at + timedelta(minutes=n))
        for n, context in enumerate([HOME, office] * 3)
    ]
    assert len(computed) == 2  # once per context, though they alternate
    assert found[0] == found[2] == found[4] and named(found[0]) == {}
    assert found[1] == found[3] == found[5] and "new_device" in named(found[1])
    # The subject's history changes: each context's signals are worked out again, once.
    await risk.verified("ann", office, now=at + timedelta(hours=1))
    for n, context in enumerate([HOME, office, HOME, office]):
        await risk.assess(request(context), now=at + timedelta(hours=2, minutes=n))
    assert len(computed) == 4


async def test_travel_is_judged_at_each_request_from_a_kept_context() -> None:
    risk = engine()
    for day in range(5):
        await risk.verified("ann", HOME, now=T0 + timedelta(days=day))
    last, far = T0 + timedelta(days=4), Context("7.7.7.7", CHROME, "device-1")
    for hours in (1, 2):  # Oslo to New York (5,900 km) in an hour or two
        assert "impossible_travel" in named(
            await risk.assess(request(far), now=last + timedelta(hours=hours))
        )
    calm = await risk.assess(request(far), now=last + timedelta(days=1))  # 240 km/h
    assert "impossible_travel" not in named(calm) and "new_country" in named(calm)
    # A request of an earlier time (they may arrive out of order) is judged at its own time,
    # as an engine that never saw this context judges it.
    early = await risk.assess(request(far), now=last + timedelta(hours=3))
    fresh = await engine(history=risk.history).assess(request(far), now=last + timedelta(hours=3))
    assert early == fresh and "impossible_travel" in named(early)


async def test_a_policy_reload_takes_effect_at_the_next_assessment(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    risk = engine()
    risk.policy = PolicyHolder.from_file(str(path))
    for n in range(4):  # 4 of the limit of 5 within the minute
        assessed = await risk.assess(request(), now=T0 + timedelta(seconds=n))
    assert named(assessed) == {"no_history": 20}
    reloaded = POLICY.replace("window: 1m, limit: 5", "window: 10m, limit: 2")
    path.write_text(reloaded + "  no_history: 35\n")
    risk.policy.reload()
    # New weights, and counters over the new window (which start from this request).
    for n in range(2):
        assessed = await risk.assess(request(), now=T0 + timedelta(seconds=5 + n))
        assert named(assessed) == {"no_history": 35}
    assessed = await risk.assess(request(), now=T0 + timedelta(seconds=7))
    assert named(assessed) == {"no_history": 35, "velocity": 30}
