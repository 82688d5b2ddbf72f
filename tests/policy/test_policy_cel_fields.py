"""CEL programs receive only the request fields their source names (conversion costs time)."""

from __future__ import annotations

import textwrap

from piigate.model import AccessRequest, Action, Outcome, RiskAssessment, Subject
from piigate.policy import compile_policy, evaluate, load_policy_text
from piigate.policy.compiled import CEL_FIELDS, cel_fields


def test_named_fields_are_found() -> None:
    src = 'request.subject.roles.exists(r, r == "x") && request . risk.score > 3'
    assert cel_fields(src) == {"subject", "risk"}


def test_any_other_use_of_request_gets_every_field() -> None:
    assert cel_fields('request["action"] == "read"') == CEL_FIELDS
    assert cel_fields("size(request) > 1") == CEL_FIELDS
    assert cel_fields("request.nonsense == 1") == CEL_FIELDS


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
    assert policy.cel_fields["contractors"] == {"subject", "action"}
    request = AccessRequest(Subject("c", roles=frozenset({"contractor"})), Action.EXPORT)
    result = evaluate(policy, request, RiskAssessment(), (), now=None, binding="")  # type: ignore[arg-type]
    assert result.outcome is Outcome.DENY
    other = AccessRequest(Subject("c"), Action.EXPORT)
    assert (
        evaluate(policy, other, RiskAssessment(), (), now=None, binding="").outcome is Outcome.ALLOW
    )  # type: ignore[arg-type]
