"""``rows_over``: a rule for statements that read or change many rows (a gateway's estimate),
or that have no bound at all (a DELETE or UPDATE without WHERE); and ``request.rows`` in CEL."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from piigate.errors import PolicyError
from piigate.model import AccessRequest, Action, RiskAssessment, Rows, Subject
from piigate.policy import compile_policy, evaluate, load_policy_text
from piigate.policy.cases import load_cases, run_case

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = textwrap.dedent(
    """\
    version: 1
    levels:
      aal1: {acr: a1}
      aal2: {acr: a2}
      aal3: {acr: a3}
    pii:
      ssn: {}
    factors:
      totp: {level: aal2}
      webauthn: {level: aal3}
    rules:
      - name: delete-pii
        when: {pii: any, action: [delete]}
        require: {level: aal2, max_age: 0}
      - name: bulk-pii-change
        when: {pii: any, action: [delete, update], rows_over: 100}
        require: {level: aal3, max_age: 0}
      - name: wide-read
        when: {pii: any, action: [read], expr: "request.rows.estimate > 1000"}
        deny: "too many rows at once"
    """
)


def decide(action: str, rows: Rows | None) -> tuple[str, tuple[str, ...], str | None]:
    compiled = compile_policy(load_policy_text(POLICY))
    request = AccessRequest(Subject("ann"), Action(action), frozenset({"ssn"}), rows=rows)
    result = evaluate(compiled, request, RiskAssessment(), (), now=NOW, binding="")
    level = result.required.level if result.required else None
    return result.outcome.value, result.rules, level


@pytest.mark.parametrize(
    ("rows", "level"),
    [
        (None, "aal2"),
        (Rows(1), "aal2"),
        (Rows(100), "aal2"),  # strict, as amount_over
        (Rows(101), "aal3"),
        (Rows(0, bounded=False), "aal3"),  # no WHERE: above any limit
    ],
)
def test_rows_over_demands_the_higher_level(rows: Rows | None, level: str) -> None:
    outcome, _, required = decide("delete", rows)
    assert outcome == "step_up" and required == level


def test_request_rows_in_cel() -> None:
    assert decide("read", Rows(5000))[0] == "deny"
    assert decide("read", Rows(10))[0] == "allow"
    assert decide("read", None)[0] == "allow"  # no estimate: 0 rows


@pytest.mark.parametrize("bad", ["-1", "many", "1.5"])
def test_rows_over_must_be_a_count(bad: str) -> None:
    text = POLICY.replace("rows_over: 100", f"rows_over: {bad}")
    with pytest.raises(PolicyError) as refused:
        load_policy_text(text, source="p.yaml")
    assert any("rows_over" in line and line.startswith("p.yaml:") for line in refused.value.errors)


def test_policy_cases_can_give_rows(tmp_path: Path) -> None:
    compiled = compile_policy(load_policy_text(POLICY))
    path = tmp_path / "cases.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            - name: a delete without WHERE needs aal3
              request:
                subject: {id: ann}
                action: delete
                pii: [ssn]
                rows: {estimate: 3, bounded: false}
              expect: {outcome: step_up, level: aal3, max_age: 0}
            - name: a small delete needs aal2
              request: {subject: {id: ann}, action: delete, pii: [ssn], rows: {estimate: 3}}
              expect: {outcome: step_up, level: aal2}
            """
        )
    )
    cases = load_cases(str(path), compiled)
    results = [run_case(compiled, case) for case in cases]
    assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_rows_do_not_change_a_request_without_them() -> None:
    base = AccessRequest(Subject("ann"), Action.READ, frozenset({"ssn"}))
    assert replace(base, rows=None) == base
