"""Approval by another person (method ``approval``): an AI agent's step-up approved by a human.

The agent (an API key) asks for a decision about itself; a user holding the policy's approver
role lists and approves it, proving their own level with a fresh grant; the agent collects its
grant once from ``/status`` and the next decision is allowed. The requester never approves
itself; a denial closes the challenge and hands out nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from api_support import Node, StartNode, bearer, same_origin
from factor_support import PASSWORD, enroll_totp, own_grant, totp_code, verify

from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder

Login = Callable[..., Awaitable[httpx.AsyncClient]]

POLICY = textwrap.dedent(
    """\
    version: 1
    levels:
      aal1: {acr: "urn:piigate:aal1"}
      aal2: {acr: "urn:piigate:aal2"}
    pii:
      ssn: {}
    factors:
      totp: {level: aal2}
      approval: {level: aal2, approvers: [security]}
    rules:
      - name: agents-export-with-approval
        when: {pii: any, action: [export], roles: [agent]}
        require: {level: aal2, max_age: 5m, methods: [approval]}
      - name: people-read-ssn
        when: {pii: [ssn], action: [read]}
        require: {level: aal2, max_age: 5m, methods: [totp]}
    """
)


def export_body(subject: str = "agent-7", **extra: Any) -> dict[str, Any]:
    return {
        "subject": {"id": subject, "roles": ["agent"]},
        "action": "export",
        "resource": {"type": "customer", "id": "42"},
        "pii": ["ssn"],
        **extra,
    }


@pytest.fixture
async def node(start_node: StartNode) -> Node:
    return await start_node(policy=PolicyHolder(compile_policy(load_policy_text(POLICY))))


@pytest.fixture
async def agent(node: Node) -> str:
    return (await node.api_key("agent-7"))[1]


@pytest.fixture
async def login(node: Node) -> AsyncIterator[Login]:
    async with contextlib.AsyncExitStack() as stack:

        async def make(name: str, *roles: str) -> httpx.AsyncClient:
            await node.user(name, PASSWORD, roles)
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=node.app),
                    base_url="http://t",
                    headers=same_origin(node.settings),
                )
            )
            response = await client.post("/v1/login", json={"username": name, "password": PASSWORD})
            assert response.status_code == 200, response.text
            return client

        yield make


async def approver_grant(node: Node, client: httpx.AsyncClient, name: str) -> str:
    """A fresh aal2 grant of ``name``'s own, proven with TOTP."""
    _, secret = await enroll_totp(node, client)
    return await own_grant(node, client, secret)


async def agent_challenge(node: Node, agent: str, subject: str = "agent-7") -> str:
    decided = await node.decide(agent, export_body(subject))
    body = decided.json()
    assert body["outcome"] == "step_up" and body["required"]["methods"] == ["approval"], body
    challenge_id: str = body["challenge"]["id"]
    return challenge_id


async def status(node: Node, agent: str, challenge_id: str) -> dict[str, Any]:
    response = await node.client.get(f"/v1/challenges/{challenge_id}/status", headers=bearer(agent))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_approver_approves_and_the_agent_collects_its_grant_once(
    node: Node, agent: str, login: Login
) -> None:
    bob = await login("bob", "security")
    challenge_id = await agent_challenge(node, agent)

    listed = (await bob.get("/v1/approvals")).json()["approvals"]
    assert [c["id"] for c in listed] == [challenge_id]
    assert listed[0]["subject"] == "agent-7" and listed[0]["action"] == "export"

    # A password session is aal1: approving an aal2 step-up needs bob's own fresh grant. The
    # refusal carries bob's own step-up for it; he answers it with his TOTP.
    _, secret = await enroll_totp(node, bob)
    refused = await bob.post(f"/v1/approvals/{challenge_id}", json={"decision": "approve"})
    assert refused.status_code == 401
    assert "insufficient_user_authentication" in refused.headers["www-authenticate"]
    assert (await status(node, agent, challenge_id))["state"] == "pending"
    own = refused.json()["challenge"]["id"]
    shown = (await bob.get(f"/v1/challenges/{own}")).json()
    assert (shown["subject"], shown["level"], shown["methods"]) == ("bob", "aal2", ["totp"])
    assert shown["resource"] == {"type": "approve", "id": challenge_id}
    verified = await verify(bob, own, totp_code(node, secret))
    assert verified.status_code == 200, verified.text
    grant = verified.json()["grant"]
    approved = await bob.post(
        f"/v1/approvals/{challenge_id}",
        json={"decision": "approve"},
        headers={"PIIGate-Grant": grant},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json() == {"id": challenge_id, "state": "approved"}

    first = await status(node, agent, challenge_id)
    assert first["state"] == "approved" and first["level"] == "aal2"
    assert first["amr"] == ["approval"]
    second = await status(node, agent, challenge_id)
    assert second == {"id": challenge_id, "state": "approved"}  # handed out once

    allowed = await node.decide(agent, export_body(grants=[first["grant"]]))
    assert allowed.json()["outcome"] == "allow", allowed.json()
    # The grant is the agent's: another subject cannot use it.
    other = await node.decide(agent, export_body("agent-8", grants=[first["grant"]]))
    assert other.json()["outcome"] == "step_up"

    events = await node.services.audit.list_events(types=["challenge_verified"])
    approvals = [e for e in events if e.data.get("method") == "approval"]
    assert [(e.subject_id, e.data["approver"]) for e in approvals] == [("agent-7", "bob")]
    [collected] = await node.services.audit.list_events(types=["grant_collected"])
    assert collected.data["challenge_id"] == challenge_id
    everything = str([e.data for e in await node.services.audit.list_events(limit=1000)])
    assert grant not in everything and first["grant"] not in everything


async def test_an_approver_opens_a_step_up_for_an_approval(
    node: Node, agent: str, login: Login
) -> None:
    bob = await login("bob", "security")
    _, secret = await enroll_totp(node, bob)
    challenge_id = await agent_challenge(node, agent)
    opened = await bob.post("/v1/challenges", json={"purpose": "approve", "approval": challenge_id})
    assert opened.status_code == 201, opened.text
    own = opened.json()
    assert (own["subject"], own["level"], own["methods"]) == ("bob", "aal2", ["totp"])
    assert own["resource"] == {"type": "approve", "id": challenge_id}
    [created] = await node.services.audit.list_events(types=["challenge_created"])
    assert created.subject_id == "bob"
    assert created.data["purpose"] == "approve" and created.data["about"] == challenge_id

    verified = await verify(bob, own["id"], totp_code(node, secret))
    assert verified.status_code == 200, verified.text
    approved = await bob.post(
        f"/v1/approvals/{challenge_id}",
        json={"decision": "approve"},
        headers={"PIIGate-Grant": verified.json()["grant"]},
    )
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    # Only for a step-up the caller may approve: not one of their own, not by others.
    dave = await login("dave")
    hidden = await dave.post(
        "/v1/challenges",
        json={"purpose": "approve", "approval": await agent_challenge(node, agent)},
    )
    assert hidden.status_code == 404
    done = await bob.post("/v1/challenges", json={"purpose": "approve", "approval": challenge_id})
    assert done.status_code == 409


async def test_the_requester_never_approves_itself(node: Node, login: Login) -> None:
    # A person in the approver role whose own step-up allows approval still cannot approve it.
    carol = await login("carol", "security", "agent")
    _, key = await node.api_key("console")
    challenge_id = await agent_challenge(node, key, subject="carol")
    assert (await carol.get("/v1/approvals")).json()["approvals"] == []
    grant = await approver_grant(node, carol, "carol")
    refused = await carol.post(
        f"/v1/approvals/{challenge_id}",
        json={"decision": "approve"},
        headers={"PIIGate-Grant": grant},
    )
    assert refused.status_code == 403
    assert (await status(node, key, challenge_id))["state"] == "pending"


async def test_only_approvers_and_only_people_may_answer(
    node: Node, agent: str, login: Login
) -> None:
    challenge_id = await agent_challenge(node, agent)
    dave = await login("dave")  # no approver role
    assert (await dave.get("/v1/approvals")).json()["approvals"] == []
    hidden = await dave.post(f"/v1/approvals/{challenge_id}", json={"decision": "approve"})
    assert hidden.status_code == 404
    by_key = await node.client.post(
        f"/v1/approvals/{challenge_id}", json={"decision": "approve"}, headers=bearer(agent)
    )
    assert by_key.status_code == 403
    bad = await dave.post(f"/v1/approvals/{challenge_id}", json={"decision": "maybe"})
    assert bad.status_code == 400
    assert (await status(node, agent, challenge_id))["state"] == "pending"


async def test_a_denial_closes_the_challenge_and_hands_out_nothing(
    node: Node, agent: str, login: Login
) -> None:
    bob = await login("bob", "security")
    grant = await approver_grant(node, bob, "bob")
    challenge_id = await agent_challenge(node, agent)
    denied = await bob.post(
        f"/v1/approvals/{challenge_id}",
        json={"decision": "deny"},
        headers={"PIIGate-Grant": grant},
    )
    assert denied.status_code == 200 and denied.json()["state"] == "denied"
    assert await status(node, agent, challenge_id) == {"id": challenge_id, "state": "denied"}
    again = await bob.post(
        f"/v1/approvals/{challenge_id}",
        json={"decision": "approve"},
        headers={"PIIGate-Grant": grant},
    )
    assert again.status_code == 409
    [event] = await node.services.audit.list_events(types=["challenge_denied"])
    assert event.data["approver"] == "bob" and event.data["reason"] == "denied"


async def test_of_two_approvers_answering_at_once_one_wins(
    node: Node, agent: str, login: Login
) -> None:
    clients = []
    grants = []
    for name in ("bob", "erin"):
        client = await login(name, "security")
        grants.append(await approver_grant(node, client, name))
        clients.append(client)
    challenge_id = await agent_challenge(node, agent)
    answers = await asyncio.gather(
        *(
            client.post(
                f"/v1/approvals/{challenge_id}",
                json={"decision": decision},
                headers={"PIIGate-Grant": grant},
            )
            for client, grant, decision in zip(clients, grants, ("approve", "deny"), strict=True)
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    final = (await status(node, agent, challenge_id))["state"]
    winner = next(a for a in answers if a.status_code == 200).json()["state"]
    assert final == winner


async def test_an_expired_challenge_cannot_be_approved(
    node: Node, agent: str, login: Login
) -> None:
    bob = await login("bob", "security")
    grant = await approver_grant(node, bob, "bob")
    challenge_id = await agent_challenge(node, agent)
    node.clock.advance(301)
    assert (await bob.get("/v1/approvals")).json()["approvals"] == []
    late = await bob.post(
        f"/v1/approvals/{challenge_id}",
        json={"decision": "approve"},
        headers={"PIIGate-Grant": grant},
    )
    assert late.status_code == 409
