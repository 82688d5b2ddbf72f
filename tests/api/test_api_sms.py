"""SMS codes over HTTP (CONTRACT §4.3, §4.4), SQLite and PostgreSQL: enrol a phone, step up with
a code from the outbox or a webhook provider, relay by the app, rate limits, provider outages,
invalid numbers, and no code or number in any answer, log line or audit event."""

from __future__ import annotations

import json
import re
import textwrap
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import structlog
from api_support import PROBLEM, Node, StartNode, bearer, decision_body
from factor_support import (
    SMS_CODE,
    TYPED,
    Users,
    challenge,
    enroll_sms,
    enroll_totp,
    outbox_code,
    totp_code,
    users,
    verify,
    wrong,
)
from fastapi import FastAPI, Request, Response
from sqlalchemy import text

from loopback_support import serve_uvicorn
from piigate.crypto.secret import Secret
from piigate.factors.sms.settings import SmsProvider, SmsSettings
from piigate.factors.sms.webhook import SIGNATURE_HEADER, verify_signature
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder

__all__ = ["users"]  # the fixture, re-exported for pytest

NUMBER = "+16502530042"
HINT = "+1 •••-•••-••42"
HOOK_SECRET = Secret("webhook-secret-0123456789abcdef")


async def send_code(client: httpx.AsyncClient, challenge_id: str, **kw: Any) -> httpx.Response:
    return await client.post(f"/v1/challenges/{challenge_id}/sms", **kw)


# -- the whole path -----------------------------------------------------------------------------


async def test_enrol_step_up_with_sms_and_allow(node: Node, api_key: str, users: Users) -> None:
    alice = await users(node, "alice")
    started = await alice.post("/v1/factors/sms", json={"phone": TYPED, "label": "mobile"})
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["state"] == "pending" and body["sent"] is True and body["to"] == HINT
    assert body["expires_at"] == int(node.clock.now().timestamp()) + 300
    # The example policy declares SMS restricted (NIST): the answer says what that means.
    assert body["restricted"] is True and "intercepted" in body["notice"]
    confirmed = await alice.post(
        f"/v1/factors/sms/{body['id']}/confirm", json={"code": await outbox_code(node)}
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["state"] == "active" and confirmed.json()["to"] == HINT
    listed = (await alice.get("/v1/factors")).json()["factors"]
    assert [(f["kind"], f["to"], f["label"]) for f in listed] == [("sms", HINT, "mobile")]
    node.clock.advance(1)

    decided = (await node.decide(api_key, decision_body("update", ["ssn"]))).json()
    assert decided["outcome"] == "step_up" and "sms" in decided["required"]["methods"]
    challenge_id = decided["challenge"]["id"]
    sent = await send_code(alice, challenge_id)
    assert sent.status_code == 202, sent.text
    assert sent.json() == {
        "sent": True,
        "to": HINT,
        "expires_at": int(node.clock.now().timestamp()) + 300,
    }
    granted = await verify(alice, challenge_id, await outbox_code(node), method="sms")
    assert granted.status_code == 200, granted.text
    assert granted.json()["amr"] == ["sms"] and granted.json()["level"] == "aal2"
    allowed = await node.decide(
        api_key, {**decision_body("update", ["ssn"]), "grants": [granted.json()["grant"]]}
    )
    assert allowed.json()["outcome"] == "allow"


async def test_the_app_sends_and_relays_the_code(node: Node, api_key: str, users: Users) -> None:
    alice = await users(node, "alice")
    await enroll_sms(node, alice)
    challenge_id = await challenge(node, api_key)
    assert (await send_code(node.client, challenge_id, headers=bearer(api_key))).status_code == 202
    code = await outbox_code(node)
    relayed = await node.client.post(
        f"/v1/challenges/{challenge_id}/verify",
        json={"method": "sms", "code": code},
        headers=bearer(api_key),
    )
    assert relayed.status_code == 200, relayed.text
    # Someone else's app or user learns nothing about the challenge.
    _, other_key = await node.api_key("other")
    bob = await users(node, "bob")
    for client, headers in ((node.client, bearer(other_key)), (bob, {})):
        response = await send_code(client, challenge_id, headers=headers)
        assert response.status_code == 404


async def test_a_replayed_code_is_rejected(node: Node, api_key: str, users: Users) -> None:
    alice = await users(node, "alice")
    await enroll_sms(node, alice)
    first = await challenge(node, api_key)
    await send_code(alice, first)
    code = await outbox_code(node)
    assert (await verify(alice, first, code, method="sms")).status_code == 200
    second = await challenge(node, api_key)
    replay = await verify(alice, second, code, method="sms")
    assert replay.status_code == 401 and replay.json()["code"] == "factor_rejected"


async def test_send_refusals(node: Node, api_key: str, users: Users) -> None:
    alice = await users(node, "alice")
    challenge_id = await challenge(node, api_key)
    none = await send_code(alice, challenge_id)
    assert none.status_code == 409 and none.headers["content-type"] == PROBLEM
    assert none.json()["detail"] == "no active SMS factor to send the code to"
    assert (await send_code(alice, "chl_nope")).status_code == 404
    assert (await send_code(node.client, challenge_id)).status_code == 401


# -- enrollment rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phone": "6502530042"}, "phone"),  # national form without a region
        ({"phone": "+44 20 7946 0958"}, "phone"),  # a landline
        ({"phone": "+1 900 555 0100"}, "phone"),  # premium rate
        ({"phone": "(650) 253-0042", "region": "ZZ"}, "region"),
    ],
)
async def test_invalid_numbers_are_422_without_echo(
    node: Node, users: Users, body: dict[str, str], field: str
) -> None:
    alice = await users(node, "alice")
    response = await alice.post("/v1/factors/sms", json=body)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == "invalid_phone" and problem["field"] == field
    digits = "".join(ch for ch in body["phone"] if ch.isdigit())
    assert digits[-7:] not in "".join(ch for ch in response.text if ch.isdigit())


async def test_a_national_number_with_its_region(node: Node, users: Users) -> None:
    alice = await users(node, "alice")
    response = await alice.post("/v1/factors/sms", json={"phone": "06 12 34 56 78", "region": "FR"})
    assert response.status_code == 201, response.text
    assert response.json()["to"] == "+33 • •• •• •• 78"


async def test_adding_sms_after_another_factor_needs_a_fresh_grant(
    node: Node, users: Users
) -> None:
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    refused = await alice.post("/v1/factors/sms", json={"phone": TYPED})
    assert refused.status_code == 401
    assert refused.json()["code"] == "insufficient_user_authentication"
    assert refused.headers["www-authenticate"].startswith(
        'Bearer error="insufficient_user_authentication"'
    )
    # The refusal carries alice's own step-up: answered, its grant adds the phone.
    own = refused.json()["challenge"]["id"]
    granted = (await verify(alice, own, totp_code(node, secret))).json()
    await enroll_sms(node, alice, **{"PIIGate-Grant": granted["grant"]})


async def test_only_people_enrol_and_confirm_their_own(
    node: Node, api_key: str, users: Users
) -> None:
    by_key = await node.client.post(
        "/v1/factors/sms", json={"phone": TYPED}, headers=bearer(api_key)
    )
    assert by_key.status_code == 403
    alice = await users(node, "alice")
    started = (await alice.post("/v1/factors/sms", json={"phone": TYPED})).json()
    code = await outbox_code(node)
    bob = await users(node, "bob")
    stolen = await bob.post(f"/v1/factors/sms/{started['id']}/confirm", json={"code": code})
    assert stolen.status_code == 404
    wrong_code = await alice.post(
        f"/v1/factors/sms/{started['id']}/confirm", json={"code": wrong(code)}
    )
    assert wrong_code.status_code == 401 and wrong_code.json()["code"] == "factor_rejected"


# -- limits and outages -------------------------------------------------------------------------


async def test_too_many_sends_are_429_with_retry_after(
    node: Node, api_key: str, users: Users
) -> None:
    alice = await users(node, "alice")
    await enroll_sms(node, alice)  # 1 of the 3 codes per 10 minutes
    challenge_id = await challenge(node, api_key)
    assert (await send_code(alice, challenge_id)).status_code == 202
    node.clock.advance(30)
    assert (await send_code(alice, challenge_id)).status_code == 202
    code = await outbox_code(node)
    node.clock.advance(30)
    limited = await send_code(alice, challenge_id)
    assert limited.status_code == 429 and limited.headers["content-type"] == PROBLEM
    assert limited.headers["retry-after"] == str(600 - 61)  # the window opened at enrolment
    assert limited.json()["code"] == "too_many_requests"
    # The code sent before the refused resend still answers the challenge.
    assert (await verify(alice, challenge_id, code, method="sms")).status_code == 200


def psd2_policy() -> PolicyHolder:
    text_ = textwrap.dedent(
        """\
        version: 1
        levels:
          aal1: {acr: "urn:piigate:aal1"}
          aal2: {acr: "urn:piigate:aal2"}
        pii:
          ssn: {}
        factors:
          sms: {level: aal2, restricted: true}
          recovery: {level: aal2}
        rules:
          - name: transfers
            when: {action: [transact], amount_over: 100}
            require: {level: aal2, max_age: 0, methods: [sms]}
        profile: psd2
        """
    )
    return PolicyHolder(compile_policy(load_policy_text(text_)))


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[tuple[bytes, str]], list[int]]]:
    """A webhook receiver on a real loopback socket: (its URL, what it got, its status)."""
    received: list[tuple[bytes, str]] = []
    status = [200]
    receiver = FastAPI()

    @receiver.post("/sms")
    async def take(request: Request) -> Response:
        received.append((await request.body(), request.headers.get(SIGNATURE_HEADER, "")))
        return Response(status_code=status[0])

    async with serve_uvicorn(receiver) as url:
        yield f"{url}/sms", received, status


async def test_webhook_provider_carries_the_transfer_and_a_valid_signature(
    start_node: StartNode,
    users: Users,
    hook: tuple[str, list[tuple[bytes, str]], list[int]],
) -> None:
    url, received, _ = hook
    sms = SmsSettings(provider=SmsProvider.WEBHOOK, webhook_url=url, webhook_secret=HOOK_SECRET)
    node = await start_node(policy=psd2_policy(), sms=sms)
    _, key = await node.api_key("bank")
    alice = await users(node, "alice")
    started = (await alice.post("/v1/factors/sms", json={"phone": NUMBER})).json()
    enrol_body, _ = received[-1]
    enrol_code = SMS_CODE.search(json.loads(enrol_body)["text"]).group(1)  # type: ignore[union-attr]
    await alice.post(f"/v1/factors/sms/{started['id']}/confirm", json={"code": enrol_code})

    transfer = {
        **decision_body("transact", []),
        "transaction": {"amount": "12500", "currency": "EUR", "payee": "ACME Ltd"},
    }
    decided = (await node.decide(key, transfer)).json()
    assert decided["outcome"] == "step_up" and decided["required"]["methods"] == ["sms"]
    assert (await send_code(alice, decided["challenge"]["id"])).status_code == 202
    body, signature = received[-1]
    assert verify_signature(HOOK_SECRET, body, signature, now=int(time.time()))
    payload = json.loads(body)
    assert payload["to"] == NUMBER and payload["id"].startswith("cer_")
    found = SMS_CODE.search(payload["text"])
    assert found is not None
    assert payload["text"] == (
        f"piigate: {found.group(1)} is your code to approve a transfer of 12,500.00 EUR "
        "to ACME Ltd. Never share it."
    )
    granted = (await verify(alice, decided["challenge"]["id"], found.group(1), "sms")).json()
    assert granted["single_use"] is True  # max_age: 0, dynamically linked
    allowed = await node.decide(key, {**transfer, "grants": [granted["grant"]]})
    assert allowed.json()["outcome"] == "allow"


async def test_a_provider_outage_is_503_and_voids_the_code(
    start_node: StartNode,
    users: Users,
    hook: tuple[str, list[tuple[bytes, str]], list[int]],
) -> None:
    url, received, status = hook
    sms = SmsSettings(provider=SmsProvider.WEBHOOK, webhook_url=url, webhook_secret=HOOK_SECRET)
    node = await start_node(sms=sms)
    alice = await users(node, "alice")
    status[0] = 502
    failed = await alice.post("/v1/factors/sms", json={"phone": NUMBER})
    assert failed.status_code == 503 and failed.headers["content-type"] == PROBLEM
    assert failed.json()["detail"] == (
        "the SMS could not be sent; try again later or use another factor"
    )
    assert (await alice.get("/v1/factors")).json()["factors"] == []
    # The code the receiver did get (but could not deliver) is void.
    async with node.services.db.connect() as conn:
        states = (
            (await conn.execute(text("SELECT state FROM ceremonies WHERE purpose = 'sms_enroll'")))
            .scalars()
            .all()
        )
    assert list(states) == ["expired"]
    assert len(received) == 1
    events = await node.services.audit.list_events(types=["sms_failed"])
    assert [e.data["reason"] for e in events] == ["http_502"]


# -- nothing leaks ------------------------------------------------------------------------------


async def test_no_code_or_number_in_answers_logs_audit_or_store(
    node: Node,
    api_key: str,
    users: Users,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    answers: list[str] = []
    codes: list[str] = []
    node.services.verifier.refusals.base_delay = 0
    with structlog.testing.capture_logs() as logs:
        alice = await users(node, "alice")
        started = await alice.post("/v1/factors/sms", json={"phone": TYPED})
        answers.append(started.text)
        codes.append(await outbox_code(node))
        bad = await alice.post(
            f"/v1/factors/sms/{started.json()['id']}/confirm", json={"code": wrong(codes[-1])}
        )
        answers.append(bad.text)
        good = await alice.post(
            f"/v1/factors/sms/{started.json()['id']}/confirm", json={"code": codes[-1]}
        )
        answers.append(good.text)
        node.clock.advance(1)
        challenge_id = await challenge(node, api_key)
        answers.append((await send_code(alice, challenge_id)).text)
        codes.append(await outbox_code(node))
        answers.append((await verify(alice, challenge_id, wrong(codes[-1]), "sms")).text)
        answers.append((await verify(alice, challenge_id, codes[-1], "sms")).text)
        answers.append(
            (await alice.post("/v1/factors/sms", json={"phone": "+1 900 555 0100"})).text
        )
        answers.append((await alice.get("/v1/factors")).text)
        answers.append((await alice.get(f"/v1/challenges/{challenge_id}")).text)
    events = await node.services.audit.list_events(limit=1000)
    assert {"sms_sent", "factor_confirmation_failed", "verification_failed"} <= {
        e.type for e in events
    }
    async with node.services.db.connect() as conn:
        stored = [
            json.dumps(
                [
                    list(map(str, row))
                    for row in (await conn.execute(text(f"SELECT * FROM {t}"))).all()
                ]
            )
            for t in ("factors", "ceremonies", "counters", "challenges", "audit_events")
        ]
    captured = capsys.readouterr()
    haystack = "\n".join(
        [
            json.dumps(logs, default=str),
            caplog.text,
            captured.out,
            captured.err,
            json.dumps([(e.type, e.data) for e in events], default=str),
            *answers,
            *stored,
        ]
    )
    secrets = [NUMBER, "6502530042", "650-253-0042", "(650) 253-0042", "9005550100"]
    secrets += codes + [wrong(c) for c in codes]
    for secret in secrets:
        pattern = r"(?<!\d)" + re.escape(secret) + r"(?!\d)"
        assert re.search(pattern, haystack) is None, f"leaked: {secret[:2]}…"
