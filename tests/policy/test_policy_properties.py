"""Properties of rule combination over generated policies and requests (hypothesis)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from piigate.model import (
    AccessRequest,
    Action,
    Method,
    Outcome,
    ProvenLevel,
    Resource,
    RiskAssessment,
    Signal,
    Subject,
    Transaction,
)
from piigate.policy import CompiledPolicy, compile_policy, evaluate
from piigate.policy.evaluate import Evaluation, _matching_rules
from piigate.policy.model import (
    ANY_PII,
    FactorSettings,
    LevelDef,
    Match,
    Otherwise,
    PiiClassDef,
    Policy,
    Require,
    RiskSettings,
    Rule,
)

T = TypeVar("T")

NOW = datetime(2026, 3, 1, tzinfo=UTC)
BINDING = "sha256:" + "11" * 32
OTHER_BINDING = "sha256:" + "22" * 32

LEVELS = ("l1", "l2", "l3")
PII = ("a", "b", "c", "d")
ACTIONS = tuple(a.value for a in Action)
ROLES = ("r1", "r2", "r3")
SCOPES = ("s1", "s2")
SIGNALS = ("new_device", "new_country", "velocity")
RESOURCES = ("t1", "t2")
FACTORS = {
    Method.SMS: "l1",
    Method.TOTP: "l2",
    Method.PUSH: "l2",
    Method.WEBAUTHN: "l3",
}
FACTOR_NAMES = tuple(kind.value for kind in FACTORS)


def subset(pool: Sequence[str], *, min_size: int = 0) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(pool), min_size=min_size, max_size=len(pool))


def optional(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.one_of(st.none(), strategy)


matches = st.builds(
    Match,
    pii=st.one_of(st.none(), st.just(ANY_PII), subset(PII, min_size=1)),
    actions=optional(subset(ACTIONS, min_size=1)),
    resources=optional(subset(RESOURCES, min_size=1)),
    roles=optional(subset(ROLES, min_size=1)),
    scopes=optional(subset(SCOPES, min_size=1)),
    amount_over=optional(st.sampled_from([Decimal(0), Decimal(100), Decimal(1000)])),
    risk_at_least=optional(st.integers(0, 100)),
    signals=optional(subset(SIGNALS, min_size=1)),
)

requires = st.builds(
    Require,
    level=st.sampled_from(LEVELS),
    max_age=st.sampled_from([None, 0, 60, 300]),
    methods=st.one_of(st.none(), st.lists(st.sampled_from(FACTOR_NAMES), unique=True).map(tuple)),
    scope=st.one_of(st.just(()), st.lists(st.sampled_from(SCOPES), unique=True).map(tuple)),
)


@st.composite
def rule_specs(draw: st.DrawFn) -> tuple[Match, Require | None, str | None, Otherwise]:
    when = draw(matches)
    if draw(st.integers(0, 4)) == 0:
        return when, None, "no", Otherwise.DENY
    return when, draw(requires), None, draw(st.sampled_from(list(Otherwise)))


def build(specs: Sequence[tuple[Match, Require | None, str | None, Otherwise]]) -> Policy:
    rules = tuple(
        Rule(name=f"rule{i}", index=i, when=w, require=r, deny=d, otherwise=o)
        for i, (w, r, d, o) in enumerate(specs)
    )
    return Policy(
        source="<generated>",
        levels=tuple(LevelDef(name, rank, f"urn:{name}") for rank, name in enumerate(LEVELS)),
        pii={name: PiiClassDef(name) for name in PII},
        factors={kind: FactorSettings(kind, level) for kind, level in FACTORS.items()},
        rules=rules,
        risk=RiskSettings({}),
    )


def reindexed(policy: Policy, rules: Sequence[Rule]) -> CompiledPolicy:
    fresh = tuple(dataclasses.replace(r, index=i) for i, r in enumerate(rules))
    return compile_policy(dataclasses.replace(policy, rules=fresh))


requests = st.builds(
    AccessRequest,
    subject=st.builds(Subject, id=st.just("u"), roles=subset(ROLES), scopes=subset(SCOPES)),
    action=st.sampled_from(list(Action)),
    pii=subset(PII),
    resource=st.builds(Resource, type=st.sampled_from([None, *RESOURCES]), id=st.just("1")),
    transaction=optional(
        st.builds(
            Transaction,
            amount=st.sampled_from([Decimal(0), Decimal(100), Decimal("100.01"), Decimal(5000)]),
        )
    ),
)

risks = st.builds(
    RiskAssessment,
    score=st.integers(0, 100),
    signals=subset(SIGNALS).map(lambda names: tuple(Signal(n, 10) for n in sorted(names))),
)

proofs = st.builds(
    ProvenLevel,
    level=st.sampled_from(LEVELS),
    auth_time=st.sampled_from([0, 60, 299, 300, 301, 3600]).map(
        lambda age: NOW - timedelta(seconds=age)
    ),
    source=st.sampled_from(["idp", "grant", "session"]),
    binding=st.sampled_from([None, BINDING, OTHER_BINDING]),
    scope=st.frozensets(st.tuples(st.sampled_from([*PII, "*"]), st.sampled_from(ACTIONS))),
    methods=subset(FACTOR_NAMES),
)

rule_lists = st.lists(rule_specs(), max_size=8)


def decide(
    compiled: CompiledPolicy,
    request: AccessRequest,
    risk: RiskAssessment,
    proven: Sequence[ProvenLevel],
) -> Evaluation:
    return evaluate(compiled, request, risk, proven, now=NOW, binding=BINDING)


def severity(result: Evaluation) -> int:
    """allow without mask < allow with mask < step_up < deny."""
    if result.outcome is Outcome.ALLOW:
        return 1 if result.mask else 0
    return 2 if result.outcome is Outcome.STEP_UP else 3


def assert_not_stricter(after: Evaluation, before: Evaluation, compiled: CompiledPolicy) -> None:
    assert severity(after) <= severity(before), (before, after)
    if after.outcome is Outcome.ALLOW and before.outcome is Outcome.ALLOW:
        assert after.mask <= before.mask
    if after.outcome is Outcome.STEP_UP and before.outcome is Outcome.STEP_UP:
        assert after.required is not None and before.required is not None
        assert compiled.ranks[after.required.level] <= compiled.ranks[before.required.level]
        assert set(after.required.methods) >= set(before.required.methods)
        if before.required.max_age is None:
            assert after.required.max_age is None
        elif after.required.max_age is not None:
            assert after.required.max_age >= before.required.max_age


def naive_matches(when: Match, request: AccessRequest, risk: RiskAssessment) -> bool:
    """CONTRACT §2 ``when``, read literally: every given key must match."""
    checks = [
        when.pii is None
        or (when.pii == ANY_PII and len(request.pii) > 0)
        or (isinstance(when.pii, frozenset) and len(when.pii & request.pii) > 0),
        when.actions is None or request.action.value in when.actions,
        when.resources is None or request.resource.type in when.resources,
        when.roles is None or any(r in request.subject.roles for r in when.roles),
        when.scopes is None or any(s in request.subject.scopes for s in when.scopes),
        when.amount_over is None
        or (request.transaction is not None and request.transaction.amount > when.amount_over),
        when.risk_at_least is None or risk.score >= when.risk_at_least,
        when.signals is None or any(s.name in when.signals for s in risk.signals),
    ]
    return all(checks)


SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(rule_lists, requests, risks, st.lists(proofs, max_size=3))
def test_index_returns_what_a_brute_force_scan_matches(
    specs: list[tuple[Match, Require | None, str | None, Otherwise]],
    request: AccessRequest,
    risk: RiskAssessment,
    proven: list[ProvenLevel],
) -> None:
    policy = build(specs)
    compiled = compile_policy(policy)
    expected = [r.name for r in policy.rules if naive_matches(r.when, request, risk)]

    candidates = compiled.candidates(request.action.value, request.pii)
    indexes = [r.index for r in candidates]
    assert indexes == sorted(set(indexes)), "candidates in policy order, each once"
    assert [r.name for r in candidates if naive_matches(r.when, request, risk)] == expected
    assert [r.name for r in _matching_rules(compiled, request, risk, [], [])] == expected

    # And the decision names exactly those rules when one of them denies.
    result = decide(compiled, request, risk, proven)
    denying = [r.name for r in policy.rules if r.name in expected and r.deny is not None]
    if denying:
        assert result.outcome is Outcome.DENY
        assert list(result.rules) == denying
    else:
        assert set(result.rules) <= set(expected)


@st.composite
def matching_when(draw: st.DrawFn, request: AccessRequest, risk: RiskAssessment) -> Match:
    """A ``when`` built from the request's own facts, so it is sure to match."""

    def maybe(value: T) -> T | None:
        return value if draw(st.booleans()) else None

    pii: frozenset[str] | str | None = None
    with_pii: bool = draw(st.booleans())
    if request.pii and with_pii:
        pii = draw(st.one_of(st.just(ANY_PII), subset(sorted(request.pii), min_size=1)))
    txn = request.transaction
    resource = request.resource.type
    roles, scopes = request.subject.roles, request.subject.scopes
    return Match(
        pii=pii,
        actions=maybe(frozenset({request.action.value}) | draw(subset(ACTIONS))),
        resources=maybe(frozenset({resource})) if resource else None,
        roles=maybe(roles | draw(subset(ROLES))) if roles else None,
        scopes=maybe(scopes) if scopes else None,
        amount_over=maybe(txn.amount - 1) if txn else None,
        risk_at_least=maybe(draw(st.integers(0, risk.score))),
        signals=maybe(risk.signal_names) if risk.signals else None,
    )


@SETTINGS
@given(rule_lists, requests, risks, st.lists(proofs, max_size=3), st.data())
def test_adding_a_matching_deny_rule_never_allows(
    specs: list[tuple[Match, Require | None, str | None, Otherwise]],
    request: AccessRequest,
    risk: RiskAssessment,
    proven: list[ProvenLevel],
    data: st.DataObject,
) -> None:
    policy = build(specs)
    when = data.draw(matching_when(request, risk))
    assert naive_matches(when, request, risk)
    deny = Rule(name="added-deny", index=0, when=when, deny="added")
    at = data.draw(st.integers(0, len(policy.rules)))
    rules = [*policy.rules[:at], deny, *policy.rules[at:]]
    result = decide(reindexed(policy, rules), request, risk, proven)
    assert result.outcome is Outcome.DENY
    assert "added-deny" in result.rules


@SETTINGS
@given(rule_lists, requests, risks, st.lists(proofs, min_size=1, max_size=3), st.data())
def test_raising_a_proven_level_never_makes_the_decision_stricter(
    specs: list[tuple[Match, Require | None, str | None, Otherwise]],
    request: AccessRequest,
    risk: RiskAssessment,
    proven: list[ProvenLevel],
    data: st.DataObject,
) -> None:
    compiled = compile_policy(build(specs))
    which = data.draw(st.integers(0, len(proven) - 1))
    rank = compiled.ranks[proven[which].level]
    higher = data.draw(st.sampled_from(LEVELS[rank:]))
    raised = list(proven)
    raised[which] = dataclasses.replace(proven[which], level=higher)
    before = decide(compiled, request, risk, proven)
    after = decide(compiled, request, risk, raised)
    assert_not_stricter(after, before, compiled)


@SETTINGS
@given(rule_lists, requests, risks, st.lists(proofs, max_size=3))
def test_adding_a_proof_never_makes_the_decision_stricter(
    specs: list[tuple[Match, Require | None, str | None, Otherwise]],
    request: AccessRequest,
    risk: RiskAssessment,
    proven: list[ProvenLevel],
) -> None:
    compiled = compile_policy(build(specs))
    before = decide(compiled, request, risk, proven[:-1])
    after = decide(compiled, request, risk, proven)
    assert_not_stricter(after, before, compiled)


@SETTINGS
@given(rule_lists.filter(bool), requests, risks, st.lists(proofs, max_size=3), st.data())
def test_removing_a_rule_never_makes_the_decision_stricter(
    specs: list[tuple[Match, Require | None, str | None, Otherwise]],
    request: AccessRequest,
    risk: RiskAssessment,
    proven: list[ProvenLevel],
    data: st.DataObject,
) -> None:
    policy = build(specs)
    compiled = compile_policy(policy)
    drop = data.draw(st.integers(0, len(policy.rules) - 1))
    smaller = reindexed(policy, [r for i, r in enumerate(policy.rules) if i != drop])
    before = decide(compiled, request, risk, proven)
    after = decide(smaller, request, risk, proven)
    assert_not_stricter(after, before, compiled)


@SETTINGS
@given(rule_lists, requests, risks, st.lists(proofs, max_size=3))
def test_decision_shape(
    specs: list[tuple[Match, Require | None, str | None, Otherwise]],
    request: AccessRequest,
    risk: RiskAssessment,
    proven: list[ProvenLevel],
) -> None:
    compiled = compile_policy(build(specs))
    result = decide(compiled, request, risk, proven)
    # The mask only ever names classes the request touches.
    assert result.mask <= request.pii
    if result.outcome is Outcome.STEP_UP:
        required = result.required
        assert required is not None and required.methods
        for method in required.methods:
            assert compiled.factor_ranks[Method(method)] >= compiled.ranks[required.level]
        assert (required.binding == BINDING) is (required.max_age == 0)
    if result.outcome is Outcome.DENY:
        assert result.reason
    # Whatever allowed it is among what was presented.
    assert all(p in proven for p in result.used)


@SETTINGS
@given(rule_lists, requests, risks, st.lists(proofs, max_size=3))
def test_the_engines_untraced_evaluation_decides_the_same(
    specs: list[tuple[Match, Require | None, str | None, Otherwise]],
    request: AccessRequest,
    risk: RiskAssessment,
    proven: list[ProvenLevel],
) -> None:
    compiled = compile_policy(build(specs))
    traced = decide(compiled, request, risk, proven)
    lean = evaluate(compiled, request, risk, proven, now=NOW, binding=BINDING, explain=False)
    assert lean.trace == ()
    assert lean == dataclasses.replace(traced, trace=())
