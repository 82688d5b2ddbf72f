"""CEL programs receive only the request fields (and keys) their source names: converting
values into CEL costs time, but a program must never miss a value it can reach."""

from __future__ import annotations

import textwrap

import pytest

from piigate.model import AccessRequest, Action, Outcome, Resource, RiskAssessment, Subject
from piigate.policy import compile_policy, evaluate, load_policy_text
from piigate.policy.compiled import CEL_FIELDS, cel_fields, cel_selection


def test_named_fields_are_found() -> None:
    src = 'request.subject.roles.exists(r, r == "x") && request . risk.score > 3'
    assert cel_fields(src) == {"subject", "risk"}


def test_any_other_use_of_request_gets_every_field() -> None:
    assert cel_fields('request["action"] == "read"') == CEL_FIELDS
    assert cel_fields("size(request) > 1") == CEL_FIELDS
    assert cel_fields("request.nonsense == 1") == CEL_FIELDS


def test_plain_selections_keep_only_their_keys() -> None:
    src = 'request.subject.id == request.resource.id && "ssn" in request.pii'
    assert cel_selection(src) == {
        "subject": frozenset({"id"}),
        "resource": frozenset({"id"}),
        "pii": None,
    }
    assert cel_selection("request.subject.id == 'a' || request.subject . kind == 'b'") == {
        "subject": frozenset({"id", "kind"})
    }


@pytest.mark.parametrize(
    "src",
    [
        'request.subject == {"id": "a"}',  # the map compared whole
        "size(request.subject) > 1",  # its size
        'request.subject["id"] == "a"',  # indexed, not selected
        'request.subject.exists(k, k == "roles")',  # a macro ranging over its keys
        'request.subject.?id.orValue("") == "a"',  # optional selection
        'request.subject.id == "a" && request.subject.all(k, k != "x")',  # one whole use is enough
    ],
)
def test_any_other_use_of_a_field_keeps_it_whole(src: str) -> None:
    assert cel_selection(src)["subject"] is None


def _decide(expr: str, request: AccessRequest) -> Outcome:
    policy = compile_policy(
        load_policy_text(
            "version: 1\nlevels: {aal1: {acr: a}}\nrules:\n"
            f"  - name: r\n    when:\n      expr: '{expr}'\n    deny: refused\n"
        )
    )
    return evaluate(policy, request, RiskAssessment(), (), now=None, binding="").outcome  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expr", "outcome"),
    [
        # Narrowed to the keys it selects, the program decides as it would on the whole view.
        ("request.subject.id == request.resource.id", Outcome.DENY),
        ('has(request.subject.kind) && request.subject.id == "c"', Outcome.DENY),
        ("has(request.subject.nope)", Outcome.ALLOW),
        # Whole maps: the keys are all there to range over, count or compare.
        ('request.subject.exists(k, k == "roles")', Outcome.DENY),
        ("size(request.resource) == 2", Outcome.DENY),
        # A key that does not exist is an error, as on the whole view: it fails closed.
        ("request.subject.nope == 1", Outcome.DENY),
    ],
)
def test_narrowed_views_decide_as_the_whole_view(expr: str, outcome: Outcome) -> None:
    request = AccessRequest(Subject("c"), Action.READ, resource=Resource("customer", "c"))
    assert _decide(expr, request) is outcome


def test_a_program_sees_the_fields_it_names_and_still_decides() -> None:
    policy = compile_policy(
        load_policy_text(
            textwrap.dedent(
                """\
                version: 1
                levels: {aal1: {acr: a}}
                rules:
                  - name: contractors
                    when:
                      expr: >-
                        request.subject.roles.exists(r, r == "contractor")
                        && request.action == "export"
                    deny: "contractors cannot export"
                """
            )
        )
    )
    assert policy.cel_fields["contractors"] == {"subject": frozenset({"roles"}), "action": None}
    request = AccessRequest(Subject("c", roles=frozenset({"contractor"})), Action.EXPORT)
    result = evaluate(policy, request, RiskAssessment(), (), now=None, binding="")  # type: ignore[arg-type]
    assert result.outcome is Outcome.DENY
    other = AccessRequest(Subject("c"), Action.EXPORT)
    assert (
        evaluate(policy, other, RiskAssessment(), (), now=None, binding="").outcome is Outcome.ALLOW
    )  # type: ignore[arg-type]
