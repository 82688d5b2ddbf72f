"""The approvals queue: an agent's step-up (method ``approval``) listed with what it asks, and
approved or denied from the console, through the approver's own step-up when their session is
too weak, as ``POST /v1/approvals/{id}`` does it."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from api_support import Node, bearer
from console_support import csrf_of, sign_in
from factor_support import enroll_totp, totp_code, verify

PASSWORD = "correct horse battery staple"
QUEUE = "/security/approvals"


def export_body(subject: str = "agent-7", **extra: Any) -> dict[str, Any]:
    return {
        "subject": {"id": subject, "roles": ["agent"]},
        "action": "export",
        "resource": {"type": "customer", "id": "42"},
        "pii": ["ssn"],
        "context": {"ip": "203.0.113.7"},
        **extra,
    }


async def agent_challenge(node: Node, key: str, subject: str = "agent-7") -> str:
    body = (await node.decide(key, export_body(subject))).json()
    assert body["outcome"] == "step_up" and body["required"]["methods"] == ["approval"], body
    challenge_id: str = body["challenge"]["id"]
    return challenge_id


async def status(node: Node, key: str, challenge_id: str) -> dict[str, Any]:
    answer = await node.client.get(f"/v1/challenges/{challenge_id}/status", headers=bearer(key))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def answer(node: Node, challenge_id: str, decision: str, page: str) -> httpx.Response:
    """Press the approve or deny button of ``challenge_id`` on the queue page ``page``."""
    shown = await node.client.get(page)
    return await node.client.post(
        f"{QUEUE}/{challenge_id}", data={"csrf_token": csrf_of(shown), "decision": decision}
    )


async def signed_in_approver(node: Node, name: str = "bob") -> str:
    """``name`` (role security) signed in on ``node.client`` with TOTP enrolled; the secret."""
    await node.user(name, PASSWORD, ["security"])
    assert (await sign_in(node, name, PASSWORD)).status_code == 303
    _, secret = await enroll_totp(node, node.client)
    return secret


async def test_the_queue_shows_what_each_step_up_asks(node: Node) -> None:
    await signed_in_approver(node)
    _, key = await node.api_key("agent-app")
    challenge_id = await agent_challenge(node, key)
    node.clock.advance(5)
    transfer = {
        "subject": {"id": "agent-9", "roles": ["agent"]},
        "action": "export",
        "pii": ["bank_account"],
        "transaction": {"amount": "250.00", "currency": "EUR", "payee": "ACME Ltd"},
    }
    second = (await node.decide(key, transfer)).json()["challenge"]["id"]
    page = await node.client.get(QUEUE)
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert challenge_id in text and second in text
    assert text.index(second) < text.index(challenge_id)  # newest first
    first_card = text[text.index(challenge_id) :]
    for shown in ("agent-7", "export", "ssn", "customer 42", "aal2"):
        assert shown in first_card, shown
    assert "250.00 EUR to ACME Ltd" in text
    # The risk its decision saw, from the decision's audit event.
    [decision] = await node.services.audit.list_events(types=["decision"], subject_id="agent-7")
    assert re.search(rf'class="badge [a-z]+">{decision.data["risk"]["score"]}<', first_card)
    assert text.count('name="decision" value="approve"') == 2


async def test_an_approver_approves_after_their_own_step_up(node: Node) -> None:
    secret = await signed_in_approver(node)
    _, key = await node.api_key("agent-app")
    challenge_id = await agent_challenge(node, key)

    # A password session does not prove aal2: to the step-up page for bob's own challenge.
    asked = await answer(node, challenge_id, "approve", QUEUE)
    assert asked.status_code == 303
    target = urlsplit(asked.headers["location"])
    own = target.path.removeprefix("/stepup/")
    back = parse_qs(target.query)["return_to"][0]
    assert back == f"{QUEUE}?finish={challenge_id}&decision=approve"
    assert (await status(node, key, challenge_id))["state"] == "pending"
    shown = (await node.client.get(f"/v1/challenges/{own}")).json()
    assert shown["subject"] == "bob"
    assert shown["resource"] == {"type": "approve", "id": challenge_id}

    # What the step-up page does: verify bob's own challenge, keep the grant in the cookie.
    verified = await verify(node.client, own, totp_code(node, secret))
    assert verified.status_code == 200, verified.text
    node.client.cookies.set("piigate_grant", verified.json()["grant"])

    # Coming back asks bob to confirm; the return alone answers nothing.
    back_page = await node.client.get(unquote(back))
    assert back_page.status_code == 200
    assert "Your step-up is done: approve this request?" in back_page.text
    assert (await status(node, key, challenge_id))["state"] == "pending"
    done = await answer(node, challenge_id, "approve", unquote(back))
    assert done.status_code == 303
    assert done.headers["location"] == f"{QUEUE}?answered={challenge_id}"
    after = await node.client.get(done.headers["location"])
    assert f"The step-up of agent-7 ({challenge_id}) is now approved." in after.text
    assert challenge_id not in after.text.replace(f"({challenge_id})", "")  # not queued

    collected = await status(node, key, challenge_id)
    assert collected["state"] == "approved" and collected["amr"] == ["approval"]
    allowed = await node.decide(key, export_body(grants=[collected["grant"]]))
    assert allowed.json()["outcome"] == "allow"
    events = await node.services.audit.list_events(types=["challenge_verified"], limit=1000)
    approvals = [e for e in events if e.data.get("method") == "approval"]
    assert [(e.subject_id, e.data["approver"]) for e in approvals] == [("agent-7", "bob")]


async def test_a_denial_closes_the_step_up(node: Node) -> None:
    secret = await signed_in_approver(node)
    _, key = await node.api_key("agent-app")
    challenge_id = await agent_challenge(node, key)
    asked = await answer(node, challenge_id, "deny", QUEUE)
    own = urlsplit(asked.headers["location"]).path.removeprefix("/stepup/")
    verified = await verify(node.client, own, totp_code(node, secret))
    node.client.cookies.set("piigate_grant", verified.json()["grant"])
    back = f"{QUEUE}?finish={challenge_id}&decision=deny"
    confirm = await node.client.get(back)
    assert "Your step-up is done: deny this request?" in confirm.text
    assert 'name="decision" value="approve"' not in confirm.text.split("Waiting")[0]
    done = await answer(node, challenge_id, "deny", back)
    assert done.status_code == 303
    assert await status(node, key, challenge_id) == {"id": challenge_id, "state": "denied"}
    [event] = await node.services.audit.list_events(types=["challenge_denied"])
    assert event.data["approver"] == "bob"

    # Answering again: already answered. With the fresh grant still in its cookie, a second
    # step-up is answered at once.
    again = await answer(node, challenge_id, "approve", QUEUE)
    assert again.status_code == 409
    assert "already answered, or it has expired" in again.text
    other = await agent_challenge(node, key, "agent-8")
    direct = await answer(node, other, "approve", QUEUE)
    assert direct.status_code == 303
    assert (await status(node, key, other))["state"] == "approved"


async def test_the_requester_never_approves_its_own_step_up(node: Node) -> None:
    await node.user("carol", PASSWORD, ["security", "agent"])
    await sign_in(node, "carol", PASSWORD)
    _, key = await node.api_key("console-app")
    challenge_id = await agent_challenge(node, key, subject="carol")
    page = await node.client.get(QUEUE)
    assert challenge_id not in page.text
    refused = await answer(node, challenge_id, "approve", QUEUE)
    assert refused.status_code == 403
    assert "another approver must answer it" in refused.text
    assert (await status(node, key, challenge_id))["state"] == "pending"


async def test_bad_answers_change_nothing(node: Node) -> None:
    await signed_in_approver(node)
    _, key = await node.api_key("agent-app")
    challenge_id = await agent_challenge(node, key)
    token = csrf_of(await node.client.get(QUEUE))
    maybe = await node.client.post(
        f"{QUEUE}/{challenge_id}", data={"csrf_token": token, "decision": "maybe"}
    )
    assert maybe.status_code == 400 and "Choose approve or deny." in maybe.text
    unknown = await node.client.post(
        f"{QUEUE}/chl_nope", data={"csrf_token": token, "decision": "approve"}
    )
    assert unknown.status_code == 404
    node.client.cookies.set("piigate_grant", "not-a-grant")
    forged = await node.client.post(
        f"{QUEUE}/{challenge_id}", data={"csrf_token": token, "decision": "approve"}
    )
    assert forged.status_code == 401
    assert "could not be used" in forged.text
    assert 'piigate_grant=""' in forged.headers["set-cookie"]
    assert (await status(node, key, challenge_id))["state"] == "pending"


async def test_an_admin_outside_the_approver_roles_sees_an_empty_queue(node: Node) -> None:
    await node.user("ada", PASSWORD, ["admin"])
    await sign_in(node, "ada", PASSWORD)
    _, key = await node.api_key("agent-app")
    challenge_id = await agent_challenge(node, key)
    page = await node.client.get(QUEUE)
    assert page.status_code == 200
    assert challenge_id not in page.text
    assert "You do not hold an approver role" in page.text
    refused = await answer(node, challenge_id, "approve", QUEUE)
    assert refused.status_code == 404
