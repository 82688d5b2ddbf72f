"""A grant is for the app that asked for its decision (its JWT ``aud``), on SQLite and PostgreSQL.

The attack: app A's decision opens a step-up, the user proves it, and app A holds the grant.
App B presents that grant for the same subject, action, PII and resource. It must not count
(B gets its own step-up) and must not be spent (A can still use it), unless a rule says that
grants from any app meet it. Nor does an app's grant change the user's factors.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from api_support import Node, StartNode, bearer, decision_body
from factor_support import Users, enroll_totp, factor_policy, own_grant, totp_code, users

__all__ = ["users"]  # the fixture, re-exported for pytest


def claims(token: str) -> dict[str, Any]:
    """The (unverified) claims of a grant token, to look at its audience."""
    payload = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


async def last_decision(node: Node) -> dict[str, Any]:
    events = await node.services.audit.list_events(types=["decision"], limit=1000)
    return dict(events[-1].data)


async def app_grant(node: Node, key: str, body: dict[str, Any], secret: str) -> dict[str, Any]:
    """The app with ``key`` asks, gets a step-up, and relays the user's TOTP code for it."""
    decided = (await node.decide(key, body)).json()
    assert decided["outcome"] == "step_up", decided
    response = await node.client.post(
        f"/v1/challenges/{decided['challenge']['id']}/verify",
        json={"method": "totp", "code": totp_code(node, secret)},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    node.clock.advance(30)  # the code's time step is spent
    granted: dict[str, Any] = response.json()
    return granted


async def outcome(node: Node, key: str, body: dict[str, Any], grant: str) -> str:
    answer: str = (await node.decide(key, {**body, "grants": [grant]})).json()["outcome"]
    return answer


async def test_another_apps_bound_grant_is_not_counted_nor_spent(
    start_node: StartNode, users: Users
) -> None:
    node = await start_node(policy=factor_policy())
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    a_id, app_a = await node.api_key("app-a")
    _, app_b = await node.api_key("app-b")
    body = decision_body("delete", ["ssn"])  # max_age: 0, bound to the one request

    granted = await app_grant(node, app_a, body, secret)
    assert granted["single_use"] is True
    assert claims(granted["grant"])["aud"] == a_id

    stolen = (await node.decide(app_b, {**body, "grants": [granted["grant"]]})).json()
    assert stolen["outcome"] == "step_up" and "challenge" in stolen
    event = await last_decision(node)
    assert event["rejected_grants"] == ["wrong_audience"] and "proofs" not in event
    # Not spent: app A still gets its allow with it, once.
    assert await outcome(node, app_a, body, granted["grant"]) == "allow"
    assert await outcome(node, app_a, body, granted["grant"]) == "step_up"


async def test_another_apps_unbound_grant_is_not_counted(
    start_node: StartNode, users: Users
) -> None:
    node = await start_node(policy=factor_policy())
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    _, app_a = await node.api_key("app-a")
    _, app_b = await node.api_key("app-b")
    body = decision_body("read", ["ssn"])  # aal2 within 5 minutes: a reusable grant

    granted = await app_grant(node, app_a, body, secret)
    assert granted["single_use"] is False
    assert await outcome(node, app_b, body, granted["grant"]) == "step_up"
    assert (await last_decision(node))["rejected_grants"] == ["wrong_audience"]
    assert await outcome(node, app_a, body, granted["grant"]) == "allow"
    assert await outcome(node, app_a, body, granted["grant"]) == "allow"  # reusable
    # Nor is the user's own grant (from her own step-up) an app's.
    own = await own_grant(node, alice, secret)
    assert claims(own)["aud"] == "user:alice"
    assert await outcome(node, app_a, body, own) == "step_up"


async def test_a_rule_may_accept_grants_from_any_app(start_node: StartNode, users: Users) -> None:
    node = await start_node(policy=factor_policy(grants_from="any_app"))
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    _, app_a = await node.api_key("app-a")
    _, app_b = await node.api_key("app-b")
    read = decision_body("read", ["ssn"])
    granted = await app_grant(node, app_a, read, secret)
    assert await outcome(node, app_b, read, granted["grant"]) == "allow"
    # Only the rule that says so shares: the bound delete rule still wants B's own grant.
    delete = decision_body("delete", ["ssn"])
    bound = await app_grant(node, app_a, delete, secret)
    assert await outcome(node, app_b, delete, bound["grant"]) == "step_up"
    assert await outcome(node, app_a, delete, bound["grant"]) == "allow"


async def test_an_apps_grant_does_not_change_the_users_factors(
    start_node: StartNode, users: Users
) -> None:
    node = await start_node(policy=factor_policy())
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    _, app_a = await node.api_key("app-a")
    granted = await app_grant(node, app_a, decision_body("read", ["ssn"]), secret)
    refused = await add_totp(alice, granted["grant"])
    assert refused.status_code == 401
    assert refused.json()["code"] == "insufficient_user_authentication"
    # Her own step-up does.
    assert (await add_totp(alice, await own_grant(node, alice, secret))).status_code == 201


async def add_totp(client: httpx.AsyncClient, grant: str) -> httpx.Response:
    return await client.post("/v1/factors/totp", headers={"PIIGate-Grant": grant})
