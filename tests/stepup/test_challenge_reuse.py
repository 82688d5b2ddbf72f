"""Unlock challenges named again (``stepup/reuse.py``): a masked read names the challenge an
earlier one opened while it is young and can still be answered; never an approved, denied,
exhausted or expired one; never across what a challenge binds; a step-up opens its own."""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from piigate.callers import Caller
from piigate.clock import FixedClock
from piigate.gateway.http.deciders import EngineDecider
from piigate.model import (
    AccessRequest,
    Action,
    ChallengeState,
    Context,
    Decision,
    Outcome,
    Resource,
    SessionAuth,
    Subject,
)
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.risk import CarriedRisk
from piigate.stepup.engine import Engine
from piigate.stepup.ports import MemoryAudit, MemoryChallenges, MemoryGrantLedger

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
TTL = timedelta(minutes=2)
GATEWAY = Caller.app("key_gateway")
POLICY = textwrap.dedent(
    """\
    version: 1
    levels:
      aal1: {acr: "urn:piigate:aal1"}
      aal2: {acr: "urn:piigate:aal2"}
    pii:
      ssn: {}
      phone: {}
    factors:
      totp: {level: aal2}
    rules:
      - name: read-ssn
        when: {pii: [ssn], action: [read]}
        require: {level: aal2, max_age: 5m}
        otherwise: mask
      - name: read-phone
        when: {pii: [phone], action: [read]}
        require: {level: aal2, max_age: 5m}
    stepup: {challenge_ttl: 2m, max_attempts: 3}
    """
)


@dataclass
class World:
    engine: Engine
    clock: FixedClock
    challenges: MemoryChallenges
    audit: MemoryAudit

    async def read(
        self,
        pii: str = "ssn",
        *,
        record: str = "7",
        session: str = "s-1",
        device: str | None = "d-9",
        caller: Caller = GATEWAY,
    ) -> Decision:
        request = AccessRequest(
            subject=Subject("ann"),
            action=Action.READ,
            pii=frozenset({pii}),
            resource=Resource("customer", record),
            session=SessionAuth(id=session, acr="urn:piigate:aal1", auth_time=T0),
            context=Context(ip="203.0.113.7", device_id=device),
        )
        return await self.engine.decide(request, caller=caller)

    def set(self, challenge_id: str, **changes: object) -> None:
        """Change a stored challenge as verification on any node would."""
        found = self.challenges.items[challenge_id]
        self.challenges.items[challenge_id] = replace(found, **changes)  # type: ignore[arg-type]

    def named(self) -> list[object]:
        """The challenge each decision event names, in order."""
        return [e.data.get("challenge_id") for e in self.audit.events]


@pytest.fixture
def world() -> World:
    counter = itertools.count(1)
    clock = FixedClock(T0)
    challenges = MemoryChallenges()
    audit = MemoryAudit(challenges)
    engine = Engine(
        policy=PolicyHolder(compile_policy(load_policy_text(POLICY))),
        risk=CarriedRisk(),
        grants=None,
        ledger=MemoryGrantLedger(),
        challenges=challenges,
        audit=audit,
        clock=clock,
        ids=lambda prefix: f"{prefix}_{next(counter)}",
    )
    return World(engine, clock, challenges, audit)


def challenge_id(decision: Decision) -> str:
    assert decision.challenge is not None
    return decision.challenge.id


async def test_masked_reads_name_the_challenge_the_first_opened(world: World) -> None:
    first = await world.read()
    assert (first.outcome, first.mask) == (Outcome.ALLOW, frozenset({"ssn"}))
    world.clock.advance((TTL / 2).total_seconds() - 1)
    later = [await world.read() for _ in range(3)]
    assert {challenge_id(d) for d in later} == {challenge_id(first)}
    assert list(world.challenges.items) == [challenge_id(first)]
    # Every decision is audited, each naming the challenge it gave.
    assert world.named() == [challenge_id(first)] * 4
    assert len({e.data["decision_id"] for e in world.audit.events}) == 4


async def test_a_step_up_opens_its_own_challenge_every_time(world: World) -> None:
    first, second = await world.read("phone"), await world.read("phone")
    assert first.outcome is second.outcome is Outcome.STEP_UP
    assert challenge_id(first) != challenge_id(second)
    assert len(world.challenges.items) == 2


@pytest.mark.parametrize(
    "answered",
    [
        {"state": ChallengeState.APPROVED},
        {"state": ChallengeState.DENIED},
        {"state": ChallengeState.EXPIRED},
        {"attempts": 3},  # its attempts spent
    ],
    ids=["approved", "denied", "expired", "attempts-spent"],
)
async def test_a_challenge_that_cannot_be_answered_is_not_named_again(
    world: World, answered: dict[str, object]
) -> None:
    first = challenge_id(await world.read())
    world.set(first, **answered)
    second = challenge_id(await world.read())
    assert second != first
    assert world.challenges.items[second].state is ChallengeState.PENDING
    # The decision names the challenge opened for it; the lost one is not tried again.
    assert challenge_id(await world.read()) == second
    assert world.named() == [first, second, second]


async def test_a_challenge_past_half_its_life_is_not_named_again(world: World) -> None:
    first = challenge_id(await world.read())
    world.clock.advance((TTL / 2).total_seconds())
    second = challenge_id(await world.read())
    assert second != first
    assert world.challenges.items[second].expires_at == T0 + TTL / 2 + TTL


async def test_a_challenge_gone_from_the_store_is_replaced(world: World) -> None:
    first = challenge_id(await world.read())
    del world.challenges.items[first]  # e.g. its commit failed: it was never stored
    second = challenge_id(await world.read())
    assert second != first and second in world.challenges.items
    assert world.named() == [first, second]


@pytest.mark.parametrize(
    "other",
    [
        {"record": "8"},
        {"session": "s-2"},
        {"device": None},
        {"caller": Caller.app("key_other_app")},
        {"caller": Caller.person(Subject("ann"), SessionAuth(id="s-1"))},
    ],
    ids=["record", "session", "device", "app", "person"],
)
async def test_only_a_request_binding_all_the_same_shares_a_challenge(
    world: World, other: dict[str, object]
) -> None:
    first = challenge_id(await world.read())
    second = challenge_id(await world.read(**other))  # type: ignore[arg-type]
    assert second != first
    assert challenge_id(await world.read()) == first


def early_read() -> AccessRequest:
    """What :meth:`World.read` asks, for ``decide_early``."""
    return AccessRequest(
        subject=Subject("ann"),
        action=Action.READ,
        pii=frozenset({"ssn"}),
        resource=Resource("customer", "7"),
        session=SessionAuth(id="s-1", acr="urn:piigate:aal1", auth_time=T0),
        context=Context(ip="203.0.113.7", device_id="d-9"),
    )


async def test_an_early_decision_is_audited_by_its_task_naming_the_challenge_it_gave(
    world: World,
) -> None:
    first = challenge_id(await world.read())
    world.set(first, state=ChallengeState.APPROVED)
    request = early_read()
    early, audited = await world.engine.decide_early(request, caller=GATEWAY)
    assert challenge_id(early) == first  # as decided: the challenge remembered
    assert len(world.audit.events) == 1  # not audited yet
    decision = await audited
    assert decision.id == early.id and challenge_id(decision) != first
    assert world.named() == [first, challenge_id(decision)]


async def test_an_early_decisions_audit_event_is_handed_over_before_it_returns(
    world: World,
) -> None:
    """decide_early gives its task a turn first: the event is with the audit sink (here one
    that appends at once) before the edge starts its own work (the reverse proxy: forwarding
    the request upstream), though the task is not awaited yet."""
    first = challenge_id(await world.read())
    early, audited = await world.engine.decide_early(early_read(), caller=GATEWAY)
    assert challenge_id(early) == first
    assert world.named() == [first, first]  # already appended, the task not awaited
    assert (await audited).id == early.id


async def test_the_gateways_audited_verdict_names_the_challenge_as_audited(world: World) -> None:
    """``EngineDecider.decide_early``: the verdict as audited is the early one when its commit
    named the same challenge, and names the replacement when the commit had to replace it."""
    decider = EngineDecider(world.engine, "http://gateway.test")
    first = challenge_id(await world.read())
    early, audited = await decider.decide_early(early_read(), GATEWAY)
    assert early.challenge is not None and early.challenge["id"] == first
    assert await audited() is early  # the same decision audited: the same verdict
    world.set(first, state=ChallengeState.APPROVED)
    early, audited = await decider.decide_early(early_read(), GATEWAY)
    assert early.challenge is not None and early.challenge["id"] == first
    final = await audited()
    assert final.challenge is not None and final.challenge["id"] != first
    assert final.decision_id == early.decision_id
    assert final.challenge["id"] == world.named()[-1]
