"""Policy test cases (CONTRACT §3): requests with expectations, checked against a policy.

``session.level`` + ``session.auth_age`` stand in for a grant and ``risk`` for the risk engine, so a
policy can be tested without any running service. ``expect`` checks only the keys it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import yaml

from piigate.decision_request import read_case_request
from piigate.errors import PolicyError
from piigate.model import AccessRequest, ProvenLevel, RiskAssessment
from piigate.policy.compiled import CompiledPolicy
from piigate.policy.durations import parse_duration
from piigate.policy.evaluate import Evaluation, evaluate
from piigate.policy.yamlnodes import NodeReader, YamlErrors, compose_file

__all__ = ["CaseResult", "PolicyCase", "load_cases", "request_from_mapping", "run_case"]

CASE_KEYS: Final = frozenset({"name", "request", "expect"})
REQUEST_KEYS: Final = frozenset(
    {"subject", "session", "action", "pii", "resource", "transaction", "rows", "risk", "context"}
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
    data: Any, *, policy: CompiledPolicy, now: datetime
) -> tuple[AccessRequest, tuple[ProvenLevel, ...]]:
    """A test case's request (the decision request of CONTRACT §4.2, read by the same models)
    and the proof its session stands in for; raises ValueError naming the field."""
    if not isinstance(data, Mapping):
        raise ValueError("request must be a mapping")
    return read_case_request(data, policy, now=now)
