"""``POST /v1/login`` decided as ``action: login``: a login rule makes the user step up (a
challenge and a login ticket, no session), the ticket answers that one challenge, and
``POST /v1/login/complete`` opens the session once it is approved. SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from api_support import PROBLEM, Node, StartNode, decision_body, same_origin
from factor_support import PASSWORD, Users, enroll_totp, totp_code, users, wrong
from feed_support import KnownDevices, login_policy
from sqlalchemy import select

from piigate.store.tables import audit_events, ceremonies

__all__ = ["users"]  # the fixture, re-exported for pytest

TICKET = "PIIGate-Login-Ticket"
Browser = Callable[[], httpx.AsyncClient]


@dataclass
class Rig:
    node: Node
    risk: KnownDevices
    secret: str  # alice's TOTP secret
    browser: Browser  # a new client: its own cookie jar


@pytest.fixture
async def rig(start_node: StartNode, users: Users) -> AsyncIterator[Rig]:
    node = await start_node(policy=login_policy())
    alice = await users(node, "alice")  # logged in before any risk is known: no step-up
    _, secret = await enroll_totp(node, alice)
    risk = KnownDevices().install(node)
    async with contextlib.AsyncExitStack() as stack:

        def browser() -> httpx.AsyncClient:
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=node.app),
                base_url="http://t",
                headers={**same_origin(node.settings), "User-Agent": "Mozilla/5.0 (test)"},
            )
            stack.push_async_callback(client.aclose)
            return client

        yield Rig(node, risk, secret, browser)


async def login(client: httpx.AsyncClient, username: str = "alice") -> httpx.Response:
    return await client.post("/v1/login", json={"username": username, "password": PASSWORD})


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Name → the whole ``Set-Cookie`` line, for the cookies the response sets."""
    lines = response.headers.get_list("set-cookie")
    return {line.split("=", 1)[0]: line for line in lines}


async def stepped_up(rig: Rig, client: httpx.AsyncClient) -> dict[str, object]:
    response = await login(client)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"].startswith(
        'Bearer error="insufficient_user_authentication", acr_values="urn:piigate:aal2"'
    )
    assert set_cookies(response) == {}  # no session, no device cookie: nothing verified yet
    body: dict[str, object] = response.json()
    return body


async def test_a_new_device_steps_up_and_the_ticket_completes_the_login(rig: Rig) -> None:
    node, client = rig.node, rig.browser()
    body = await stepped_up(rig, client)
    assert body["code"] == "insufficient_user_authentication"
    assert body["required"] == {
        "level": "aal2",
        "acr_values": ["urn:piigate:aal2"],
        "max_age": None,
        "methods": ["totp", "recovery"],
    }
    assert body["risk"] == {"score": 30, "signals": ["new_device"]}
    assert body["complete_url"] == "/v1/login/complete"
    challenge = body["challenge"]
    assert isinstance(challenge, dict)
    ticket = str(body["login_ticket"])
    headers = {TICKET: ticket}
    # The decision was made on this request's context, a new device id minted for it.
    asked = rig.risk.assessed[-1]
    assert asked.action.value == "login"
    assert asked.context.ip == "127.0.0.1" and asked.context.user_agent == "Mozilla/5.0 (test)"
    device = asked.context.device_id
    assert device is not None and device.startswith("dev_")

    # Not approved yet: 409, and the ticket stays good.
    early = await client.post("/v1/login/complete", json={"ticket": ticket})
    assert early.status_code == 409, early.text
    # The ticket shows the challenge and answers it.
    shown = await client.get(f"/v1/challenges/{challenge['id']}", headers=headers)
    assert shown.status_code == 200 and shown.json()["action"] == "login"
    verified = await client.post(
        f"/v1/challenges/{challenge['id']}/verify",
        json={"method": "totp", "code": totp_code(node, rig.secret)},
        headers=headers,
    )
    assert verified.status_code == 200, verified.text
    # The step-up is verified activity from the login's device: the risk engine learns it.
    assert rig.risk.verified_calls[-1][0] == "alice"
    assert rig.risk.verified_calls[-1][1].device_id == device
    assert rig.risk.verified_calls[-1][1].user_agent == "Mozilla/5.0 (test)"

    done = await client.post("/v1/login/complete", json={"ticket": ticket})
    assert done.status_code == 200, done.text
    assert done.json()["subject"] == "alice" and done.json()["level"] == "aal1"
    cookies = set_cookies(done)
    assert set(cookies) == {"piigate_session", "piigate_device"}
    assert cookies["piigate_device"].split(";")[0].split("=", 1)[1].startswith(device + ".")
    # The session works.
    assert (await client.get("/v1/factors")).status_code == 200
    # Single use.
    again = await rig.browser().post("/v1/login/complete", json={"ticket": ticket})
    assert again.status_code == 401 and again.json()["code"] == "login_ticket_rejected"


async def completed_login(rig: Rig, client: httpx.AsyncClient) -> tuple[str, str]:
    """A login of ``client`` stepped up and completed: its ticket and challenge id."""
    body = await stepped_up(rig, client)
    challenge = body["challenge"]
    assert isinstance(challenge, dict)
    ticket = str(body["login_ticket"])
    verified = await client.post(
        f"/v1/challenges/{challenge['id']}/verify",
        json={"method": "totp", "code": totp_code(rig.node, rig.secret)},
        headers={TICKET: ticket},
    )
    assert verified.status_code == 200, verified.text
    done = await client.post("/v1/login/complete", json={"ticket": ticket})
    assert done.status_code == 200, done.text
    return ticket, str(challenge["id"])


async def test_a_completed_login_makes_its_device_known_and_is_audited(rig: Rig) -> None:
    node, client = rig.node, rig.browser()
    ticket, challenge_id = await completed_login(rig, client)
    # Next time, from the device it verified: no step-up.
    assert (await login(client)).status_code == 200
    # From another device: the step-up again.
    await stepped_up(rig, rig.browser())

    types = [e.type for e in await node.services.audit.list_events(subject_id="alice", limit=500)]
    assert "login_step_up" in types and types.count("login_succeeded") >= 3
    completed = [
        e
        for e in await node.services.audit.list_events(types=["login_succeeded"], limit=500)
        if "challenge_id" in e.data
    ]
    assert [e.data["challenge_id"] for e in completed] == [challenge_id]
    async with node.services.db.connect() as conn:
        stored = json.dumps([list(map(str, r)) for r in (await conn.execute(select(ceremonies)))])
        audit = json.dumps([list(map(str, r)) for r in (await conn.execute(select(audit_events)))])
    # Only the ticket's hash is kept; the ticket is in no audit event.
    assert ticket not in stored and ticket.split(".")[1] not in stored
    assert ticket.split(".")[1] not in audit


async def test_the_ticket_answers_its_own_challenge_and_nothing_else(rig: Rig) -> None:
    node, client = rig.node, rig.browser()
    body = await stepped_up(rig, client)
    headers = {TICKET: str(body["login_ticket"])}
    # Another challenge of alice's, opened by an app's decision.
    _, key = await node.api_key("app")
    other = (await node.decide(key, decision_body("read", ["ssn"]))).json()["challenge"]["id"]
    refused = await client.post(
        f"/v1/challenges/{other}/verify",
        json={"method": "totp", "code": totp_code(node, rig.secret)},
        headers=headers,
    )
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    assert (await client.get(f"/v1/challenges/{other}", headers=headers)).status_code == 401
    # It is no session either.
    assert (await client.get("/v1/factors", headers=headers)).status_code == 401
    assert (
        await client.post("/v1/challenges", json={"purpose": "manage_factors"}, headers=headers)
    ).status_code == 401
    # A made-up ticket is nothing.
    challenge = body["challenge"]
    assert isinstance(challenge, dict)
    forged = {TICKET: str(body["login_ticket"])[:-2] + "xx"}
    response = await client.get(f"/v1/challenges/{challenge['id']}", headers=forged)
    assert response.status_code == 401


async def test_failed_step_ups_are_told_and_a_denied_challenge_spends_the_ticket(rig: Rig) -> None:
    node, client = rig.node, rig.browser()
    body = await stepped_up(rig, client)
    challenge = body["challenge"]
    assert isinstance(challenge, dict)
    ticket = str(body["login_ticket"])
    code = wrong(totp_code(node, rig.secret))
    for _ in range(3):  # the policy's max_attempts
        response = await client.post(
            f"/v1/challenges/{challenge['id']}/verify",
            json={"method": "totp", "code": code},
            headers={TICKET: ticket},
        )
        assert response.status_code == 401
        node.clock.advance(5)  # past the factor's back-off
    assert rig.risk.failed_calls == ["alice"] * 3
    done = await client.post("/v1/login/complete", json={"ticket": ticket})
    assert done.status_code == 401 and done.json()["code"] == "login_ticket_rejected"
    assert "piigate_session" not in set_cookies(done)
    [refused] = await node.services.audit.list_events(types=["login_ticket_refused"])
    assert refused.data["reason"] == "challenge_denied"
    assert str(ticket) not in json.dumps(dict(refused.data))


async def test_an_expired_ticket_is_refused(rig: Rig) -> None:
    node, client = rig.node, rig.browser()
    body = await stepped_up(rig, client)
    node.clock.advance(3600)
    done = await client.post("/v1/login/complete", json={"ticket": str(body["login_ticket"])})
    assert done.status_code == 401 and done.json()["code"] == "login_ticket_rejected"


async def test_the_policy_may_deny_a_login(rig: Rig) -> None:
    node = rig.node
    await node.user("mallory", PASSWORD, roles=["blocked"])
    response = await login(rig.browser(), "mallory")
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"] == "this account may not log in"
    assert set_cookies(response) == {}
    [denied] = await node.services.audit.list_events(types=["login_denied"])
    assert denied.subject_id == "mallory" and denied.data["rules"] == ["blocked-accounts"]
    # The wrong password is still the vague 401, before any decision.
    wrong_password = await rig.browser().post(
        "/v1/login", json={"username": "mallory", "password": "nope-" + PASSWORD}
    )
    assert wrong_password.status_code == 401
    assert wrong_password.json()["code"] == "unauthorized"


async def test_the_risk_engine_steps_up_a_login_from_a_new_device(
    start_node: StartNode, users: Users
) -> None:
    """The node's own risk engine (no stand-in): a first login has nothing to compare with; the
    next from another browser shows a new device; once verified, that browser is known."""
    node = await start_node(policy=login_policy())
    alice = await users(node, "alice")
    created = await alice.post("/v1/factors/recovery")
    assert created.status_code == 201, created.text
    code = created.json()["codes"][0]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=node.app),
        base_url="http://t",
        headers=same_origin(node.settings),
    ) as other:
        body = (await login(other)).json()
        assert body["code"] == "insufficient_user_authentication", body
        assert "new_device" in body["risk"]["signals"]
        headers = {TICKET: body["login_ticket"]}
        proof = {"method": "recovery", "code": code}
        verified = await other.post(
            f"/v1/challenges/{body['challenge']['id']}/verify", json=proof, headers=headers
        )
        assert verified.status_code == 200, verified.text
        done = await other.post("/v1/login/complete", json={"ticket": body["login_ticket"]})
        assert done.status_code == 200, done.text
        assert (await login(other)).status_code == 200
    assert (await login(alice)).status_code == 200
