"""Push approval with number matching over HTTP, SQLite and PostgreSQL: enrol a device through
its one-time link, push a challenge, answer it from the signed device channel, and collect the
grant once from ``/status`` (CONTRACT §4.3, §4.4)."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from api_support import PROBLEM, Node, StartNode, bearer, decision_body
from factor_support import PASSWORD, Users, users
from push_support import complete, enrol, signature_headers, start_enrollment, token_of

from loopback_support import serve_uvicorn
from piigate.factors.push.protocol import (
    DeviceAlgorithm,
    generate_device_key,
    public_jwk,
)
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder

__all__ = ["users"]  # the fixture, re-exported for pytest

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
      push: {level: aal2, number_matching: true}
      recovery: {level: aal2}
    rules:
      - name: read-ssn
        when: {pii: [ssn], action: [read, update]}
        require: {level: aal2, max_age: 5m}
      - name: transfers
        when: {action: [transact], amount_over: 1000}
        require: {level: aal2, max_age: 0, methods: [push]}
    stepup: {challenge_ttl: 10m, max_attempts: 3}
    profile: nist-800-63b-4
    """
)
PAYEE = "GB33BUKB20201555555555"
TRANSFER = {"amount": "2500.00", "currency": "EUR", "payee": PAYEE}


@pytest.fixture
async def node(start_node: StartNode) -> Node:
    return await start_node(policy=PolicyHolder(compile_policy(load_policy_text(POLICY))))


@pytest.fixture
async def app_key(node: Node) -> str:
    return (await node.api_key("orders-app"))[1]


async def step_up(node: Node, key: str, **extra: Any) -> str:
    response = await node.decide(key, decision_body("update", ["ssn"], **extra))
    body = response.json()
    assert body["outcome"] == "step_up", body
    challenge_id: str = body["challenge"]["id"]
    return challenge_id


async def push(node: Node, key: str, challenge_id: str) -> httpx.Response:
    return await node.client.post(f"/v1/challenges/{challenge_id}/push", headers=bearer(key))


async def events(node: Node, type: str) -> list[dict[str, Any]]:
    found = await node.services.audit.list_events(types=[type], limit=1000)
    return [dict(e.data) for e in found]


def scalars(value: Any) -> list[Any]:
    """Every scalar in a JSON value (the leaves), to look for a value wherever it hides."""
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in scalars(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in scalars(item)]
    return [value]


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


# -- enrollment ---------------------------------------------------------------------------------


async def test_a_device_enrols_through_its_link(node: Node, users: Users, app_key: str) -> None:
    alice = await users(node, "alice")
    started = await start_enrollment(alice)
    assert set(started) == {"id", "enroll_uri", "qr_svg", "expires_at", "state"}
    assert started["state"] == "pending" and started["qr_svg"].startswith("<svg")
    assert started["expires_at"] == int(node.clock.now().timestamp()) + 600
    uri = urlparse(started["enroll_uri"])
    assert uri.scheme == "piigate-push" and uri.netloc == "enroll"
    assert parse_qs(uri.query)["url"] == [node.settings.public_url]

    response, _ = await complete(node, token_of(started["enroll_uri"]), alg=DeviceAlgorithm.EDDSA)
    assert response.status_code == 201, response.text
    assert response.json() == {
        "device_id": started["id"],
        "factor_id": started["id"],
        "subject": "alice",
    }
    listed = (await alice.get("/v1/factors")).json()["factors"]
    assert [(f["kind"], f["state"], f["device"]) for f in listed] == [("push", "active", "pixel")]
    assert listed[0]["label"] == "phone"  # the user's label; a device's name only stands in

    # The link works once.
    again, _ = await complete(node, token_of(started["enroll_uri"]))
    assert_problem(again, 401, "enrollment_rejected")
    # Another device now needs a fresh step-up of alice's (her push is active).
    refused = await alice.post("/v1/factors/push")
    assert_problem(refused, 401, "insufficient_user_authentication")
    # Factors belong to people: an app cannot enrol one.
    assert (await node.client.post("/v1/factors/push", headers=bearer(app_key))).status_code == 403


async def test_expired_and_unsigned_enrollments_are_refused(node: Node, users: Users) -> None:
    bob = await users(node, "bob")
    started = await start_enrollment(bob)
    token = token_of(started["enroll_uri"])
    # Without the proof of possession (no signature headers): 400, and the link stays usable.
    unsigned = await node.client.post(
        "/v1/devices",
        json={
            "token": token,
            "public_key": public_jwk(generate_device_key(DeviceAlgorithm.ES256)),
            "alg": "ES256",
        },
    )
    assert_problem(unsigned, 400, "bad_request")
    node.clock.advance(601)
    expired, _ = await complete(node, token)
    body = assert_problem(expired, 401, "enrollment_rejected")
    assert token not in json.dumps(body)
    refused = await events(node, "push_enrollment_refused")
    assert [e["reason"] for e in refused] == ["expired"]
    assert all(token.split(".")[1] not in json.dumps(e) for e in refused)
    forged, _ = await complete(node, token.split(".")[0] + ".guess")
    assert_problem(forged, 401, "enrollment_rejected")


# -- approving ----------------------------------------------------------------------------------


async def test_approve_with_the_number_then_collect_the_grant_once(
    node: Node, users: Users, app_key: str
) -> None:
    alice = await users(node, "alice")
    device = await enrol(node, alice)
    # No two-digit value anywhere in the request (the default resource id is "42"), so the
    # number-never-reaches-the-device check below cannot trip on a legitimate field.
    resource = {"type": "account", "id": "acct-seven"}
    body = decision_body("transact", [], transaction=TRANSFER, resource=resource)
    decided = (await node.decide(app_key, body)).json()
    assert decided["outcome"] == "step_up" and decided["required"]["methods"] == ["push"]
    challenge_id = decided["challenge"]["id"]

    sent = await push(node, app_key, challenge_id)
    assert sent.status_code == 202, sent.text
    assert sent.headers["cache-control"] == "no-store"
    number = sent.json()["number"]
    assert 10 <= number <= 99 and sent.json()["devices"] == 1 and sent.json()["sent"] is True
    # The step-up page (the subject, or the app relaying it) shows the number.
    for reader in (alice, node.client):
        headers = {} if reader is alice else bearer(app_key)
        shown = (await reader.get(f"/v1/challenges/{challenge_id}", headers=headers)).json()
        assert shown["push"] == {"number": number, "expires_at": sent.json()["expires_at"]}

    # The device sees what it approves — the payee included — but not the number.
    pending = await device.pending()
    assert len(pending) == 1
    item = pending[0]
    assert item["challenge_id"] == challenge_id and item["subject"] == "alice"
    assert item["action"] == "transact" and item["level"] == "aal2"
    assert item["transaction"] == {"amount": "2500.00", "currency": "EUR", "payee": PAYEE}
    assert "number" not in json.dumps(pending)
    assert number not in scalars(pending) and str(number) not in scalars(pending)

    answered = await device.answer(item["id"], "approve", number)
    assert answered.status_code == 200, answered.text
    assert answered.json() == {"id": item["id"], "state": "approved"}
    assert await device.pending() == []

    first = await node.client.get(f"/v1/challenges/{challenge_id}/status", headers=bearer(app_key))
    granted = first.json()
    assert granted["state"] == "approved" and granted["amr"] == ["mca", "pop"]
    assert granted["single_use"] is True  # max_age: 0, bound to this transfer
    second = await node.client.get(f"/v1/challenges/{challenge_id}/status", headers=bearer(app_key))
    assert second.json() == {"id": challenge_id, "state": "approved"}
    # The grant allows this very transfer, once.
    allowed = (await node.decide(app_key, {**body, "grants": [granted["grant"]]})).json()
    assert allowed["outcome"] == "allow"
    replay = (await node.decide(app_key, {**body, "grants": [granted["grant"]]})).json()
    assert replay["outcome"] == "step_up"

    # The one place the payee goes out is the device channel: never the audit trail.
    trail = await node.services.audit.list_events(limit=1000)
    text = json.dumps([dict(e.data) for e in trail])
    assert PAYEE not in text and '"number"' not in text


async def test_replayed_answers_are_refused(node: Node, users: Users, app_key: str) -> None:
    alice = await users(node, "alice")
    device = await enrol(node, alice)
    challenge_id = await step_up(node, app_key)
    number = (await push(node, app_key, challenge_id)).json()["number"]
    push_id = (await device.pending())[0]["id"]

    request = node.client.build_request(
        "POST", f"/v1/devices/pushes/{push_id}", json={"decision": "approve", "number": number}
    )
    request.headers.update(
        signature_headers(device.id, device.key, request, int(node.clock.now().timestamp()))
    )
    assert (await node.client.send(request)).status_code == 200
    # The same signed request again: its nonce was seen.
    replayed = node.client.build_request(
        "POST", request.url.raw_path.decode(), content=request.content, headers=request.headers
    )
    assert_problem(await node.client.send(replayed), 401, "device_unauthorized")
    # Signed afresh: the push is closed (one answer per push), and the device is told so.
    for late in (
        await device.answer(push_id, "approve", number),
        await device.answer(push_id, "deny"),
    ):
        closed = assert_problem(late, 409, "push_closed")
        assert closed["detail"] == "this request was already answered"
    status = await alice.get(f"/v1/challenges/{challenge_id}/status")
    assert status.json()["state"] == "approved"
    reasons = [e["reason"] for e in await events(node, "verification_failed")]
    assert reasons == ["replayed", "replayed"]


async def test_a_wrong_number_is_rejected_and_counted(
    node: Node, users: Users, app_key: str
) -> None:
    alice = await users(node, "alice")
    device = await enrol(node, alice)
    challenge_id = await step_up(node, app_key)
    number = (await push(node, app_key, challenge_id)).json()["number"]
    push_id = (await device.pending())[0]["id"]
    wrong = 10 + (number - 10 + 1) % 90

    for attempt in range(3):
        body = assert_problem(
            await device.answer(push_id, "approve", wrong), 401, "factor_rejected"
        )
        assert body["detail"] == "Verification failed"
        node.clock.advance(2**attempt)
    row = await node.services.store.get_factor(device.id)
    assert row is not None and row.failures == 3
    failed = await events(node, "verification_failed")
    assert [(e["method"], e["reason"], e["attempts"]) for e in failed] == [
        ("push", "wrong_number", 1),
        ("push", "wrong_number", 2),
        ("push", "wrong_number", 3),
    ]
    # Out of attempts: the challenge is denied; the right number is too late.
    status = await node.client.get(f"/v1/challenges/{challenge_id}/status", headers=bearer(app_key))
    assert status.json()["state"] == "denied"
    late = assert_problem(await device.answer(push_id, "approve", number), 409, "push_closed")
    assert late["detail"] == "this request has expired"
    # Not as a value, nor as a number in any text (ids may hold its digits by chance).
    assert number not in scalars(late) and str(number) not in scalars(late)
    assert not any(re.search(rf"(?<![\w-]){number}(?![\w-])", str(v)) for v in scalars(late))


async def test_deny_alerts_and_raises_the_next_decisions_risk(
    node: Node, users: Users, app_key: str
) -> None:
    alice = await users(node, "alice")
    device = await enrol(node, alice)
    challenge_id = await step_up(node, app_key)
    assert (await push(node, app_key, challenge_id)).status_code == 202
    push_id = (await device.pending())[0]["id"]

    denied = await device.answer(push_id, "deny")
    assert denied.status_code == 200 and denied.json()["state"] == "denied"
    status = await alice.get(f"/v1/challenges/{challenge_id}/status")
    assert status.json() == {"id": challenge_id, "state": "denied"}
    alerts = await events(node, "alert")
    assert alerts == [
        {
            "kind": "push_denied",
            "challenge_id": challenge_id,
            "decision_id": alerts[0]["decision_id"],
            "push_id": push_id,
            "factor_id": device.id,
        }
    ]

    after = (await node.decide(app_key, decision_body("update", ["ssn"]))).json()
    assert after["risk"]["score"] == 50
    assert [(s["name"], s["weight"]) for s in after["risk"]["signals"]] == [("denied_push", 50)]
    decision = (await events(node, "decision"))[-1]
    assert decision["risk"] == {"score": 50, "signals": [{"name": "denied_push", "weight": 50}]}
    bob = (await node.decide(app_key, decision_body("update", ["ssn"], subject="bob"))).json()
    assert bob["risk"]["signals"] == []


async def test_fatigue_limit_withholds_pushes(node: Node, users: Users, app_key: str) -> None:
    alice = await users(node, "alice")
    await enrol(node, alice)
    for _ in range(3):
        challenge_id = await step_up(node, app_key)
        assert (await push(node, app_key, challenge_id)).status_code == 202
        # Asking again while it is open returns the same push: not another one to ignore.
        again = await alice.post(f"/v1/challenges/{challenge_id}/push")
        assert again.status_code == 202 and again.json()["sent"] is False
        node.clock.advance(120)
    challenge_id = await step_up(node, app_key)
    withheld = await push(node, app_key, challenge_id)
    body = assert_problem(withheld, 429, "too_many_requests")
    assert "stronger factor" in body["detail"]
    assert withheld.headers["retry-after"] == "600"
    assert [e["challenge_id"] for e in await events(node, "push_withheld")] == [challenge_id]
    # No push was opened, so the page shows none.
    shown = (await alice.get(f"/v1/challenges/{challenge_id}")).json()
    assert shown["push"] is None


async def test_a_signed_answer_with_a_duplicate_key_is_refused(
    node: Node, users: Users, app_key: str
) -> None:
    """A device (or whatever signed for it) cannot send an answer that parsers read two ways:
    {"number": wrong, "number": right} is refused before it is looked at, signature or not."""
    alice = await users(node, "alice")
    device = await enrol(node, alice)
    challenge_id = await step_up(node, app_key)
    number = (await push(node, app_key, challenge_id)).json()["number"]
    push_id = (await device.pending())[0]["id"]
    wrong = 10 + (number - 10 + 1) % 90
    request = node.client.build_request(
        "POST",
        f"/v1/devices/pushes/{push_id}",
        content=f'{{"decision":"approve","number":{wrong},"number":{number}}}',
        headers={"content-type": "application/json"},
    )
    request.headers.update(
        signature_headers(device.id, device.key, request, int(node.clock.now().timestamp()))
    )
    refused = assert_problem(await node.client.send(request), 400, "bad_request")
    assert refused["errors"] == [{"field": "number", "message": "duplicate key"}]
    assert refused["detail"] == "number: duplicate key"  # the key, never a value
    assert await events(node, "verification_failed") == []
    status = await alice.get(f"/v1/challenges/{challenge_id}/status")
    assert status.json()["state"] == "pending"


async def test_bad_device_signatures_are_refused(node: Node, users: Users, app_key: str) -> None:
    alice = await users(node, "alice")
    device = await enrol(node, alice)
    challenge_id = await step_up(node, app_key)
    number = (await push(node, app_key, challenge_id)).json()["number"]
    push_id = (await device.pending())[0]["id"]
    impostor = generate_device_key(DeviceAlgorithm.ES256)
    stale = datetime.fromtimestamp(node.clock.now().timestamp() - 61)

    for response in (
        await device.call("GET", "/v1/devices/pending", key=impostor),
        await device.call("GET", "/v1/devices/pending", at=stale),
        await device.call("GET", "/v1/devices/pending", device_id="fct_unknown"),
        await node.client.get("/v1/devices/pending"),  # unsigned
        await device.call(
            "POST",
            f"/v1/devices/pushes/{push_id}",
            {"decision": "approve", "number": number},
            key=impostor,
        ),
    ):
        body = assert_problem(response, 401, "device_unauthorized")
        assert response.headers["www-authenticate"].startswith("PIIGate-Device")
        assert body["detail"] == "the device signature, timestamp or nonce was not accepted"
    # A signed answer whose body was changed on the way (deny → approve) does not verify.
    request = node.client.build_request(
        "POST", f"/v1/devices/pushes/{push_id}", json={"decision": "deny"}
    )
    request.headers.update(
        signature_headers(device.id, device.key, request, int(node.clock.now().timestamp()))
    )
    tampered = node.client.build_request(
        "POST",
        f"/v1/devices/pushes/{push_id}",
        json={"decision": "approve", "number": number},
        headers={k: v for k, v in request.headers.items() if k.lower().startswith("piigate")},
    )
    assert_problem(await node.client.send(tampered), 401, "device_unauthorized")
    reasons = [e["reason"] for e in await events(node, "device_rejected")]
    assert reasons == ["bad_signature", "stale_or_malformed", "bad_signature", "bad_signature"]
    status = await alice.get(f"/v1/challenges/{challenge_id}/status")
    assert status.json()["state"] == "pending"


async def test_the_long_poll_returns_when_a_push_is_sent(
    node: Node, users: Users, app_key: str
) -> None:
    alice = await users(node, "alice")
    device = await enrol(node, alice)
    challenge_id = await step_up(node, app_key)
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiting = asyncio.create_task(device.pending(wait=20))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    assert (await push(node, app_key, challenge_id)).status_code == 202
    pushes = await asyncio.wait_for(waiting, 5)
    assert [p["challenge_id"] for p in pushes] == [challenge_id]
    assert loop.time() - started < 5
    # With nothing to wait for, wait=1 returns empty after about a second.
    await device.answer(pushes[0]["id"], "deny")
    started = loop.time()
    assert await device.pending(wait=1) == []
    assert 0.9 <= loop.time() - started < 5


async def test_pushes_over_server_sent_events(node: Node, users: Users, app_key: str) -> None:
    alice = await users(node, "alice")
    device = await enrol(node, alice)
    challenge_id = await step_up(node, app_key)
    async with serve_uvicorn(node.app) as base, httpx.AsyncClient(base_url=base) as client:
        request = client.build_request("GET", "/v1/devices/stream")
        request.headers.update(
            signature_headers(device.id, device.key, request, int(node.clock.now().timestamp()))
        )
        response = await client.send(request, stream=True)
        try:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert (await push(node, app_key, challenge_id)).status_code == 202
            lines: list[str] = []
            async with asyncio.timeout(5):
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line.startswith("data: "):
                        break
        finally:
            await response.aclose()
    assert "event: push" in lines
    item = json.loads(lines[-1].removeprefix("data: "))
    assert item["challenge_id"] == challenge_id and "number" not in item


class _Relay(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.received.append((self.path, self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def relay() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []
    handler = type("Relay", (_Relay,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/wake", received
    finally:
        server.shutdown()
        server.server_close()


async def test_the_relay_is_told_ids_only(
    start_node: StartNode, relay: tuple[str, list[tuple[str, bytes]]], users: Users
) -> None:
    url, received = relay
    node = await start_node(
        policy=PolicyHolder(compile_policy(load_policy_text(POLICY))), push_relay_url=url
    )
    key = (await node.api_key("orders-app"))[1]
    alice = await users(node, "alice")
    device = await enrol(node, alice)
    decided = (await node.decide(key, decision_body("transact", [], transaction=TRANSFER))).json()
    challenge_id = decided["challenge"]["id"]
    assert (await push(node, key, challenge_id)).status_code == 202
    push_id = (await device.pending())[0]["id"]
    assert len(received) == 1
    path, raw = received[0]
    assert path == "/wake"
    assert json.loads(raw) == {"device_id": device.id, "push_id": push_id}
    assert PAYEE.encode() not in raw and b"alice" not in raw


async def test_a_dead_relay_does_not_stop_the_push(start_node: StartNode, users: Users) -> None:
    node = await start_node(
        policy=PolicyHolder(compile_policy(load_policy_text(POLICY))),
        push_relay_url="http://127.0.0.1:9/unreachable",
    )
    key = (await node.api_key("orders-app"))[1]
    alice = await users(node, "alice")
    device = await enrol(node, alice)
    challenge_id = await step_up(node, key)
    assert (await push(node, key, challenge_id)).status_code == 202
    assert len(await device.pending()) == 1


async def test_push_needs_a_caller_that_may_answer(node: Node, users: Users, app_key: str) -> None:
    alice = await users(node, "alice")
    await enrol(node, alice)
    challenge_id = await step_up(node, app_key)
    mallory = await users(node, "mallory")
    assert_problem(await mallory.post(f"/v1/challenges/{challenge_id}/push"), 404, "not_found")
    other_key = (await node.api_key("other-app"))[1]
    assert_problem(await push(node, other_key, challenge_id), 404, "not_found")
    # An admin may read the challenge, but is not shown the number.
    await node.user("root", PASSWORD, ["admin"])
    assert (await alice.post(f"/v1/challenges/{challenge_id}/push")).status_code == 202
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=node.app), base_url="http://t"
    ) as admin:
        login = await admin.post("/v1/login", json={"username": "root", "password": PASSWORD})
        assert login.status_code == 200
        shown = (await admin.get(f"/v1/challenges/{challenge_id}")).json()
    assert shown["state"] == "pending" and "push" not in shown
