"""The decision engine with in-memory ports: challenges, single-use grants, audit, fail closed."""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import structlog

from piigate.callers import Caller
from piigate.clock import FixedClock
from piigate.errors import ServiceUnavailable
from piigate.model import (
    AccessRequest,
    Action,
    Context,
    Decision,
    Grant,
    Outcome,
    Resource,
    RiskAssessment,
    RuleStatus,
    SessionAuth,
    Subject,
    Transaction,
)
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.risk import CarriedRisk
from piigate.stepup.binding import binding_digest
from piigate.stepup.engine import Engine
from piigate.stepup.ports import MemoryAudit, MemoryChallenges, MemoryGrantLedger

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
# The app asking for every decision here, unless a test names another.
APP = Caller.app("key_app")
PAYEE = "DE89370400440532013000"

POLICY = textwrap.dedent(
    """\
    version: 1
    levels:
      aal1: {acr: "urn:piigate:aal1"}
      aal2: {acr: "urn:piigate:aal2", aliases: ["2", "urn:okta:loa:2fa:any"]}
      aal3: {acr: "urn:piigate:aal3"}
    pii:
      ssn: {}
      phone: {}
    factors:
      totp: {level: aal2}
      webauthn: {level: aal3}
    rules:
      - name: delete-pii
        when: {pii: any, action: [delete]}
        require: {level: aal3, max_age: 0}
      - name: read-phone
        when: {pii: [phone], action: [read]}
        require: {level: aal2, max_age: 5m}
      - name: read-ssn
        when: {pii: [ssn], action: [read]}
        require: {level: aal2, max_age: 5m}
        otherwise: mask
      - name: pay
        when: {action: [transact], amount_over: 100}
        require: {level: aal3, max_age: 0, methods: [webauthn]}
    stepup: {challenge_ttl: 2m, max_attempts: 3}
    """
)


class Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(f"grant rejected: {reason}")
        self.reason = reason


@dataclass
class FakeVerifier:
    """Grants by token; rejects like the real verifier does (unknown, expired, wrong subject)."""

    grants: dict[str, Grant] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def verify(self, token: str, *, now: datetime, expected_subject: str) -> Grant:
        self.calls.append(expected_subject)
        grant = self.grants.get(token)
        if grant is None:
            raise Rejected("bad_signature")
        if grant.subject_id != expected_subject:
            raise Rejected("wrong_subject")
        if grant.expires_at <= now:
            raise Rejected("expired")
        return grant


class BrokenRisk:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def assess(self, request: AccessRequest, *, now: datetime) -> RiskAssessment:
        raise self.error


@dataclass
class World:
    engine: Engine
    clock: FixedClock
    verifier: FakeVerifier
    ledger: MemoryGrantLedger
    challenges: MemoryChallenges
    audit: MemoryAudit

    async def decide(self, request: AccessRequest, *, caller: Caller = APP) -> Decision:
        """The engine's decision, asked by ``caller`` as the decisions route asks it."""
        return await self.engine.decide(request, caller=caller)


def make_world(*, policy: str | None = POLICY, risk: object | None = None) -> World:
    counter = itertools.count(1)
    clock = FixedClock(T0)
    verifier = FakeVerifier()
    ledger = MemoryGrantLedger()
    challenges = MemoryChallenges()
    audit = MemoryAudit()
    holder = PolicyHolder(compile_policy(load_policy_text(policy)) if policy else None)
    engine = Engine(
        policy=holder,
        risk=risk or CarriedRisk(),  # type: ignore[arg-type]
        grants=verifier,
        ledger=ledger,
        challenges=challenges,
        audit=audit,
        clock=clock,
        ids=lambda prefix: f"{prefix}_{next(counter)}",
    )
    return World(engine, clock, verifier, ledger, challenges, audit)


@pytest.fixture
def world() -> World:
    return make_world()


def delete_ssn(
    subject: str = "ann", record: str = "42", grants: tuple[str, ...] = ()
) -> AccessRequest:
    return AccessRequest(
        subject=Subject(subject),
        action=Action.DELETE,
        pii=frozenset({"ssn"}),
        resource=Resource("customer", record),
        session=SessionAuth(id="s-1", acr="urn:piigate:aal1", auth_time=T0 - timedelta(hours=1)),
        context=Context(ip="203.0.113.7", device_id="d-9"),
        grants=grants,
        binding_fields={"method": "DELETE", "path": f"/customers/{record}"},
    )


def bound_grant(
    request: AccessRequest,
    *,
    grant_id: str = "grt_1",
    subject: str = "ann",
    caller: Caller = APP,
) -> Grant:
    """A grant bound to ``request`` as ``caller`` asked for it (its audience)."""
    return Grant(
        id=grant_id,
        subject_id=subject,
        level="aal3",
        amr=("hwk",),
        auth_time=T0 - timedelta(seconds=5),
        expires_at=T0 + timedelta(minutes=5),
        scope=frozenset({("ssn", "delete")}),
        session_id="s-1",
        binding=binding_digest(request, audience=caller.audience),
        challenge_id="chl_0",
        audience=caller.audience,
    )


NO_SESSION = SessionAuth()


def read(pii: str, session: SessionAuth = NO_SESSION, **extra: object) -> AccessRequest:
    return AccessRequest(
        subject=Subject("ann"),
        action=Action.READ,
        pii=frozenset({pii}),
        resource=Resource("customer", "7"),
        session=session,
        **extra,  # type: ignore[arg-type]
    )


# -- step-up and challenges --------------------------------------------------------------------


async def test_step_up_stores_a_challenge_bound_to_the_request(world: World) -> None:
    request = delete_ssn()
    decision = await world.decide(request)
    assert decision.outcome is Outcome.STEP_UP
    assert decision.rules == ("delete-pii",)
    required = decision.required
    assert required is not None
    assert (required.level, required.max_age, required.methods) == ("aal3", 0, ("webauthn",))
    assert required.acr_values == ("urn:piigate:aal3",)
    assert required.binding == binding_digest(request, audience=APP.audience)

    challenge = decision.challenge
    assert challenge is not None
    assert await world.challenges.get(challenge.id) == challenge
    assert challenge.requirement == required
    assert challenge.requirement.binding == binding_digest(request, audience=APP.audience)
    assert challenge.created_at == T0
    assert challenge.expires_at == T0 + timedelta(minutes=2)  # stepup.challenge_ttl
    assert challenge.max_attempts == 3
    assert challenge.decision_id == decision.id
    assert challenge.requested_by == "key_app"
    assert challenge.audience == "key_app"  # its grant is for the app that asked
    assert (challenge.subject_id, challenge.session_id, challenge.device_id) == (
        "ann",
        "s-1",
        "d-9",
    )
    assert (challenge.action, challenge.pii) == (Action.DELETE, frozenset({"ssn"}))


async def test_a_recency_step_up_is_not_bound(world: World) -> None:
    decision = await world.decide(read("phone"))
    assert decision.outcome is Outcome.STEP_UP
    assert decision.required is not None
    assert (decision.required.level, decision.required.max_age) == ("aal2", 300)
    assert decision.required.binding is None
    assert decision.challenge is not None
    assert decision.challenge.requirement.binding is None


async def test_the_binding_covers_the_transaction(world: World) -> None:
    def pay(amount: str) -> AccessRequest:
        return AccessRequest(
            subject=Subject("ann"),
            action=Action.TRANSACT,
            transaction=Transaction(Decimal(amount), "EUR", PAYEE),
        )

    first = await world.decide(pay("250.00"))
    second = await world.decide(pay("2500.00"))
    assert first.required is not None and second.required is not None
    assert first.required.binding and second.required.binding
    assert first.required.binding != second.required.binding
    assert first.challenge is not None
    assert first.challenge.transaction == Transaction(Decimal("250.00"), "EUR", PAYEE)


async def test_no_challenge_when_allowed_or_denied(world: World) -> None:
    allowed = await world.decide(AccessRequest(Subject("ann"), Action.LOGIN))
    assert allowed.outcome is Outcome.ALLOW and allowed.challenge is None
    assert world.challenges.items == {}


# -- grants ------------------------------------------------------------------------------------


async def test_a_bound_grant_allows_once_then_the_replay_steps_up(world: World) -> None:
    request = delete_ssn(grants=("tok-bound-grant-1",))
    world.verifier.grants["tok-bound-grant-1"] = bound_grant(request)

    first = await world.decide(request)
    assert first.outcome is Outcome.ALLOW
    assert first.challenge is None
    assert [(p.source, p.grant_id) for p in first.used] == [("grant", "grt_1")]
    assert world.ledger.used == {"grt_1": T0 + timedelta(minutes=5)}

    replay = await world.decide(request)
    assert replay.outcome is Outcome.STEP_UP
    assert replay.used == ()
    assert replay.challenge is not None and replay.required is not None
    assert replay.required.binding == binding_digest(request, audience=APP.audience)
    assert world.verifier.calls == ["ann", "ann"]


async def test_a_bound_grant_is_not_spent_on_another_request(world: World) -> None:
    original = delete_ssn(record="42")
    world.verifier.grants["tok"] = bound_grant(original)
    other = delete_ssn(record="43", grants=("tok",))
    decision = await world.decide(other)
    assert decision.outcome is Outcome.STEP_UP
    assert world.ledger.used == {}
    # ... and is still good for the request it was bound to.
    again = await world.decide(delete_ssn(record="42", grants=("tok",)))
    assert again.outcome is Outcome.ALLOW


async def test_a_reusable_grant_is_not_consumed(world: World) -> None:
    grant = Grant(
        id="grt_r",
        subject_id="ann",
        level="aal2",
        amr=("otp",),
        auth_time=T0 - timedelta(seconds=60),
        expires_at=T0 + timedelta(minutes=15),
        scope=frozenset({("phone", "read")}),
        audience=APP.audience,
    )
    world.verifier.grants["tok-r"] = grant
    for _ in range(3):
        decision = await world.decide(read("phone", grants=("tok-r",)))
        assert decision.outcome is Outcome.ALLOW
    assert world.ledger.used == {}
    # Its scope covers reading phones only.
    decision = await world.decide(read("ssn", grants=("tok-r",)))
    assert (decision.outcome, decision.mask) == (Outcome.ALLOW, frozenset({"ssn"}))


# -- grants are for the app that asked ---------------------------------------------------------

APP_B = Caller.app("key_other")


async def test_another_apps_bound_grant_is_not_counted_nor_spent(world: World) -> None:
    # App A's step-up yields a single-use grant bound to A's request; app B presents it for the
    # same subject, action, PII and resource.
    request = delete_ssn(grants=("tok-a",))
    world.verifier.grants["tok-a"] = bound_grant(request)
    stolen = await world.decide(request, caller=APP_B)
    assert stolen.outcome is Outcome.STEP_UP and stolen.used == ()
    assert world.audit.events[-1].data["rejected_grants"] == ["wrong_audience"]
    # B's request has its own binding: A's grant could not match it even if a rule shared it.
    assert stolen.required is not None
    assert stolen.required.binding == binding_digest(request, audience=APP_B.audience)
    assert stolen.required.binding != binding_digest(request, audience=APP.audience)
    assert world.ledger.used == {}
    # Not spent: app A still gets its allow, once.
    assert (await world.decide(request)).outcome is Outcome.ALLOW
    assert (await world.decide(request)).outcome is Outcome.STEP_UP


def phone_grant(caller: Caller) -> Grant:
    """A reusable aal2 grant for reading phone numbers, obtained through ``caller``."""
    return Grant(
        id="grt_p",
        subject_id="ann",
        level="aal2",
        amr=("otp",),
        auth_time=T0 - timedelta(seconds=60),
        expires_at=T0 + timedelta(minutes=15),
        scope=frozenset({("phone", "read")}),
        audience=caller.audience,
    )


async def test_another_apps_unbound_grant_is_not_counted(world: World) -> None:
    world.verifier.grants["tok-a"] = phone_grant(APP)
    assert (await world.decide(read("phone", grants=("tok-a",)))).outcome is Outcome.ALLOW
    for other in (APP_B, Caller.person("ann")):
        decision = await world.decide(read("phone", grants=("tok-a",)), caller=other)
        assert decision.outcome is Outcome.STEP_UP
        assert world.audit.events[-1].data["rejected_grants"] == ["wrong_audience"]
    # A grant naming no audience (or a decision naming no requester) counts for nobody.
    world.verifier.grants["tok-none"] = replace(phone_grant(APP), audience=None)
    decision = await world.decide(read("phone", grants=("tok-none",)))
    assert decision.outcome is Outcome.STEP_UP
    anonymous = await world.engine.decide(read("phone", grants=("tok-a",)))
    assert anonymous.outcome is Outcome.STEP_UP


async def test_a_rule_may_accept_grants_from_any_app() -> None:
    phone_rule = "when: {pii: [phone], action: [read]}\n    require: {level: aal2, max_age: 5m"
    shared = POLICY.replace(phone_rule, phone_rule + ", grants_from: any_app")
    assert shared != POLICY
    world = make_world(policy=shared)
    world.verifier.grants["tok-a"] = phone_grant(APP)
    decision = await world.decide(read("phone", grants=("tok-a",)), caller=APP_B)
    assert decision.outcome is Outcome.ALLOW
    assert [p.foreign for p in decision.used] == [True]
    assert "rejected_grants" not in world.audit.events[-1].data
    # Only that rule shares: reading an SSN (mask otherwise) still wants B's own grant.
    world.verifier.grants["tok-s"] = replace(phone_grant(APP), scope=frozenset({("ssn", "read")}))
    masked = await world.decide(read("ssn", grants=("tok-s",)), caller=APP_B)
    assert (masked.outcome, masked.mask) == (Outcome.ALLOW, frozenset({"ssn"}))
    assert world.audit.events[-1].data["rejected_grants"] == ["wrong_audience"]
    # A bound grant stays with its app: the rule that binds cannot share (the loader refuses).
    request = delete_ssn(grants=("tok-b",))
    world.verifier.grants["tok-b"] = bound_grant(request)
    bound = await world.decide(request, caller=APP_B)
    assert bound.outcome is Outcome.STEP_UP and world.ledger.used == {}
    assert world.audit.events[-1].data["rejected_grants"] == ["wrong_audience"]


async def test_another_subjects_grant_is_ignored_and_the_reason_audited(world: World) -> None:
    token = "tok-belongs-to-bob-9f8e7d"
    request = delete_ssn(subject="ann", grants=(token,))
    world.verifier.grants[token] = bound_grant(request, subject="bob")
    decision = await world.decide(request)
    assert decision.outcome is Outcome.STEP_UP
    assert world.ledger.used == {}
    (event,) = world.audit.events
    assert event.data["rejected_grants"] == ["wrong_subject"]
    assert token not in repr(event)


async def test_unknown_and_expired_grants_are_rejected(world: World) -> None:
    request = delete_ssn(grants=("tok-garbage", "tok-old"))
    expired = bound_grant(request, grant_id="grt_old")
    world.verifier.grants["tok-old"] = replace(expired, expires_at=T0 - timedelta(seconds=1))
    decision = await world.decide(request)
    assert decision.outcome is Outcome.STEP_UP
    (event,) = world.audit.events
    assert event.data["rejected_grants"] == ["bad_signature", "expired"]
    assert "tok-garbage" not in repr(event) and "tok-old" not in repr(event)


async def test_grants_disabled() -> None:
    world = make_world()
    world.engine.grants = None
    decision = await world.decide(delete_ssn(grants=("tok",)))
    assert decision.outcome is Outcome.STEP_UP
    assert world.audit.events[0].data["rejected_grants"] == ["grants_disabled"]


# -- audit -------------------------------------------------------------------------------------


async def test_every_decision_is_audited_without_tokens_or_values(world: World) -> None:
    token = "tok-secret-grant-0123456789"
    request = delete_ssn(grants=(token,))
    world.verifier.grants[token] = bound_grant(request)
    payment = AccessRequest(
        Subject("ann"), Action.TRANSACT, transaction=Transaction(Decimal("5000"), "EUR", PAYEE)
    )
    decisions = [
        await world.decide(request),  # allow (spends the grant)
        await world.decide(request),  # step_up (replay)
        await world.decide(read("ssn")),  # allow with mask
        await world.decide(payment),  # step_up
        await world.decide(AccessRequest(Subject("ann"), Action.LOGIN)),  # allow
    ]
    events = world.audit.events
    assert len(events) == len(decisions)
    for event, decision in zip(events, decisions, strict=True):
        assert event.type == "decision"
        assert event.at == T0
        assert event.subject_id == "ann"
        assert event.data["decision_id"] == decision.id
        assert event.data["outcome"] == decision.outcome.value
        assert event.data["rules"] == list(decision.rules)
        assert event.data["policy"] == world.engine.policy.current.digest  # type: ignore[union-attr]
    text = repr(events)
    assert token not in text
    assert PAYEE not in text and "5000" not in text
    assert events[0].data["proofs"] == [{"source": "grant", "level": "aal3", "grant_id": "grt_1"}]
    assert events[1].data["challenge_id"] == decisions[1].challenge.id  # type: ignore[union-attr]
    assert events[1].data["required"] == {"level": "aal3", "max_age": 0}
    assert events[2].data["mask"] == ["ssn"]


# -- failing closed ----------------------------------------------------------------------------


@pytest.mark.parametrize("error", [RuntimeError("boom"), ServiceUnavailable("down")])
async def test_a_failing_risk_engine_denies_pii(error: Exception) -> None:
    world = make_world(risk=BrokenRisk(error))
    fresh = SessionAuth(acr="urn:piigate:aal2", auth_time=T0 - timedelta(seconds=10))
    # With a working risk engine this is an allow ...
    assert (await make_world().decide(read("phone", fresh))).outcome is Outcome.ALLOW
    # ... without one, PII is not released: neither plainly nor masked.
    for request in (read("phone", fresh), read("ssn")):
        decision = await world.decide(request)
        assert decision.outcome is Outcome.DENY
        assert decision.reason == "risk engine unavailable"
        assert decision.risk.score == 100
        assert decision.mask == frozenset()
    assert [e.data["outcome"] for e in world.audit.events] == ["deny", "deny"]


async def test_no_policy_loaded_denies_and_is_audited() -> None:
    world = make_world(policy=None)
    decision = await world.decide(read("phone"))
    assert decision.outcome is Outcome.DENY
    assert decision.reason == "no policy loaded"
    assert decision.challenge is None
    (event,) = world.audit.events
    assert event.data["outcome"] == "deny"
    assert event.data["policy"] is None


# -- IdP sessions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "acr", ["urn:piigate:aal2", "urn:okta:loa:2fa:any", "2", "urn:piigate:aal3"]
)
async def test_an_idp_acr_or_alias_resolves_to_its_level(world: World, acr: str) -> None:
    session = SessionAuth(
        id="s-9", acr=acr, amr=("pwd", "otp"), auth_time=T0 - timedelta(minutes=4)
    )
    decision = await world.decide(read("phone", session))
    assert decision.outcome is Outcome.ALLOW
    (proof,) = decision.used
    assert proof.source == "idp"
    assert proof.level in ("aal2", "aal3")
    assert proof.methods == frozenset({"totp"})


@pytest.mark.parametrize(
    "session",
    [
        SessionAuth(acr="urn:piigate:aal1", auth_time=T0),  # too weak
        SessionAuth(acr="urn:unknown:loa", auth_time=T0),  # not a level of this policy
        SessionAuth(acr="urn:piigate:aal2", auth_time=T0 - timedelta(seconds=301)),  # too old
        SessionAuth(acr="urn:piigate:aal2"),  # no auth_time: no recency can be shown
    ],
    ids=["weak", "unknown", "stale", "no-auth-time"],
)
async def test_an_idp_session_that_does_not_meet_the_rule(
    world: World, session: SessionAuth
) -> None:
    decision = await world.decide(read("phone", session))
    assert decision.outcome is Outcome.STEP_UP


async def test_an_idp_session_never_meets_max_age_zero(world: World) -> None:
    session = SessionAuth(acr="urn:piigate:aal3", amr=("hwk",), auth_time=T0)
    fresh = replace(delete_ssn(), session=session)
    decision = await world.decide(fresh)
    assert decision.outcome is Outcome.STEP_UP


# -- grants are bound to their session and device ------------------------------------------------


@pytest.mark.parametrize(
    ("session_id", "device_id", "reason"),
    [("s-other", "d-9", "wrong_session"), ("s-1", "d-other", "wrong_device")],
)
async def test_grant_from_another_session_or_device_proves_nothing(
    world: World, session_id: str, device_id: str, reason: str
) -> None:
    request = delete_ssn(grants=("tok",))
    world.verifier.grants["tok"] = replace(bound_grant(request), device_id="d-9")
    moved = replace(
        request,
        session=replace(request.session, id=session_id),
        context=replace(request.context, device_id=device_id),
    )
    # The binding digest does not cover session or device, so only the mismatch check stops it.
    assert binding_digest(moved, audience=APP.audience) == binding_digest(
        request, audience=APP.audience
    )
    decision = await world.decide(moved)
    assert decision.outcome is Outcome.STEP_UP
    assert world.audit.events[-1].data["rejected_grants"] == [reason]
    assert world.ledger.used == {}


async def test_level_names_are_not_acr_values(world: World) -> None:
    # Only a level's acr and its aliases identify it; an IdP saying acr="aal3" proves nothing.
    session = SessionAuth(acr="aal2", auth_time=T0)
    decision = await world.decide(read("phone", session))
    assert decision.outcome is Outcome.STEP_UP
    aliased = SessionAuth(acr="urn:okta:loa:2fa:any", auth_time=T0)
    assert (await world.decide(read("phone", aliased))).outcome is Outcome.ALLOW


async def test_decisions_carry_a_trace_only_when_explaining(world: World) -> None:
    served = await world.decide(delete_ssn())
    assert served.outcome is Outcome.STEP_UP
    assert served.trace == ()  # the service's hot path describes nothing it does not return
    world.engine.explain = True
    explained = await world.decide(delete_ssn())
    assert explained.outcome is Outcome.STEP_UP
    assert [(t.rule, t.status) for t in explained.trace] == [
        (rule, RuleStatus.REQUIRES) for rule in explained.rules
    ]


async def test_a_failed_policy_condition_is_logged_and_audited_by_rule_name() -> None:
    broken = """\
version: 1
levels:
  aal1: {acr: "urn:piigate:aal1"}
  aal2: {acr: "urn:piigate:aal2"}
pii: {ssn: {}}
rules:
  - name: by-number
    when: {action: [read], expr: 'int(request.resource.id) > 3'}
    deny: "reads by number"
"""
    world = make_world(policy=broken)
    request = AccessRequest(Subject("ann"), Action.READ, resource=Resource("customer", "c-42"))
    with structlog.testing.capture_logs() as logs:
        decision = await world.decide(request)
    assert decision.outcome is Outcome.DENY  # fails closed
    assert decision.expr_errors == ("by-number",)
    assert world.audit.events[-1].data["expr_errors"] == ["by-number"]
    (entry,) = [e for e in logs if e["event"] == "policy_expression_failed"]
    assert entry["rules"] == ["by-number"]
    assert "c-42" not in repr(logs)  # the value that broke it is not logged
