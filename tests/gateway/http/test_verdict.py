"""Verdicts: read from a remote engine's answer (fail closed on anything else) and rendered
as the answers every gateway edge gives."""

from __future__ import annotations

import json
from typing import Any

import pytest

from piigate.errors import ServiceUnavailable
from piigate.gateway.http.verdict import (
    Verdict,
    answer_masks,
    refusal,
    unlock_headers,
    verdict_from_json,
)
from piigate.model import Outcome

BASE = "https://piigate.example"
STEP_UP: dict[str, Any] = {
    "decision_id": "dec_1",
    "outcome": "step_up",
    "rules": ["edit-identity-numbers"],
    "mask": [],
    "required": {
        "level": "aal2",
        "acr_values": ["urn:piigate:aal2"],
        "max_age": 300,
        "methods": ["totp"],
        "binding": None,
    },
    "challenge": {"id": "chl_1", "expires_at": 1764300300},
    "risk": {"score": 0, "signals": []},
}


def test_a_step_up_answer_is_read_and_rendered_as_rfc_9470() -> None:
    verdict = verdict_from_json(STEP_UP, BASE)
    assert verdict.outcome is Outcome.STEP_UP
    answer = refusal(verdict, "/customers/1")
    assert answer is not None and answer.status == 401
    headers = dict(answer.headers)
    assert headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_user_authentication", acr_values="urn:piigate:aal2", '
        "max_age=300"
    )
    body = json.loads(answer.body)
    assert body["code"] == "insufficient_user_authentication"
    assert body["challenge"] == {
        "id": "chl_1",
        "expires_at": 1764300300,
        "url": f"{BASE}/stepup/chl_1",
        "verify_url": f"{BASE}/v1/challenges/chl_1/verify",
    }
    assert body["required"]["methods"] == ["totp"]


def test_a_missing_scope_is_rfc_6750_insufficient_scope() -> None:
    verdict = Verdict("dec_2", Outcome.DENY, missing_scope=("customers:write",))
    answer = refusal(verdict)
    assert answer is not None and answer.status == 403
    assert dict(answer.headers)["WWW-Authenticate"].startswith('Bearer error="insufficient_scope"')
    assert json.loads(answer.body)["code"] == "insufficient_scope"


def test_a_deny_says_the_policy_s_reason() -> None:
    answer = refusal(Verdict("dec_3", Outcome.DENY, reason="risk too high"))
    assert answer is not None and answer.status == 403
    body = json.loads(answer.body)
    assert body["detail"] == "risk too high" and body["decision_id"] == "dec_3"


def test_an_allow_goes_on_and_a_mask_says_what_unlocks_it() -> None:
    verdict = verdict_from_json(
        {**STEP_UP, "outcome": "allow", "mask": ["ssn"], "level": "aal1"}, BASE
    )
    assert refusal(verdict) is None
    assert verdict.level == "aal1"
    assert unlock_headers(verdict, ["ssn", "passport"]) == [
        ("PIIGate-Masked", "passport, ssn"),
        ("PIIGate-Unlock", 'acr_values="urn:piigate:aal2", max_age=300, challenge="chl_1"'),
    ]
    assert unlock_headers(verdict, []) == []


@pytest.mark.parametrize(
    "broken",
    [
        [],
        {"outcome": "allow"},
        {**STEP_UP, "outcome": "maybe"},
        {**STEP_UP, "mask": "ssn"},
        {**STEP_UP, "required": {**STEP_UP["required"], "max_age": "300"}},
        {**STEP_UP, "required": {**STEP_UP["required"], "acr_values": ['a"\r\nSet-Cookie: x']}},
        {**STEP_UP, "challenge": {"id": 7}},
        {**STEP_UP, "level": ["aal3"]},
    ],
)
def test_an_answer_that_is_not_a_decision_fails_closed(broken: object) -> None:
    with pytest.raises(ServiceUnavailable):
        verdict_from_json(broken, BASE)


def test_a_refused_read_of_a_writes_answer_masks_all_of_it() -> None:
    step_up = verdict_from_json(STEP_UP, BASE)
    masked = answer_masks(step_up, ["ssn", "phone"])
    assert masked.mask == {"ssn", "phone"}
    headers = dict(unlock_headers(masked, sorted(masked.mask)))
    assert headers["PIIGate-Unlock"].endswith('challenge="chl_1"')  # what would unlock them
    denied = answer_masks(Verdict("dec_2", Outcome.DENY, reason="no"), ["ssn"])
    assert denied.mask == {"ssn"}
    assert "PIIGate-Unlock" not in dict(unlock_headers(denied, ["ssn"]))
    allowed = Verdict("dec_3", Outcome.ALLOW, mask=frozenset({"phone"}))
    assert answer_masks(allowed, ["ssn", "phone"]) is allowed
