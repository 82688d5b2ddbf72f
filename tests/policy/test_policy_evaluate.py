"""Rule combination (CONTRACT §2), case by case, through the pure ``evaluate``."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from piigate.model import (
    AccessRequest,
    Action,
    Outcome,
    ProvenLevel,
    Resource,
    RiskAssessment,
    Signal,
    Subject,
    Transaction,
)
from piigate.policy import CompiledPolicy, RuleStatus, compile_policy, evaluate, load_policy_text
from piigate.policy.evaluate import Evaluation, grant_covers

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
BINDING = "sha256:" + "ab" * 32
OTHER_BINDING = "sha256:" + "cd" * 32

HEAD = textwrap.dedent(
    """\
    version: 1
    levels:
      aal1: {acr: "urn:x:aal1"}
      aal2: {acr: "urn:x:aal2", aliases: ["2"]}
      aal3: {acr: "urn:x:aal3"}
    pii:
      ssn: {}
      passport: {}
      phone: {}
      address: {}
    factors:
      sms: {level: aal1, restricted: true}
      totp: {level: aal2}
      push: {level: aal2, number_matching: true}
      webauthn: {level: aal3}
    """
)


def policy(rules: str, head: str = HEAD) -> CompiledPolicy:
    return compile_policy(load_policy_text(head + "rules:\n" + textwrap.indent(rules, "  ")))


def request(
    action: str = "read",
    pii: Iterable[str] = (),
    *,
    roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
    resource: str | None = None,
    amount: str | None = None,
) -> AccessRequest:
    return AccessRequest(
        subject=Subject("ann", roles=frozenset(roles), scopes=frozenset(scopes)),
        action=Action(action),
        pii=frozenset(pii),
        resource=Resource(type=resource, id="42" if resource else None),
        transaction=Transaction(Decimal(amount), "EUR", "ACME") if amount is not None else None,
    )


def proof(
    level: str,
    age: int = 0,
    *,
    source: str = "idp",
    binding: str | None = None,
    scope: Iterable[tuple[str, str]] = (),
    methods: Iterable[str] = (),
    grant_id: str | None = None,
    expires_in: int | None = None,
) -> ProvenLevel:
    return ProvenLevel(
        level=level,
        auth_time=NOW - timedelta(seconds=age),
        source=source,
        binding=binding,
        scope=frozenset(scope),
        grant_id=grant_id,
        methods=frozenset(methods),
        expires_at=NOW + timedelta(seconds=expires_in) if expires_in is not None else None,
    )


def run(
    compiled: CompiledPolicy,
    req: AccessRequest,
    *proven: ProvenLevel,
    score: int = 0,
    signals: Iterable[str] = (),
    binding: str = BINDING,
) -> Evaluation:
    risk = RiskAssessment(score, tuple(Signal(name, 10) for name in signals))
    return evaluate(compiled, req, risk, list(proven), now=NOW, binding=binding)


# -- deny --------------------------------------------------------------------------------------

DENY_AND_REQUIRE = """\
- name: read-ssn
  when: {pii: [ssn], action: [read]}
  require: {level: aal2, max_age: 5m}
  otherwise: mask
- name: no-exports
  when: {action: [export]}
  deny: "exports are closed"
- name: nobody-reads-passports
  when: {pii: [passport]}
  deny: "passports are off limits"
"""


def test_deny_wins_over_everything() -> None:
    compiled = policy(DENY_AND_REQUIRE)
    # Even a fresh aal3 proof that meets every requirement does not beat a deny.
    result = run(compiled, request("read", ["ssn", "passport"]), proof("aal3"))
    assert result.outcome is Outcome.DENY
    assert result.rules == ("nobody-reads-passports",)
    assert result.reason == "passports are off limits"
    assert result.mask == frozenset()
    assert result.required is None
    assert any(t.status is RuleStatus.DENIES for t in result.trace)


def test_every_matching_deny_is_named_first_reason_kept() -> None:
    compiled = policy(DENY_AND_REQUIRE)
    result = run(compiled, request("export", ["passport"]))
    assert result.outcome is Outcome.DENY
    assert result.rules == ("no-exports", "nobody-reads-passports")
    assert result.reason == "exports are closed"


def test_no_matching_rule_allows() -> None:
    compiled = policy(DENY_AND_REQUIRE)
    result = run(compiled, request("read", ["phone"]))
    assert result == Evaluation(Outcome.ALLOW, trace=())


# -- requirements met by a proven level --------------------------------------------------------

FIVE_MINUTES = """\
- name: edit-ssn
  when: {pii: [ssn], action: [update]}
  require: {level: aal2, max_age: 300}
"""


@pytest.mark.parametrize(
    ("level", "age", "outcome"),
    [
        ("aal2", 0, Outcome.ALLOW),
        ("aal2", 300, Outcome.ALLOW),  # elapsed ≤ max_age: met exactly at the boundary
        ("aal2", 301, Outcome.STEP_UP),
        ("aal3", 300, Outcome.ALLOW),  # a higher level meets a lower requirement
        ("aal3", 301, Outcome.STEP_UP),
        ("aal1", 0, Outcome.STEP_UP),  # a lower level never does
    ],
)
def test_level_and_recency(level: str, age: int, outcome: Outcome) -> None:
    result = run(policy(FIVE_MINUTES), request("update", ["ssn"]), proof(level, age))
    assert result.outcome is outcome
    assert result.rules == ("edit-ssn",)
    if outcome is Outcome.ALLOW:
        assert [p.level for p in result.used] == [level]
    else:
        assert result.required is not None and result.required.level == "aal2"


def test_sub_second_past_the_boundary_is_not_met() -> None:
    late = ProvenLevel("aal2", NOW - timedelta(seconds=300, milliseconds=1), "idp")
    assert run(policy(FIVE_MINUTES), request("update", ["ssn"]), late).outcome is Outcome.STEP_UP


def test_no_max_age_means_any_age() -> None:
    compiled = policy(
        """\
- name: edit-ssn
  when: {pii: [ssn], action: [update]}
  require: {level: aal2}
"""
    )
    result = run(compiled, request("update", ["ssn"]), proof("aal2", 10 * 365 * 86400))
    assert result.outcome is Outcome.ALLOW


def test_unknown_proven_level_is_ignored() -> None:
    result = run(policy(FIVE_MINUTES), request("update", ["ssn"]), proof("platinum"))
    assert result.outcome is Outcome.STEP_UP


def test_expired_grant_does_not_count() -> None:
    compiled = policy(FIVE_MINUTES)
    req = request("update", ["ssn"])
    assert run(compiled, req, proof("aal2", source="grant", expires_in=1)).outcome is Outcome.ALLOW
    assert run(compiled, req, proof("aal2", source="grant", expires_in=0)).outcome is (
        Outcome.STEP_UP
    )


def test_another_apps_grant_meets_only_rules_that_share_grants() -> None:
    foreign = replace(proof("aal2", 10, source="grant"), foreign=True)
    req = request("update", ["ssn"])
    assert run(policy(FIVE_MINUTES), req, foreign).outcome is Outcome.STEP_UP
    shared = FIVE_MINUTES.replace("max_age: 300}", "max_age: 300, grants_from: any_app}")
    assert shared != FIVE_MINUTES
    result = run(policy(shared), req, foreign)
    assert result.outcome is Outcome.ALLOW and result.used == (foreign,)


# -- max_age: 0 --------------------------------------------------------------------------------

BOUND = """\
- name: delete-anything
  when: {pii: any, action: [delete]}
  require: {level: aal2, max_age: 0}
"""


def test_max_age_zero_met_by_a_grant_bound_to_this_request() -> None:
    bound = proof("aal2", source="grant", binding=BINDING, grant_id="g1")
    result = run(policy(BOUND), request("delete", ["ssn"]), bound)
    assert result.outcome is Outcome.ALLOW
    assert result.used == (bound,)


@pytest.mark.parametrize(
    "candidate",
    [
        proof("aal3", 0, source="idp"),  # fresh, strong, but not bound
        proof("aal3", 0, source="session"),
        proof("aal2", 0, source="grant"),  # a reusable grant is not bound either
        proof("aal2", 0, source="grant", binding=OTHER_BINDING, grant_id="g2"),
        proof("aal1", 0, source="grant", binding=BINDING, grant_id="g3"),  # too weak
    ],
    ids=["idp", "session", "unbound-grant", "other-binding", "bound-but-weak"],
)
def test_max_age_zero_not_met_otherwise(candidate: ProvenLevel) -> None:
    result = run(policy(BOUND), request("delete", ["ssn"]), candidate)
    assert result.outcome is Outcome.STEP_UP
    assert result.required is not None
    assert result.required.max_age == 0
    assert result.required.binding == BINDING


def test_a_bound_grant_is_not_good_for_a_rule_it_was_not_needed_for_elsewhere() -> None:
    # A grant bound to another request cannot even satisfy an ordinary recency rule.
    compiled = policy(FIVE_MINUTES)
    other = proof("aal3", source="grant", binding=OTHER_BINDING, grant_id="g")
    assert run(compiled, request("update", ["ssn"]), other).outcome is Outcome.STEP_UP
    same = proof("aal3", source="grant", binding=BINDING, grant_id="g")
    assert run(compiled, request("update", ["ssn"]), same).outcome is Outcome.ALLOW


def test_reusable_proofs_are_preferred_over_spending_a_bound_grant() -> None:
    compiled = policy(FIVE_MINUTES)
    bound = proof("aal2", source="grant", binding=BINDING, grant_id="g")
    idp = proof("aal2", 10)
    result = run(compiled, request("update", ["ssn"]), bound, idp)
    assert result.outcome is Outcome.ALLOW
    assert result.used == (idp,)


# -- mask --------------------------------------------------------------------------------------

MASKING = """\
- name: read-ids
  when: {pii: [ssn, passport], action: [read]}
  require: {level: aal2, max_age: 5m}
  otherwise: mask
- name: read-any
  when: {pii: any, action: [read], roles: [auditor]}
  require: {level: aal2}
  otherwise: mask
- name: read-phone-strict
  when: {pii: [phone], action: [read], roles: [intern]}
  require: {level: aal2}
"""


def test_all_left_mask_allows_with_the_covered_classes_masked() -> None:
    result = run(policy(MASKING), request("read", ["ssn", "phone"]))
    assert result.outcome is Outcome.ALLOW
    assert result.mask == frozenset({"ssn"})  # the rule's pii ∩ the request's
    assert result.rules == ("read-ids",)
    # The requirement that would lift the mask is still described.
    assert result.required is not None and result.required.level == "aal2"


def test_pii_any_masks_every_requested_class() -> None:
    result = run(policy(MASKING), request("read", ["ssn", "phone", "address"], roles=["auditor"]))
    assert result.outcome is Outcome.ALLOW
    assert result.mask == frozenset({"ssn", "phone", "address"})
    assert result.rules == ("read-ids", "read-any")


def test_mask_rules_met_by_proof_drop_out() -> None:
    result = run(
        policy(MASKING), request("read", ["ssn", "phone"], roles=["auditor"]), proof("aal2", 600)
    )
    # read-ids wants 5 minutes (not met at 600 s); read-any has no recency demand (met).
    assert result.outcome is Outcome.ALLOW
    assert result.mask == frozenset({"ssn"})
    assert result.rules == ("read-ids",)


def test_mask_plus_deny_otherwise_is_a_step_up() -> None:
    result = run(policy(MASKING), request("read", ["ssn", "phone"], roles=["intern"]))
    assert result.outcome is Outcome.STEP_UP
    assert result.mask == frozenset()
    assert result.rules == ("read-ids", "read-phone-strict")
    assert result.required is not None
    assert result.required.level == "aal2"
    assert result.required.max_age == 300


# -- combining what is left --------------------------------------------------------------------

COMBINE = """\
- name: a
  when: {action: [update], pii: [ssn]}
  require: {level: aal1, max_age: 15m}
- name: b
  when: {action: [update], pii: [phone]}
  require: {level: aal2, max_age: 5m, methods: [totp, push, webauthn]}
- name: c
  when: {action: [update], pii: [address]}
  require: {level: aal2, methods: [push, webauthn, sms]}
- name: d
  when: {action: [update], pii: [passport]}
  require: {level: aal3}
- name: e
  when: {action: [create], pii: [passport]}
  require: {level: aal2, methods: [sms]}
- name: f
  when: {action: [create], pii: [ssn]}
  require: {level: aal1, methods: [totp]}
- name: g
  when: {action: [create], pii: [phone]}
  require: {level: aal1, methods: [sms]}
"""


def test_highest_level_smallest_max_age_intersected_methods() -> None:
    result = run(policy(COMBINE), request("update", ["ssn", "phone", "address"]))
    assert result.outcome is Outcome.STEP_UP
    assert result.rules == ("a", "b", "c")
    req = result.required
    assert req is not None
    assert req.level == "aal2"
    assert req.acr_values == ("urn:x:aal2",)
    assert req.max_age == 300
    # b ∩ c = {push, webauthn}; sms is out anyway (its level aal1 < aal2). Policy factor order.
    assert req.methods == ("push", "webauthn")
    assert req.binding is None


def test_absent_max_age_is_no_recency_demand() -> None:
    result = run(policy(COMBINE), request("update", ["address"]))
    assert result.required is not None
    assert result.required.max_age is None
    assert result.required.methods == ("push", "webauthn")


def test_methods_are_narrowed_to_factors_strong_enough() -> None:
    # Without any methods restriction, every factor whose level ≥ the required level.
    one = run(policy(COMBINE), request("update", ["ssn"]))
    assert one.required is not None
    assert one.required.methods == ("sms", "totp", "push", "webauthn")
    three = run(policy(COMBINE), request("update", ["passport"]))
    assert three.required is not None
    assert three.required.methods == ("webauthn",)
    # Together, the level rises to aal3 and only webauthn is left.
    both = run(policy(COMBINE), request("update", ["ssn", "passport", "phone"]))
    assert both.required is not None
    assert (both.required.level, both.required.max_age) == ("aal3", 300)
    assert both.required.methods == ("webauthn",)


def test_no_method_left_denies() -> None:
    # e allows only sms, which cannot prove aal2.
    result = run(policy(COMBINE), request("create", ["passport"]))
    assert result.outcome is Outcome.DENY
    assert result.required is None
    assert result.rules == ("e",)
    assert result.reason and "aal2" in result.reason
    # f (totp) and g (sms) have no method in common.
    result = run(policy(COMBINE), request("create", ["ssn", "phone"]))
    assert result.outcome is Outcome.DENY
    assert result.rules == ("f", "g")


def test_combination_only_over_rules_left() -> None:
    # d (aal3) is met by a fresh aal3 proof... which also meets a and b: nothing is left.
    result = run(policy(COMBINE), request("update", ["ssn", "passport"]), proof("aal3", 600))
    # a wants 15 minutes: 600 s is fine; d has no recency demand.
    assert result.outcome is Outcome.ALLOW
    result = run(policy(COMBINE), request("update", ["ssn", "passport"]), proof("aal3", 901))
    assert result.outcome is Outcome.STEP_UP
    assert result.rules == ("a",)
    assert result.required is not None and result.required.level == "aal1"


def test_max_age_zero_step_up_carries_the_binding() -> None:
    result = run(policy(BOUND + FIVE_MINUTES), request("delete", ["ssn"]))
    assert result.required is not None
    assert result.required.max_age == 0
    assert result.required.binding == BINDING


# -- when keys ---------------------------------------------------------------------------------

WHEN = """\
- name: big-transfer
  when: {action: [transact], amount_over: 10000}
  require: {level: aal3}
- name: support
  when: {roles: [support, ops]}
  require: {level: aal1}
- name: apps
  when: {scopes: [pii:write, pii:admin], action: [update]}
  require: {level: aal1}
- name: any-pii
  when: {pii: any, action: [login]}
  require: {level: aal1}
- name: new-device
  when: {signals: [new_device, new_country]}
  require: {level: aal2}
- name: customers
  when: {resource: [customer], action: [create]}
  require: {level: aal2}
- name: risky
  when: {risk_at_least: 60, action: [export]}
  require: {level: aal2}
"""


def rules_of(result: Evaluation) -> set[str]:
    return set(result.rules)


@pytest.mark.parametrize(
    ("amount", "matches"),
    [("10000", False), ("10000.00", False), ("10000.01", True), ("99999", True), ("0", False)],
)
def test_amount_over_is_strict(amount: str, matches: bool) -> None:
    result = run(policy(WHEN), request("transact", amount=amount))
    assert ("big-transfer" in rules_of(result)) is matches


def test_amount_over_needs_a_transaction() -> None:
    assert "big-transfer" not in rules_of(run(policy(WHEN), request("transact")))


@pytest.mark.parametrize(
    ("roles", "matches"),
    [((), False), (("sales",), False), (("ops",), True), (("sales", "support"), True)],
)
def test_roles_any_of(roles: tuple[str, ...], matches: bool) -> None:
    assert ("support" in rules_of(run(policy(WHEN), request(roles=roles)))) is matches


@pytest.mark.parametrize(
    ("scopes", "matches"),
    [((), False), (("pii:read",), False), (("pii:admin",), True), (("x", "pii:write"), True)],
)
def test_scopes_any_of(scopes: tuple[str, ...], matches: bool) -> None:
    assert ("apps" in rules_of(run(policy(WHEN), request("update", scopes=scopes)))) is matches


@pytest.mark.parametrize(("pii", "matches"), [((), False), (("phone",), True)])
def test_pii_any_needs_at_least_one_class(pii: tuple[str, ...], matches: bool) -> None:
    assert ("any-pii" in rules_of(run(policy(WHEN), request("login", pii)))) is matches


@pytest.mark.parametrize(
    ("signals", "matches"),
    [((), False), (("velocity",), False), (("new_country",), True), (("a", "new_device"), True)],
)
def test_signals_any_of(signals: tuple[str, ...], matches: bool) -> None:
    result = run(policy(WHEN), request(), signals=signals)
    assert ("new-device" in rules_of(result)) is matches


@pytest.mark.parametrize(
    ("resource", "matches"), [(None, False), ("order", False), ("customer", True)]
)
def test_resource(resource: str | None, matches: bool) -> None:
    result = run(policy(WHEN), request("create", resource=resource))
    assert ("customers" in rules_of(result)) is matches


@pytest.mark.parametrize(("score", "matches"), [(0, False), (59, False), (60, True), (100, True)])
def test_risk_at_least(score: int, matches: bool) -> None:
    assert ("risky" in rules_of(run(policy(WHEN), request("export"), score=score))) is matches


def test_all_given_when_keys_must_match() -> None:
    # action matches, amount too small: no match; amount matches, action differs: no match.
    compiled = policy(WHEN)
    assert "big-transfer" not in rules_of(run(compiled, request("transact", amount="5")))
    assert "big-transfer" not in rules_of(run(compiled, request("read", amount="50000")))


def test_star_action_matches_every_action() -> None:
    compiled = policy(
        """\
- name: all
  when: {action: ["*"], pii: [ssn]}
  require: {level: aal1}
"""
    )
    for action in Action:
        assert run(compiled, request(action.value, ["ssn"])).rules == ("all",)


# -- CEL ---------------------------------------------------------------------------------------

CEL = """\
- name: own-record
  when: {action: [update], expr: 'request.subject.id == request.resource.id'}
  require: {level: aal3}
- name: eu-payee
  when:
    action: [transact]
    expr: 'request.transaction.amount > 50.0 && request.transaction.currency == "EUR"'
  require: {level: aal2}
- name: broken-deny
  when: {action: [export], expr: 'int(request.resource.type) > 3'}
  deny: "exports by number"
- name: broken-require
  when: {action: [delete], expr: 'request.context.missing == "x"'}
  require: {level: aal3}
- name: pii-check
  when: {action: [read], expr: '"ssn" in request.pii && request.risk.score >= 10'}
  require: {level: aal2}
"""


def test_cel_true_and_false() -> None:
    compiled = policy(CEL)
    own = AccessRequest(Subject("42"), Action.UPDATE, resource=Resource("customer", "42"))
    other = AccessRequest(Subject("41"), Action.UPDATE, resource=Resource("customer", "42"))
    assert run(compiled, own).rules == ("own-record",)
    assert run(compiled, other).outcome is Outcome.ALLOW
    assert run(compiled, request("transact", amount="50.01")).rules == ("eu-payee",)
    assert run(compiled, request("transact", amount="50")).rules == ()
    assert run(compiled, request("read", ["ssn"]), score=10).rules == ("pii-check",)
    assert run(compiled, request("read", ["ssn"]), score=9).rules == ()
    assert run(compiled, request("read", ["phone"]), score=90).rules == ()


def test_cel_runtime_error_in_a_deny_rule_denies() -> None:
    result = run(policy(CEL), request("export", resource="customer"))
    assert result.outcome is Outcome.DENY
    assert result.rules == ("broken-deny",)
    assert any(t.rule == "broken-deny" and t.status is RuleStatus.EXPR_ERROR for t in result.trace)


@pytest.mark.parametrize("explain", [True, False])
def test_a_failed_condition_is_named_with_or_without_a_trace(explain: bool) -> None:
    compiled, risk = policy(CEL), RiskAssessment()
    broken = request("export", resource="customer")
    result = evaluate(compiled, broken, risk, [], now=NOW, binding=BINDING, explain=explain)
    assert result.expr_errors == ("broken-deny",)
    fine = request("update", resource="customer")
    assert evaluate(compiled, fine, risk, [], now=NOW, binding=BINDING).expr_errors == ()


def test_cel_runtime_error_in_a_require_rule_demands_the_step_up() -> None:
    result = run(policy(CEL), request("delete"))
    assert result.outcome is Outcome.STEP_UP
    assert result.rules == ("broken-require",)
    assert result.required is not None and result.required.level == "aal3"
    # ... which a proof can still satisfy, like any other matching rule.
    assert run(policy(CEL), request("delete"), proof("aal3")).outcome is Outcome.ALLOW


def test_cel_non_boolean_result_fails_closed() -> None:
    compiled = policy(
        """\
- name: stringy
  when: {action: [export], expr: 'request.subject.id'}
  deny: "not a condition"
"""
    )
    assert run(compiled, request("export")).outcome is Outcome.DENY


# -- scopes demanded by require ----------------------------------------------------------------

SCOPED = """\
- name: write-ssn
  when: {pii: [ssn], action: [update]}
  require: {level: aal2, scope: [pii:write, ssn:write]}
- name: write-phone
  when: {pii: [phone], action: [update]}
  require: {level: aal1, scope: [pii:write]}
"""


def test_missing_required_scope_denies() -> None:
    result = run(policy(SCOPED), request("update", ["ssn"], scopes=["pii:write"]), proof("aal3"))
    assert result.outcome is Outcome.DENY
    assert result.missing_scope == ("ssn:write",)
    assert result.rules == ("write-ssn",)
    assert result.reason == "insufficient scope"


def test_required_scopes_present_then_level_decides() -> None:
    req = request("update", ["ssn", "phone"], scopes=["pii:write", "ssn:write"])
    result = run(policy(SCOPED), req)
    assert result.outcome is Outcome.STEP_UP
    assert result.missing_scope == ()
    assert result.required is not None
    assert result.required.scope == ("pii:write", "ssn:write")
    assert run(policy(SCOPED), req, proof("aal2")).outcome is Outcome.ALLOW


# -- grant scope: (pii class, action) pairs ------------------------------------------------------

SCOPE_RULES = """\
- name: edit-ids
  when: {pii: [ssn, passport], action: [update]}
  require: {level: aal2}
- name: login
  when: {action: [login]}
  require: {level: aal2}
"""


@pytest.mark.parametrize(
    ("scope", "outcome"),
    [
        ((), Outcome.ALLOW),  # unrestricted
        ((("ssn", "update"), ("passport", "update")), Outcome.ALLOW),
        ((("ssn", "update"), ("passport", "update"), ("phone", "read")), Outcome.ALLOW),
        ((("ssn", "update"),), Outcome.STEP_UP),  # does not cover passport
        ((("ssn", "read"), ("passport", "read")), Outcome.STEP_UP),  # wrong action
    ],
)
def test_grant_scope_must_cover_the_request(
    scope: tuple[tuple[str, str], ...], outcome: Outcome
) -> None:
    grant = proof("aal2", source="grant", scope=scope, grant_id="g")
    result = run(policy(SCOPE_RULES), request("update", ["ssn", "passport"]), grant)
    assert result.outcome is outcome


def test_grant_scope_for_requests_without_pii() -> None:
    req = request("login")
    assert grant_covers(frozenset({("*", "login")}), req)
    assert not grant_covers(frozenset({("ssn", "login")}), req)
    grant = proof("aal2", source="grant", scope=[("*", "login")], grant_id="g")
    assert run(policy(SCOPE_RULES), req, grant).outcome is Outcome.ALLOW


# -- method-restricted rules -------------------------------------------------------------------

METHODS = """\
- name: transfer
  when: {action: [transact]}
  require: {level: aal2, methods: [webauthn, push]}
"""


@pytest.mark.parametrize(
    ("methods", "outcome"),
    [
        ((), Outcome.STEP_UP),  # unknown methods cannot satisfy a restricted rule
        (("totp",), Outcome.STEP_UP),
        (("push",), Outcome.ALLOW),
        (("totp", "webauthn"), Outcome.ALLOW),
    ],
)
def test_method_restricted_rules_need_an_intersecting_proof(
    methods: tuple[str, ...], outcome: Outcome
) -> None:
    result = run(policy(METHODS), request("transact"), proof("aal3", methods=methods))
    assert result.outcome is outcome
    if outcome is Outcome.STEP_UP:
        assert result.required is not None
        assert result.required.methods == ("push", "webauthn")


def test_trace_explains_each_rule() -> None:
    result = run(policy(COMBINE), request("update", ["ssn", "passport"]), proof("aal2"))
    statuses = {t.rule: t.status for t in result.trace}
    assert statuses == {"a": RuleStatus.MET, "d": RuleStatus.REQUIRES}


class _CountingBinding:
    """A binding given as a function (as the engine gives it), counting how often it is read."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.value


def test_the_binding_is_not_read_unless_something_binds() -> None:
    binding = _CountingBinding(BINDING)
    risk = RiskAssessment()
    idp = [proof("aal1", 10)]
    result = evaluate(
        policy(FIVE_MINUTES), request("update", ["ssn"]), risk, idp, now=NOW, binding=binding
    )
    assert result.outcome is Outcome.STEP_UP
    assert result.required is not None and result.required.binding is None
    assert binding.calls == 0


@pytest.mark.parametrize("presented", ["none", "same", "other"])
def test_a_binding_function_decides_as_the_digest_itself(presented: str) -> None:
    proofs = {
        "none": [],
        "same": [proof("aal2", source="grant", binding=BINDING, grant_id="g1")],
        "other": [proof("aal2", source="grant", binding=OTHER_BINDING, grant_id="g1")],
    }[presented]
    compiled, req, risk = policy(BOUND), request("delete", ["ssn"]), RiskAssessment()
    lazy = evaluate(compiled, req, risk, proofs, now=NOW, binding=_CountingBinding(BINDING))
    assert lazy == evaluate(compiled, req, risk, proofs, now=NOW, binding=BINDING)
