"""The policy page: the policy in force read from its compiled objects, and the simulator, which
decides as ``piigate policy explain`` does and leaves no trace (no challenge, no audit event)."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from api_support import EXAMPLE_POLICY, Node
from console_support import csrf_of, sign_in

from piigate.explain import explain, explain_request

PASSWORD = "correct horse battery staple"
SIMULATE = "/security/policy/simulate"
# Each: the form as a person fills it, and the request it stands for, built independently.
CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        {"subject_id": "alice", "action": "update", "pii": ["ssn"]},
        {"subject": {"id": "alice"}, "action": "update", "pii": ["ssn"]},
    ),
    (
        {"subject_id": "bob", "roles": "support", "action": "read", "pii": ["ssn", "phone"]},
        {"subject": {"id": "bob", "roles": ["support"]}, "action": "read", "pii": ["phone", "ssn"]},
    ),
    (
        {"subject_id": "ann", "action": "delete", "pii": ["passport"], "resource_type": "customer",
         "resource_id": "42", "rows": "500", "rows_unbounded": "on"},
        {"subject": {"id": "ann"}, "action": "delete", "pii": ["passport"],
         "resource": {"type": "customer", "id": "42"}, "rows": {"estimate": 500, "bounded": False}},
    ),
    (
        {"subject_id": "ann", "action": "transact", "amount": "12000.50", "currency": "eur",
         "payee": "ACME"},
        {"subject": {"id": "ann"}, "action": "transact",
         "transaction": {"amount": "12000.50", "currency": "EUR", "payee": "ACME"}},
    ),
    (
        {"subject_id": "ann", "action": "read", "pii": ["phone"], "risk_score": "95"},
        {"subject": {"id": "ann"}, "action": "read", "pii": ["phone"], "risk": {"score": 95}},
    ),
    (
        {"subject_id": "ann", "action": "read", "pii": ["phone"],
         "signal": ["new_device", "new_country"]},
        {"subject": {"id": "ann"}, "action": "read", "pii": ["phone"],
         "risk": {"signals": ["new_country", "new_device"]}},
    ),
    (
        {"subject_id": "eve", "roles": "agent, support", "action": "export", "pii": ["ssn"]},
        {"subject": {"id": "eve", "roles": ["agent", "support"]}, "action": "export",
         "pii": ["ssn"]},
    ),
]  # fmt: skip
COMPARED = ("outcome", "rules", "mask", "required", "reason", "risk", "explain", "policy")


@pytest.fixture
async def admin(node: Node) -> Node:
    await node.user("bob", PASSWORD, ["admin"])
    assert (await sign_in(node, "bob", PASSWORD)).status_code == 303
    return node


async def simulate(node: Node, form: dict[str, Any]) -> tuple[int, str]:
    token = csrf_of(await node.client.get("/security/policy"))
    answer = await node.client.post(SIMULATE, data={"csrf_token": token, **form})
    return answer.status_code, answer.text


def shown_explanation(page: str) -> dict[str, Any]:
    found = re.search(r'<pre class="json" id="explain-json">(.*?)</pre>', page, re.S)
    assert found is not None, "no explanation on the page"
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result


async def test_the_page_shows_the_policy_in_force(admin: Node) -> None:
    page = await admin.client.get("/security/policy")
    assert page.status_code == 200
    text = html.unescape(page.text)
    compiled = admin.services.policy.current
    assert compiled is not None
    assert compiled.digest in text and str(EXAMPLE_POLICY) in text
    assert "nist-800-63b-4" in text
    for rule in compiled.policy.rules:
        assert f"<code>{rule.name}</code>" in text
    assert "pii: mailing_address" in text and "proven within 15m" in text
    assert "bound to the one request (max_age 0)" in text and "amount over 10000" in text
    assert "risk at least 90" in text and "deny: risk too high" in text
    assert "methods: webauthn, push" in text and "otherwise mask" in text
    assert "approvers: security" in text and "number matching" in text
    for name in compiled.policy.pii:
        assert f'name="pii" value="{name}"' in text
    assert "urn:piigate:aal3" in text and "phishing-resistant" in text
    assert "window 1m" in text  # velocity's window, as a duration


@pytest.mark.parametrize(("form", "request_body"), CASES)
async def test_the_simulator_decides_as_policy_explain(
    admin: Node, form: dict[str, Any], request_body: dict[str, Any]
) -> None:
    before = await admin.services.audit.head()
    status, page = await simulate(admin, form)
    assert status == 200, page
    shown = shown_explanation(page)
    expected = await explain_request(str(EXAMPLE_POLICY), request_body)  # the command's function
    assert {k: shown.get(k) for k in COMPARED} == {k: expected.get(k) for k in COMPARED}
    assert f'data-outcome="{expected["outcome"]}"' in page
    for rule in expected["rules"]:
        assert f'<code class="rule">{rule}</code>' in page
    # Nothing happened for real: no audit event, no challenge stored.
    assert await admin.services.audit.head() == before
    if "challenge" in shown:
        assert await admin.services.challenges.get(shown["challenge"]["id"]) is None


async def test_the_session_stands_in_for_a_proof_at_the_simulators_clock(admin: Node) -> None:
    fresh = {"subject_id": "alice", "action": "update", "pii": ["ssn"], "level": "aal2"}
    status, page = await simulate(admin, {**fresh, "auth_age": "60", "method": ["totp"]})
    assert status == 200
    shown = shown_explanation(page)
    assert shown["outcome"] == "allow"
    now = int(admin.clock.now().timestamp())
    body = {
        "subject": {"id": "alice"}, "action": "update", "pii": ["ssn"],
        "session": {"acr": "urn:piigate:aal2", "amr": ["otp"], "auth_time": now - 60},
    }  # fmt: skip
    expected = await explain(admin.services.policy, body, clock=admin.clock)
    assert {k: shown.get(k) for k in COMPARED} == {k: expected.get(k) for k in COMPARED}
    # Ten minutes old is too old for the 5 minute rule.
    _, stale = await simulate(admin, {**fresh, "auth_age": "10m"})
    assert shown_explanation(stale)["outcome"] == "step_up"
    # The auth age counts back from the node's clock, wherever it stands.
    admin.clock.advance(timedelta(hours=1).total_seconds())
    _, later = await simulate(admin, {**fresh, "auth_age": "1m"})
    assert shown_explanation(later)["outcome"] == "allow"


async def test_an_ssn_update_shows_each_rules_part(admin: Node) -> None:
    status, page = await simulate(
        admin, {"subject_id": "alice", "action": "update", "pii": ["ssn"], "risk_score": "65"}
    )
    assert status == 200
    text = html.unescape(page)
    assert 'data-outcome="step_up"' in text
    parts = re.findall(r"<tr class=\"(matched|unmatched)\"><td><code>([\w-]+)</code>", text)
    assert ("matched", "edit-identity-numbers") in parts and ("matched", "risky-context") in parts
    assert ("unmatched", "delete-pii-records") in parts
    assert len(parts) == len(admin.services.policy.current.policy.rules)  # type: ignore[union-attr]
    # The strictest of the two: the risky context's aal3, the identity numbers' 5 minutes.
    assert "<dt>Step-up</dt><dd>aal3, within 5m, by webauthn</dd>" in text


async def test_invalid_input_names_each_field(admin: Node) -> None:
    before = await admin.services.audit.head()
    status, page = await simulate(
        admin,
        {
            "subject_id": "",
            "action": "steal",
            "pii": ["ssn", "shoe_size"],
            "auth_age": "soon",
            "level": "aal2",
            "amount": "lots",
            "risk_score": "101",
            "rows": "-3",
            "signal": ["bad_vibes"],
        },
    )
    assert status == 400
    problems = dict(re.findall(r"<li><strong>([^<]+)</strong>: ([^<]+)</li>", html.unescape(page)))
    assert problems == {
        "Subject id": "required",
        "Action": "choose one of read, update, create, delete, export, transact, login",
        "PII classes": "not one of the policy's",
        "Auth age": "seconds, or a duration such as 30s, 5m, 12h",
        "Amount": "a number of at least 0, such as 12000.50",
        "Risk score": "a whole number from 0 to 100",
        "Rows": "a whole number",
        "Risk signals": "not one of the policy's",
    }
    assert "shoe_size" not in page and "bad_vibes" not in page.split("<form")[0]
    assert 'id="explain-json"' not in page
    assert await admin.services.audit.head() == before


async def test_problems_found_by_the_request_reader_name_the_form_field(admin: Node) -> None:
    status, page = await simulate(
        admin, {"subject_id": "x" * 256, "action": "transact", "amount": "1", "currency": "EURO"}
    )
    assert status == 400
    problems = dict(re.findall(r"<li><strong>([^<]+)</strong>: ([^<]+)</li>", html.unescape(page)))
    assert problems == {"Currency": "three letters, such as EUR"}
    status, page = await simulate(admin, {"subject_id": "x" * 256, "action": "read"})
    assert status == 400
    problems = dict(re.findall(r"<li><strong>([^<]+)</strong>: ([^<]+)</li>", html.unescape(page)))
    assert problems == {"Subject id": "String should have at most 255 characters"}
    status, page = await simulate(admin, {"subject_id": "ann", "action": "transact"})
    assert status == 400 and "a transact request needs an amount" in page
