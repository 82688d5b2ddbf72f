"""The device a request comes from: the signed ``piigate_device`` cookie and ``PIIGate-Device``,
read into decisions' contexts, set after verified activity, relayed by apps; and what the
routes tell the risk engine (``RiskFeed``). SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
from api_support import Node, StartNode, bearer, decision_body, same_origin
from factor_support import (
    PASSWORD,
    Users,
    challenge,
    enroll_totp,
    factor_policy,
    totp_code,
    users,
    verify,
    wrong,
)
from feed_support import KnownDevices, decided_device, device_key

from piigate.api.devices import DEVICE_COOKIE_MAX_AGE
from piigate.risk.devices import new_device_id

__all__ = ["users"]  # the fixture, re-exported for pytest


def device_cookie(response: httpx.Response) -> str | None:
    """The ``Set-Cookie`` line of the device cookie, if the response sets it."""
    for line in response.headers.get_list("set-cookie"):
        if line.startswith("piigate_device="):
            return line
    return None


def cookie_value(line: str) -> str:
    return line.split(";")[0].split("=", 1)[1]


def client_of(node: Node, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=node.app),
        base_url="http://t",
        headers={**same_origin(node.settings), **headers},
    )


async def test_login_sets_the_device_cookie_and_keeps_a_valid_one(node: Node) -> None:
    await node.user("alice", PASSWORD)
    body = {"username": "alice", "password": PASSWORD}
    async with client_of(node) as client:
        first = await client.post("/v1/login", json=body)
        assert first.status_code == 200, first.text
        line = device_cookie(first)
        assert line is not None
        attributes = {part.strip().lower() for part in line.split(";")[1:]}
        assert {"httponly", "path=/", "samesite=lax", f"max-age={DEVICE_COOKIE_MAX_AGE}"} <= (
            attributes
        )
        assert "secure" not in attributes  # the public URL is http here
        assert DEVICE_COOKIE_MAX_AGE <= 400 * 86400
        value = cookie_value(line)
        assert value.startswith("dev_") and value.count(".") == 2
        again = await client.post("/v1/login", json=body)  # the jar sends the cookie back
        renewed = device_cookie(again)
        assert renewed is not None and cookie_value(renewed) == value
    # A forged cookie is no device: a new one is given.
    forged = value[:-3] + ("aaa" if not value.endswith("aaa") else "bbb")
    async with client_of(node) as client:
        client.cookies.set("piigate_device", forged)
        response = await client.post("/v1/login", json=body)
        other = device_cookie(response)
        assert other is not None and cookie_value(other) != value
        assert cookie_value(other).split(".")[0] != value.split(".")[0]


async def test_the_cookie_is_secure_on_https(start_node: StartNode) -> None:
    node = await start_node(public_url="https://piigate.example")
    await node.user("alice", PASSWORD)
    async with client_of(node) as client:
        response = await client.post("/v1/login", json={"username": "alice", "password": PASSWORD})
    line = device_cookie(response)
    assert line is not None and "secure" in line.lower()


async def test_cookies_outlive_a_key_rotation(node: Node) -> None:
    devices = node.services.devices
    device = new_device_id()
    old = devices.sign(device)
    await node.services.keyring.rotate_data_key()
    new = devices.sign(device)
    assert new != old and new.split(".")[1] == node.services.keyring.data_kid
    assert await devices.resolve(old) == device
    assert await devices.resolve(new) == device
    # A kid nobody holds, an id of piigate's shape without its signature: no device.
    assert await devices.resolve(device + ".dek-0000000000000000." + old.split(".")[2]) is None
    assert await devices.resolve(device) is None
    assert await devices.resolve("d-9") == "d-9"


async def test_decisions_read_the_device(node: Node, users: Users) -> None:
    alice = await users(node, "alice")
    cookie = alice.cookies.get("piigate_device")
    assert cookie is not None
    device = cookie.split(".")[0]
    _, key = await node.api_key("app")
    # An app relays the cookie as the browser sent it: its id counts.
    context = {"ip": "203.0.113.7", "device_id": cookie}
    assert (await node.decide(key, decision_body(context=context))).status_code == 200
    assert await decided_device(node) == await device_key(node, device)
    # An id of piigate's shape without its signature counts as no device; a client's own id
    # goes through.
    await node.decide(key, decision_body(context={"device_id": device}))
    assert await decided_device(node) is None
    await node.decide(key, decision_body(context={"device_id": "d-9"}))
    assert await decided_device(node) == await device_key(node, "d-9")
    # A person asking about themselves: what the body leaves out comes from their request.
    await node.user("root", PASSWORD, roles=["admin"])
    async with client_of(node, **{"PIIGate-Device": "laptop-7"}) as root:
        await root.post("/v1/login", json={"username": "root", "password": PASSWORD})
        response = await root.post("/v1/decisions", json=decision_body(subject="root"))
        assert response.status_code == 200, response.text
        # The login (a client naming its device) set no cookie: the header is the device.
        assert root.cookies.get("piigate_device") is None
        assert await decided_device(node) == await device_key(node, "laptop-7")
        # The body wins over the request; about someone else, nothing is taken from it.
        await root.post(
            "/v1/decisions", json=decision_body(subject="root", context={"device_id": "d-1"})
        )
        assert await decided_device(node) == await device_key(node, "d-1")
        await root.post("/v1/decisions", json=decision_body(subject="alice"))
        assert await decided_device(node) is None


async def test_verifications_are_told_with_their_context(
    start_node: StartNode, users: Users
) -> None:
    node = await start_node(policy=factor_policy())
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    risk = KnownDevices().install(node)
    device = str(alice.cookies.get("piigate_device")).split(".")[0]
    _, key = await node.api_key("app")

    # The person verifies for themselves: their request's context.
    chl = await challenge(node, key, context={"device_id": "d-app"})
    response = await verify(alice, chl, totp_code(node, secret))
    assert response.status_code == 200, response.text
    subject, context = risk.verified_calls[-1]
    assert subject == "alice" and context.device_id == device and context.ip == "127.0.0.1"
    node.clock.advance(30)

    # An app relays the proof and its user's context (the lean path and the declared one).
    for content_type in ("application/json", "application/vnd.api+json"):
        chl = await challenge(node, key, context={"device_id": "d-app"})
        relayed = {"ip": "198.51.100.4", "user_agent": "Mobile/1.0"}
        proof = {"method": "totp", "code": totp_code(node, secret), "context": relayed}
        response = await node.client.post(
            f"/v1/challenges/{chl}/verify",
            json=proof,
            headers={**bearer(key), "content-type": content_type},
        )
        assert response.status_code == 200, response.text
        subject, context = risk.verified_calls[-1]
        assert (context.ip, context.user_agent) == ("198.51.100.4", "Mobile/1.0")
        assert context.device_id == "d-app"  # none relayed: the challenge's
        node.clock.advance(30)

    # A wrong proof is a failed step-up; a person may not relay a context.
    chl = await challenge(node, key)
    assert (await verify(alice, chl, wrong(totp_code(node, secret)))).status_code == 401
    assert risk.failed_calls == ["alice"]
    node.clock.advance(5)
    response = await alice.post(
        f"/v1/challenges/{chl}/verify",
        json={"method": "totp", "code": totp_code(node, secret), "context": {"ip": "10.0.0.1"}},
    )
    assert response.status_code == 400 and response.json()["detail"].startswith("context:")
    # An expired challenge says nothing of the proof: not a failed step-up.
    node.clock.advance(3600)
    assert (await verify(alice, chl, wrong(totp_code(node, secret)))).status_code == 401
    assert risk.failed_calls == ["alice"]


async def test_openapi_shows_the_new_fields(node: Node) -> None:
    spec = (await node.client.get("/openapi.json")).json()
    assert {"post"} <= set(spec["paths"]["/v1/login/complete"])
    schemas = spec["components"]["schemas"]
    assert "context" in schemas["VerifyIn"]["properties"]
    assert set(schemas["ContextIn"]["properties"]) == {"ip", "user_agent", "device_id"}
    assert "ticket" in schemas["LoginCompleteIn"]["properties"]
    verify = spec["paths"]["/v1/challenges/{challenge_id}/verify"]["post"]
    # The login ticket's header is no parameter of its own: the path's challenge is unchanged.
    assert [p["name"] for p in verify["parameters"]] == ["challenge_id"]
