"""Rule combination (CONTRACT §2), pure: no clock reads, no I/O.

1. A matching ``deny`` rule denies.
2. Matching rules whose requirement the caller already meets drop out.
3. None left → allow. All left say ``otherwise: mask`` → allow with their PII masked.
4. Otherwise → step-up to the strictest combination of what is left.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from piigate.model import (
    AccessRequest,
    Method,
    Outcome,
    ProvenLevel,
    Requirement,
    RiskAssessment,
    RuleStatus,
    RuleTrace,
)
from piigate.policy.compiled import CEL_FIELDS, CompiledPolicy
from piigate.policy.model import ANY_PII, GrantsFrom, Otherwise, Require, Rule

__all__ = ["Evaluation", "RuleStatus", "RuleTrace", "evaluate", "grant_covers"]


@dataclass(frozen=True, slots=True)
class Evaluation:
    outcome: Outcome
    rules: tuple[str, ...] = ()
    mask: frozenset[str] = frozenset()
    required: Requirement | None = None
    reason: str | None = None
    used: tuple[ProvenLevel, ...] = ()
    missing_scope: tuple[str, ...] = ()
    trace: tuple[RuleTrace, ...] = ()
    # Rules whose CEL condition failed (an error or a non-boolean) and so counted as matching;
    # kept with or without ``explain``, so that a broken condition is never silent.
    expr_errors: tuple[str, ...] = ()


def evaluate(
    policy: CompiledPolicy,
    request: AccessRequest,
    risk: RiskAssessment,
    proven: Sequence[ProvenLevel],
    *,
    now: datetime,
    binding: str | Callable[[], str],
    explain: bool = True,
) -> Evaluation:
    """Combine the rules that match ``request`` (CONTRACT §2).

    ``binding`` is the request's binding digest, or a function giving it: it is read only when
    a bound grant is presented or a rule binds its step-up to the request (``max_age: 0``).
    With ``explain`` false the evaluation carries no trace (the engine's hot path: only
    ``policy explain`` shows it, and describing each rule costs time on every decision).
    """
    trace: list[RuleTrace] | None = [] if explain else None
    digest = _constant(binding) if isinstance(binding, str) else binding
    failed: list[str] = []
    matched = _matching_rules(policy, request, risk, trace, failed)
    result = _combined(policy, request, matched, proven, now, digest, trace)
    if failed:
        result = replace(result, expr_errors=tuple(failed))
    return result


def _combined(
    policy: CompiledPolicy,
    request: AccessRequest,
    matched: list[Rule],
    proven: Sequence[ProvenLevel],
    now: datetime,
    digest: Callable[[], str],
    trace: list[RuleTrace] | None,
) -> Evaluation:
    """Steps 1-4 of the combination over the rules that matched."""
    denies = [rule for rule in matched if rule.deny is not None]
    if denies:
        return _denied(denies, trace)

    missing: set[str] = set()
    for rule in matched:
        assert rule.require is not None
        missing.update(s for s in rule.require.scope if s not in request.subject.scopes)
    if missing:
        return _scope_denied(matched, missing, trace)

    # Prefer reusable proofs, so a single-use bound grant is only spent when nothing else does.
    ordered = sorted(proven, key=lambda p: p.binding is not None)
    left: list[Rule] = []
    used: dict[int, ProvenLevel] = {}
    for rule in matched:
        assert rule.require is not None
        proof = _satisfying_proof(policy, rule.require, request, ordered, now=now, binding=digest)
        if proof is None:
            if trace is not None:
                trace.append(RuleTrace(rule.name, RuleStatus.REQUIRES, _describe(rule.require)))
            left.append(rule)
        else:
            if trace is not None:
                detail = f"met by {proof.source} {proof.level}"
                trace.append(RuleTrace(rule.name, RuleStatus.MET, detail))
            used[id(proof)] = proof

    if not left:
        return Evaluation(
            Outcome.ALLOW,
            rules=tuple(r.name for r in matched),
            used=tuple(used.values()),
            trace=_traced(trace),
        )
    return _unmet(policy, request, left, used, digest, trace)


def _denied(denies: list[Rule], trace: list[RuleTrace] | None) -> Evaluation:
    """Step 1: every matching deny rule is named; the first one's message is the reason."""
    if trace is not None:
        for rule in denies:
            trace.append(RuleTrace(rule.name, RuleStatus.DENIES, rule.deny or ""))
    return Evaluation(
        Outcome.DENY,
        rules=tuple(r.name for r in denies),
        reason=denies[0].deny,
        trace=_traced(trace),
    )


def _scope_denied(
    matched: list[Rule], missing: set[str], trace: list[RuleTrace] | None
) -> Evaluation:
    """A rule's ``require.scope`` the caller lacks: no step-up can give it, so deny."""
    names = tuple(r.name for r in matched if set(r.require.scope if r.require else ()) & missing)
    return Evaluation(
        Outcome.DENY,
        rules=names,
        reason="insufficient scope",
        missing_scope=tuple(sorted(missing)),
        trace=_traced(trace),
    )


def _unmet(
    policy: CompiledPolicy,
    request: AccessRequest,
    left: list[Rule],
    used: dict[int, ProvenLevel],
    digest: Callable[[], str],
    trace: list[RuleTrace] | None,
) -> Evaluation:
    """Steps 3-4 for the rules no proof met: mask if all of them allow it, else step up."""
    required, reason = _combine(policy, left, digest)
    names = tuple(r.name for r in left)
    if all(rule.otherwise is Otherwise.MASK for rule in left):
        mask: set[str] = set()
        for rule in left:
            mask.update(_covered(rule, request.pii))
        return Evaluation(
            Outcome.ALLOW,
            rules=names,
            mask=frozenset(mask),
            required=required,
            used=tuple(used.values()),
            trace=_traced(trace),
        )
    if required is None:
        return Evaluation(Outcome.DENY, rules=names, reason=reason, trace=_traced(trace))
    return Evaluation(Outcome.STEP_UP, rules=names, required=required, trace=_traced(trace))


def _matching_rules(
    policy: CompiledPolicy,
    request: AccessRequest,
    risk: RiskAssessment,
    trace: list[RuleTrace] | None,
    failed: list[str],
) -> list[Rule]:
    matched: list[Rule] = []
    # The request's fields as CEL values, converted once per evaluation and only when a
    # candidate rule has an ``expr``.
    cel_request: dict[str, Any] | None = None
    for rule in policy.candidates(request.action.value, request.pii):
        when = rule.when
        if when.pii is not None and not request.pii:
            continue
        if isinstance(when.pii, frozenset) and not (when.pii & request.pii):
            continue
        if when.resources is not None and request.resource.type not in when.resources:
            continue
        if when.roles is not None and not (when.roles & request.subject.roles):
            continue
        if when.scopes is not None and not (when.scopes & request.subject.scopes):
            continue
        if when.amount_over is not None and (
            request.transaction is None or not request.transaction.amount > when.amount_over
        ):
            continue
        if when.rows_over is not None and not _rows_over(request, when.rows_over):
            continue
        if when.risk_at_least is not None and risk.score < when.risk_at_least:
            continue
        if when.signals is not None and not (when.signals & risk.signal_names):
            continue
        if when.expr is not None:
            if cel_request is None:
                cel_request = {}
            if not _expr_matches(policy, rule, request, risk, cel_request, trace, failed):
                continue
        matched.append(rule)
    return matched


def _rows_over(request: AccessRequest, limit: int) -> bool:
    """More rows than ``limit`` (strict, as ``amount_over``), or no bound at all."""
    rows = request.rows
    return rows is not None and (not rows.bounded or rows.estimate > limit)


def _expr_matches(
    policy: CompiledPolicy,
    rule: Rule,
    request: AccessRequest,
    risk: RiskAssessment,
    cel_request: dict[str, Any],
    trace: list[RuleTrace] | None,
    failed: list[str],
) -> bool:
    """Whether ``rule``'s CEL condition holds; one that cannot be evaluated counts as holding."""
    fields = policy.cel_fields.get(rule.name, _WHOLE)
    view: dict[str, Any] = {}
    for name, keys in fields.items():
        value = cel_request.get(name)
        if value is None:
            value = cel_request[name] = _CEL_FIELDS[name](request, risk)
        if keys is not None and isinstance(value, dict):
            value = {key: value[key] for key in keys if key in value}
        view[name] = value
    try:
        result = policy.programs[rule.name].execute({"request": view})
    except Exception as exc:
        # Fail closed: a condition that cannot be evaluated counts as matching, so a deny
        # rule denies and a require rule demands its step-up.
        if trace is not None:
            trace.append(RuleTrace(rule.name, RuleStatus.EXPR_ERROR, type(exc).__name__))
        failed.append(rule.name)
        return True
    if not isinstance(result, bool):
        # A condition that is not a condition (a string, a number) fails closed too.
        if trace is not None:
            trace.append(RuleTrace(rule.name, RuleStatus.EXPR_ERROR, type(result).__name__))
        failed.append(rule.name)
        return True
    return result


def _satisfying_proof(
    policy: CompiledPolicy,
    require: Require,
    request: AccessRequest,
    proven: Sequence[ProvenLevel],
    *,
    now: datetime,
    binding: Callable[[], str],
) -> ProvenLevel | None:
    needed = policy.ranks[require.level]
    for proof in proven:
        rank = policy.ranks.get(proof.level)
        if rank is None or rank < needed:
            continue
        if proof.foreign and require.grants_from is not GrantsFrom.ANY_APP:
            continue  # obtained through another app, and this rule does not share grants
        if proof.binding is not None and not hmac.compare_digest(proof.binding, binding()):
            continue  # a bound grant is good for its own request only
        if proof.scope and not grant_covers(proof.scope, request):
            continue
        if require.methods is not None and not (proof.methods & set(require.methods)):
            continue
        if require.max_age == 0:
            if proof.source != "grant" or proof.binding is None:
                continue
        elif (
            require.max_age is not None
            and (now - proof.auth_time).total_seconds() > require.max_age
        ):
            continue
        if proof.expires_at is not None and proof.expires_at <= now:
            continue
        return proof
    return None


def grant_covers(scope: frozenset[tuple[str, str]], request: AccessRequest) -> bool:
    """Whether a grant's (PII class, action) scope covers everything this request touches."""
    action = request.action.value
    if not request.pii:
        return ("*", action) in scope
    return all((cls, action) in scope for cls in request.pii)


def _combine(
    policy: CompiledPolicy, left: Sequence[Rule], binding: Callable[[], str]
) -> tuple[Requirement | None, str | None]:
    requires = [rule.require for rule in left if rule.require is not None]
    level = max((r.level for r in requires), key=lambda name: policy.ranks[name])
    ages = [r.max_age for r in requires if r.max_age is not None]
    max_age = min(ages) if ages else None
    methods: Sequence[str] = policy.level_methods[level]
    named = [r.methods for r in requires if r.methods is not None]
    for allowed in named:
        methods = [m for m in methods if m in allowed]
    if not named:
        # Approval by another person is not the subject's own proof: only where a rule asks.
        methods = [m for m in methods if m != Method.APPROVAL]
    if not methods:
        return None, f"no allowed factor can prove {level}"
    return (
        Requirement(
            level=level,
            acr_values=policy.acr_values(level),
            max_age=max_age,
            methods=tuple(methods),
            binding=binding() if max_age == 0 else None,
            scope=tuple(sorted({s for r in requires for s in r.scope})),
        ),
        None,
    )


def _traced(trace: list[RuleTrace] | None) -> tuple[RuleTrace, ...]:
    return () if trace is None else tuple(trace)


def _constant(value: str) -> Callable[[], str]:
    return lambda: value


def _covered(rule: Rule, pii: frozenset[str]) -> frozenset[str]:
    if rule.when.pii is None or rule.when.pii == ANY_PII:
        return pii
    assert isinstance(rule.when.pii, frozenset)
    return rule.when.pii & pii


def _describe(require: Require) -> str:
    text = f"needs {require.level}"
    if require.max_age == 0:
        text += " bound to this request"
    elif require.max_age is not None:
        text += f" within {require.max_age}s"
    if require.methods is not None:
        text += f" by {', '.join(require.methods)}"
    if require.grants_from is GrantsFrom.ANY_APP:
        text += ", grants from any app"
    return text


_CEL_FIELDS: dict[str, Callable[[AccessRequest, RiskAssessment], Any]] = {
    "subject": lambda r, _: {
        "id": r.subject.id,
        "roles": sorted(r.subject.roles),
        "scopes": sorted(r.subject.scopes),
        "kind": r.subject.kind,
    },
    "action": lambda r, _: r.action.value,
    "pii": lambda r, _: sorted(r.pii),
    "resource": lambda r, _: {"type": r.resource.type or "", "id": r.resource.id or ""},
    "context": lambda r, _: {
        "ip": r.context.ip or "",
        "user_agent": r.context.user_agent or "",
        "device_id": r.context.device_id or "",
    },
    "session": lambda r, _: {
        "level": r.session.level or "",
        "acr": r.session.acr or "",
        "amr": list(r.session.amr),
    },
    "transaction": lambda r, _: {
        "amount": float(r.transaction.amount) if r.transaction else 0.0,
        "currency": (r.transaction.currency or "") if r.transaction else "",
        "payee": (r.transaction.payee or "") if r.transaction else "",
    },
    "risk": lambda _, risk: {"score": risk.score, "signals": sorted(risk.signal_names)},
    "rows": lambda r, _: {
        "estimate": r.rows.estimate if r.rows else 0,
        "bounded": r.rows.bounded if r.rows else True,
    },
}
assert frozenset(_CEL_FIELDS) == CEL_FIELDS
_WHOLE: dict[str, frozenset[str] | None] = dict.fromkeys(CEL_FIELDS)
