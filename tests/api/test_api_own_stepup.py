"""A user's own step-up (``POST /v1/challenges``, and the challenge in a refusal's 401), end to
end over the example policy on SQLite and PostgreSQL.

A user with TOTP logs in and tries to add a second factor: the 401 carries a challenge for her
own step-up; she answers it with her TOTP and retries with the grant. Or she asks for one first.
Only people (session cookie, bearer JWT) open their own step-ups; bad requests are 400 problems.
"""

from __future__ import annotations

from typing import Any

import pytest
from api_support import PROBLEM, Node, bearer
from factor_support import Users, enroll_totp, totp_code, users, verify

__all__ = ["users"]  # the fixture, re-exported for pytest

STEP_UP_HEADER = (
    'Bearer error="insufficient_user_authentication", acr_values="urn:piigate:aal2", max_age=300'
)


async def created_events(node: Node) -> list[tuple[str | None, dict[str, Any]]]:
    events = await node.services.audit.list_events(types=["challenge_created"], limit=1000)
    return [(e.subject_id, dict(e.data)) for e in events]


async def test_a_user_steps_up_in_the_refusal_to_add_a_second_factor(
    node: Node, users: Users
) -> None:
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)

    refused = await alice.post("/v1/factors/totp", json={"label": "tablet"})
    assert refused.status_code == 401
    assert refused.headers["content-type"] == PROBLEM
    assert refused.headers["www-authenticate"] == STEP_UP_HEADER
    problem = refused.json()
    assert problem["code"] == "insufficient_user_authentication"
    # The challenge as a decision answer carries it: straight on to verification.
    challenge = problem["challenge"]
    assert challenge["id"].startswith("chl_") and isinstance(challenge["expires_at"], int)
    shown = (await alice.get(f"/v1/challenges/{challenge['id']}")).json()
    assert shown["subject"] == "alice" and shown["state"] == "pending"
    assert (shown["level"], shown["max_age"], shown["bound"]) == ("aal2", 300, False)
    assert "totp" in shown["methods"] and "approval" not in shown["methods"]
    assert shown["resource"] == {"type": "manage_factors", "id": None}
    assert await created_events(node) == [
        (
            "alice",
            {
                "challenge_id": challenge["id"],
                "purpose": "manage_factors",
                "level": "aal2",
                "max_age": 300,
                "methods": shown["methods"],
            },
        )
    ]

    verified = await verify(alice, challenge["id"], totp_code(node, secret))
    assert verified.status_code == 200, verified.text
    grant = verified.json()["grant"]
    added = await alice.post(
        "/v1/factors/totp", json={"label": "tablet"}, headers={"PIIGate-Grant": grant}
    )
    assert added.status_code == 201, added.text
    assert added.json()["state"] == "pending"


async def test_a_user_opens_her_own_step_up(node: Node, users: Users) -> None:
    alice = await users(node, "alice")
    # Nothing to prove before the first factor: it is enrolled with the session alone.
    early = await alice.post("/v1/challenges", json={"purpose": "manage_factors"})
    assert early.status_code == 409 and early.headers["content-type"] == PROBLEM
    _, secret = await enroll_totp(node, alice)

    opened = await alice.post("/v1/challenges", json={"purpose": "manage_factors"})
    assert opened.status_code == 201, opened.text
    body = opened.json()
    assert opened.headers["location"] == f"/v1/challenges/{body['id']}"
    assert (body["subject"], body["level"], body["state"]) == ("alice", "aal2", "pending")
    # Hers alone: nobody else, and no app, answers it.
    bob = await users(node, "bob")
    assert (await verify(bob, body["id"], totp_code(node, secret))).status_code == 404
    _, key = await node.api_key("app")
    relayed = await node.client.post(
        f"/v1/challenges/{body['id']}/verify",
        json={"method": "totp", "code": totp_code(node, secret)},
        headers=bearer(key),
    )
    assert relayed.status_code == 404

    verified = await verify(alice, body["id"], totp_code(node, secret))
    assert verified.status_code == 200, verified.text
    codes = await alice.post(
        "/v1/factors/recovery", headers={"PIIGate-Grant": verified.json()["grant"]}
    )
    assert codes.status_code == 201, codes.text


async def test_only_people_open_their_own_step_up(node: Node) -> None:
    _, key = await node.api_key("app", scopes=("decisions",), roles=("admin",))
    by_key = await node.client.post(
        "/v1/challenges", json={"purpose": "manage_factors"}, headers=bearer(key)
    )
    assert by_key.status_code == 403 and by_key.headers["content-type"] == PROBLEM
    anonymous = await node.client.post("/v1/challenges", json={"purpose": "manage_factors"})
    assert anonymous.status_code == 401
    assert await created_events(node) == []


@pytest.mark.parametrize(
    "body",
    [
        {"purpose": "make_me_admin"},
        {},
        {"purpose": "approve"},
        {"purpose": "approve", "approval": ""},
        {"purpose": "approve", "approval": "x" * 65},
        {"purpose": "manage_factors", "approval": "chl_x"},
        {"purpose": ["manage_factors"]},
        "manage_factors",
    ],
    ids=[
        "unknown-purpose",
        "no-purpose",
        "approve-without-approval",
        "empty-approval",
        "long-approval",
        "extra-key",
        "purpose-not-a-string",
        "not-an-object",
    ],
)
async def test_bad_requests_are_problems(node: Node, users: Users, body: object) -> None:
    alice = await users(node, "alice")
    response = await alice.post("/v1/challenges", json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "bad_request"
    assert "make_me_admin" not in response.text  # the field and the rule, never the value
    assert await created_events(node) == []


async def test_malformed_json_is_a_problem(node: Node, users: Users) -> None:
    alice = await users(node, "alice")
    response = await alice.post(
        "/v1/challenges", content=b'{"purpose":', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM


async def test_approving_an_unknown_step_up_opens_nothing(node: Node, users: Users) -> None:
    alice = await users(node, "alice")
    response = await alice.post(
        "/v1/challenges", json={"purpose": "approve", "approval": "chl_unknown"}
    )
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM
    assert await created_events(node) == []
