"""Policy test cases (CONTRACT §3): load, run, and explain a failure readably."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from piigate.errors import PolicyError
from piigate.policy import CompiledPolicy, compile_policy, load_policy
from piigate.policy.cases import CASE_NOW, load_cases, request_from_mapping, run_case

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def compiled() -> CompiledPolicy:
    return compile_policy(load_policy(str(EXAMPLES / "policy.yaml")))


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cases.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def test_contract_examples_pass(compiled: CompiledPolicy) -> None:
    cases = load_cases(str(EXAMPLES / "policy-tests.yaml"), compiled)
    assert [c.name for c in cases] == [
        "support reads an ssn without step-up",
        "fresh aal2 reads the ssn",
        "delete needs aal3",
        "risky context",
        "an agent's export waits for a person's approval",
        "people are never offered another person's approval",
        "an address update without WHERE needs aal3, bound to that statement",
        "a small address update needs aal2",
    ]
    for case in cases:
        result = run_case(compiled, case)
        assert result.passed, (case.name, result.failures)


def test_contract_examples_details(compiled: CompiledPolicy) -> None:
    cases = {c.name: c for c in load_cases(str(EXAMPLES / "policy-tests.yaml"), compiled)}
    delete = run_case(compiled, cases["delete needs aal3"]).evaluation
    assert delete.required is not None
    assert delete.required.methods == ("webauthn",)
    assert delete.rules == ("delete-pii-records",)
    risky = run_case(compiled, cases["risky context"]).evaluation
    assert risky.rules == ("too-risky",)
    assert risky.reason == "risk too high"


def test_a_wrong_expectation_fails_with_a_readable_message(
    tmp_path: Path, compiled: CompiledPolicy
) -> None:
    path = write(
        tmp_path,
        """\
        - name: wrong on purpose
          request: {subject: {id: ann}, action: delete, pii: [ssn]}
          expect: {outcome: allow, level: aal2, max_age: 5m, mask: [ssn]}
        - name: right on purpose
          request: {subject: {id: ann}, action: delete, pii: [ssn]}
          expect: {outcome: step_up, level: aal3, max_age: 0, methods: [webauthn]}
        """,
    )
    wrong, right = (run_case(compiled, case) for case in load_cases(path, compiled))
    assert not wrong.passed
    assert sorted(wrong.failures) == [
        "expected level 'aal2', got 'aal3'",
        "expected mask ['ssn'], got []",
        "expected max_age 300, got 0",
        "expected outcome 'allow', got 'step_up'",
    ]
    assert right.passed and right.failures == ()
    assert wrong.case.position == f"{path}:1:3"


def test_expect_checks_only_the_keys_it_names(tmp_path: Path, compiled: CompiledPolicy) -> None:
    path = write(
        tmp_path,
        """\
        - name: outcome only
          request: {subject: {id: ann}, action: update, pii: [ssn]}
          expect: {outcome: step_up}
        - name: rules and reason
          request: {subject: {id: ann, roles: [support]}, action: export, pii: [phone]}
          expect: {rules: [support-cannot-export], reason: "support staff cannot export PII"}
        """,
    )
    for case in load_cases(path, compiled):
        assert run_case(compiled, case).passed


def test_session_auth_age_stands_in_for_a_grant(tmp_path: Path, compiled: CompiledPolicy) -> None:
    path = write(
        tmp_path,
        """\
        - name: exactly five minutes
          request:
            {subject: {id: a}, session: {level: aal2, auth_age: 300}, action: update, pii: [ssn]}
          expect: {outcome: allow}
        - name: a second too old
          request:
            {subject: {id: a}, session: {level: aal2, auth_age: 301}, action: update, pii: [ssn]}
          expect: {outcome: step_up, level: aal2, max_age: 300}
        - name: a session never meets max_age 0
          request:
            {subject: {id: a}, session: {level: aal3, auth_age: 0}, action: delete, pii: [ssn]}
          expect: {outcome: step_up, max_age: 0}
        - name: a session never meets a bound transfer, whatever its method
          request:
            subject: {id: a}
            session: {level: aal3, auth_age: 0, methods: [webauthn]}
            action: transact
            transaction: {amount: 20000, currency: EUR, payee: ACME}
          expect: {outcome: step_up, max_age: 0}
        - name: small transfer
          request: {subject: {id: a}, action: transact, transaction: {amount: 10000}}
          expect: {outcome: allow, rules: []}
        - name: risk signals are carried
          request:
            subject: {id: a}
            action: read
            pii: [phone]
            risk: {score: 60, signals: [new_device]}
          expect: {outcome: step_up, level: aal3, rules: [risky-context]}
        """,
    )
    for case in load_cases(path, compiled):
        result = run_case(compiled, case)
        assert result.passed, (case.name, result.failures)


@pytest.mark.parametrize(
    ("body", "needle", "fragment"),
    [
        (
            """\
            - name: typo in expect
              request: {subject: {id: a}, action: read}
              expect: {outcome: allow, masked: [ssn]}
            """,
            "masked",
            "unknown key 'masked' in expect",
        ),
        (
            """\
            - name: typo in request
              request: {subject: {id: a}, verb: read}
              expect: {outcome: allow}
            """,
            "verb",
            "unknown key 'verb' in request",
        ),
        (
            """\
            - name: bad action
              request: {subject: {id: a}, action: peek}
              expect: {outcome: allow}
            """,
            "{subject",
            "bad request in case 'bad action': action: Input should be 'read', 'update',",
        ),
        (
            """\
            - name: bad class
              request: {subject: {id: a}, action: read, pii: [iban]}
              expect: {outcome: allow}
            """,
            "{subject",
            "bad request in case 'bad class': pii: unknown PII class",
        ),
        (
            """\
            - name: bad level
              request: {subject: {id: a}, action: read, session: {level: gold}}
              expect: {outcome: allow}
            """,
            "{subject",
            "unknown level 'gold' in session",
        ),
        (
            """\
            - name: no subject id
              request: {subject: {roles: [x]}, action: read}
              expect: {outcome: allow}
            """,
            "{subject",
            "bad request in case 'no subject id': subject.id: Field required",
        ),
        (
            """\
            - name: score out of range
              request: {subject: {id: a}, action: read, risk: {score: 101}}
              expect: {outcome: allow}
            """,
            "{subject",
            "risk.score: Input should be less than or equal to 100",
        ),
        (
            """\
            - name: missing expect
              request: {subject: {id: a}, action: read}
            """,
            "name: missing",
            "a test case needs expect",
        ),
        (
            """\
            - name: unknown case key
              request: {subject: {id: a}, action: read}
              expect: {outcome: allow}
              tags: [x]
            """,
            "tags",
            "unknown key 'tags' in a test case",
        ),
        (
            """\
            - name: bad max_age expectation
              request: {subject: {id: a}, action: delete, pii: [ssn]}
              expect: {outcome: step_up, max_age: soon}
            """,
            "soon",
            "bad expect in case 'bad max_age expectation': bad duration 'soon'",
        ),
        (
            """\
            - name: mask not a list
              request: {subject: {id: a}, action: read, pii: [ssn]}
              expect: {mask: ssn}
            """,
            "ssn}",
            "mask must be a list of names",
        ),
        (
            """\
            name: not a list
            """,
            "name",
            "the test cases must be a list",
        ),
    ],
)
def test_bad_cases_are_reported_with_position(
    tmp_path: Path, compiled: CompiledPolicy, body: str, needle: str, fragment: str
) -> None:
    path = write(tmp_path, body)
    text = Path(path).read_text()
    start = text.index(needle)
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    with pytest.raises(PolicyError) as info:
        load_cases(path, compiled)
    assert any(
        e.startswith(f"{path}:{line}:{col}: ") and fragment in e for e in info.value.errors
    ), info.value.errors


def test_every_bad_case_is_reported_in_one_go(tmp_path: Path, compiled: CompiledPolicy) -> None:
    path = write(
        tmp_path,
        """\
        - name: one
          request: {subject: {id: a}, action: peek}
          expect: {outcome: allow}
        - name: fine
          request: {subject: {id: a}, action: read}
          expect: {outcome: allow}
        - name: two
          request: {subject: {id: a}, action: read}
          expect: {outcome: allow, colour: red}
        """,
    )
    with pytest.raises(PolicyError) as info:
        load_cases(path, compiled)
    lines = sorted(int(e.split(":")[1]) for e in info.value.errors)
    assert lines == [2, 9]


def test_empty_cases_file(tmp_path: Path, compiled: CompiledPolicy) -> None:
    path = write(tmp_path, "")
    with pytest.raises(PolicyError) as info:
        load_cases(path, compiled)
    assert info.value.errors == [f"{path}:1:1: the file is empty"]


def test_request_from_mapping_builds_the_proof(compiled: CompiledPolicy) -> None:
    request, proven = request_from_mapping(
        {
            "subject": {"id": "bob", "roles": ["support"], "scopes": ["pii:read"]},
            "session": {"level": "aal2", "auth_age": 90},
            "action": "read",
            "pii": ["ssn"],
            "resource": {"type": "customer", "id": "7"},
            "transaction": {"amount": "12.50", "currency": "EUR"},
        },
        policy=compiled,
        now=CASE_NOW,
    )
    assert request.subject.roles == frozenset({"support"})
    assert request.subject.scopes == frozenset({"pii:read"})
    assert request.resource.id == "7"
    assert request.transaction is not None and str(request.transaction.amount) == "12.50"
    (proof,) = proven
    assert (proof.level, proof.source, (CASE_NOW - proof.auth_time).total_seconds()) == (
        "aal2",
        "session",
        90,
    )
    assert proof.binding is None


@pytest.mark.parametrize(
    ("request_data", "error"),
    [
        ({"resource": {"id": 7}}, "resource.id: Input should be a valid string"),
        ({"subject": {"id": "a", "scopes": "x"}}, "subject.scopes: Input should be a valid list"),
        ({"context": {"ip": "10.0.0.256"}}, "context.ip: Value error, not an IP address"),
        ({"transaction": {"amount": "-1"}}, "transaction.amount: Input should be greater than"),
        ({"action": "transact"}, "a transact request needs a transaction"),
        ({"grants": ["t"]}, "grants: Extra inputs are not permitted"),
    ],
)
def test_a_case_request_is_read_as_the_api_reads_a_decision_request(
    compiled: CompiledPolicy, request_data: dict[str, object], error: str
) -> None:
    """One parser (CONTRACT §4.2): what the API refuses, a test case refuses, in its words."""
    data = {"subject": {"id": "a"}, "action": "read", **request_data}
    with pytest.raises(ValueError, match=re.escape(error)):
        request_from_mapping(data, policy=compiled, now=CASE_NOW)
