"""Policy test cases (CONTRACT §3): requests with expectations, checked against a policy.

``session.level`` + ``session.auth_age`` stand in for a grant and ``risk`` for the risk engine, so a
policy can be tested without any running service. ``expect`` checks only the keys it names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import yaml

from piigate.errors import PolicyError
from piigate.model import (
    AccessRequest,
    Action,
    Context,
    ProvenLevel,
    Resource,
    RiskAssessment,
    SessionAuth,
    Signal,
    Subject,
    Transaction,
)
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.durations import parse_duration
from piigate.policy.evaluate import Evaluation, evaluate
from piigate.policy.yamlnodes import NodeReader, YamlErrors, compose_file

__all__ = ["CaseResult", "PolicyCase", "load_cases", "request_from_mapping", "run_case"]

CASE_KEYS: Final = frozenset({"name", "request", "expect"})
REQUEST_KEYS: Final = frozenset(
    {"subject", "session", "action", "pii", "resource", "transaction", "risk", "context"}
)
EXPECT_KEYS: Final = frozenset(
    {"outcome", "mask", "level", "max_age", "methods", "rules", "reason"}
)
# Every case is evaluated at this instant, so auth_age is the only notion of time a case needs.
CASE_NOW: Final = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PolicyCase:
    name: str
    request: AccessRequest
    proven: tuple[ProvenLevel, ...]
    expect: Mapping[str, Any]
    position: str


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: PolicyCase
    evaluation: Evaluation
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def load_cases(path: str, policy: CompiledPolicy) -> list[PolicyCase]:
    errors = YamlErrors(path)
    read = NodeReader(errors)
    root = compose_file(path, errors)
    cases: list[PolicyCase] = []
    for item in (read.sequence(root, "the test cases") if root is not None else None) or []:
        spec = read.mapping(item, "a test case", CASE_KEYS)
        if spec is None:
            continue
        missing = [key for key in ("name", "request", "expect") if key not in spec]
        if missing:
            errors.at(item, f"a test case needs {', '.join(missing)}")
            continue
        name = read.string(spec["name"][1], "name") or "?"
        request_node, expect_node = spec["request"][1], spec["expect"][1]
        if read.mapping(request_node, "request", REQUEST_KEYS) is None:
            continue
        expect_spec = read.mapping(expect_node, "expect", EXPECT_KEYS)
        if expect_spec is None:
            continue
        try:
            data = yaml.safe_load(yaml.serialize(request_node))
            request, proven = request_from_mapping(data, policy=policy, now=CASE_NOW)
        except ValueError as exc:
            errors.at(request_node, f"bad request in case {name!r}: {exc}")
            continue
        expect = yaml.safe_load(yaml.serialize(expect_node))
        # Checked here, so a bad expectation is a positioned error and not a crash in run_case.
        bad = {key: problem for key in expect if (problem := _expect_problem(key, expect[key]))}
        for key, problem in bad.items():
            errors.at(expect_spec[key][1], f"bad expect in case {name!r}: {problem}")
        if bad:
            continue
        cases.append(PolicyCase(name, request, proven, expect, str(errors.position(item))))
    if errors:
        raise PolicyError(errors.messages)
    return cases


def run_case(policy: CompiledPolicy, case: PolicyCase) -> CaseResult:
    risk = case.request.risk or RiskAssessment()
    # Session stand-ins can never satisfy a bound (max_age: 0) rule, so no binding is needed.
    result = evaluate(policy, case.request, risk, case.proven, now=CASE_NOW, binding="")
    return CaseResult(case, result, tuple(_compare(case.expect, result)))


def _compare(expect: Mapping[str, Any], got: Evaluation) -> list[str]:
    failures: list[str] = []
    required = got.required if got.outcome.value == "step_up" else None
    actual: dict[str, Any] = {
        "outcome": got.outcome.value,
        "mask": sorted(got.mask),
        "level": required.level if required else None,
        "max_age": required.max_age if required else None,
        "methods": sorted(required.methods) if required else None,
        "rules": sorted(got.rules),
        "reason": got.reason,
    }
    for key, wanted in expect.items():
        if key in ("mask", "methods", "rules"):
            wanted = sorted(wanted or [])
        elif key == "max_age" and wanted is not None:
            wanted = parse_duration(wanted)
        if actual[key] != wanted:
            failures.append(f"expected {key} {wanted!r}, got {actual[key]!r}")
    return failures


def _expect_problem(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if key in ("mask", "methods", "rules"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"{key} must be a list of names"
    elif key == "max_age":
        try:
            parse_duration(value)
        except ValueError as exc:
            return str(exc)
    return None


def request_from_mapping(
    data: Mapping[str, Any], *, policy: CompiledPolicy, now: datetime
) -> tuple[AccessRequest, tuple[ProvenLevel, ...]]:
    """An AccessRequest from the plain mapping of a test case; raises ValueError."""
    if not isinstance(data, Mapping):
        raise ValueError("request must be a mapping")
    subject_data = _mapping(data.get("subject"), "subject")
    if "id" not in subject_data:
        raise ValueError("subject.id is required")
    subject = Subject(
        id=str(subject_data["id"]),
        roles=frozenset(_strings(subject_data.get("roles"), "subject.roles")),
        scopes=frozenset(_strings(subject_data.get("scopes"), "subject.scopes")),
    )
    try:
        action = Action(str(data.get("action")))
    except ValueError:
        raise ValueError(f"unknown action {data.get('action')!r}") from None
    pii = frozenset(_strings(data.get("pii"), "pii"))
    unknown = sorted(pii - set(policy.policy.pii))
    if unknown:
        raise ValueError(f"unknown PII class {unknown[0]!r}")
    res = _mapping(data.get("resource"), "resource")
    resource = Resource(
        type=str(res["type"]) if res.get("type") is not None else None,
        id=str(res["id"]) if res.get("id") is not None else None,
    )
    ctx = _mapping(data.get("context"), "context")
    context = Context(
        ip=ctx.get("ip"), user_agent=ctx.get("user_agent"), device_id=ctx.get("device_id")
    )
    transaction = None
    if data.get("transaction") is not None:
        txn = _mapping(data["transaction"], "transaction")
        try:
            amount = Decimal(str(txn.get("amount")))
        except InvalidOperation:
            raise ValueError("transaction.amount must be a number") from None
        transaction = Transaction(amount, txn.get("currency"), txn.get("payee"))
    risk = None
    if data.get("risk") is not None:
        risk_data = _mapping(data["risk"], "risk")
        score = risk_data.get("score", 0)
        if not isinstance(score, int) or not 0 <= score <= 100:
            raise ValueError("risk.score must be an integer from 0 to 100")
        signals = tuple(Signal(name, 0) for name in _strings(risk_data.get("signals"), "signals"))
        risk = RiskAssessment(score, signals)
    session_data = _mapping(data.get("session"), "session")
    proven: list[ProvenLevel] = []
    level = session_data.get("level")
    if level is not None:
        if level not in policy.ranks:
            raise ValueError(f"unknown level {level!r} in session")
        age = session_data.get("auth_age", 0)
        if not isinstance(age, int) or age < 0:
            raise ValueError("session.auth_age must be a number of seconds")
        methods = frozenset(_strings(session_data.get("methods"), "session.methods"))
        proven.append(
            ProvenLevel(str(level), now - timedelta(seconds=age), "session", methods=methods)
        )
    session = SessionAuth(level=str(level) if level else None)
    request = AccessRequest(
        subject=subject,
        action=action,
        pii=pii,
        resource=resource,
        session=session,
        context=context,
        transaction=transaction,
        risk=risk,
    )
    return request, tuple(proven)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping")
    return value


def _strings(value: Any, what: str) -> Sequence[str]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings")
    return value
