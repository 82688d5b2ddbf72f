"""Helpers of the factor and verification API tests (imported by name, like api_support).

``users`` is a fixture: ``await users(node, "alice")`` creates a local user on ``node`` and
returns an ``httpx.AsyncClient`` logged in as them (its own cookie jar), closed after the test.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from api_support import Node, decision_body, same_origin

from piigate.crypto.secret import Secret
from piigate.factors.sms.outbox import OutboxSender
from piigate.factors.totp.protocol import hotp_code, totp_step
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder

PASSWORD = "correct horse battery staple"
TYPED = "+1 (650) 253-0042"  # a mobile number as a person types it
SMS_CODE = re.compile(r"\b(\d{6})\b")
Users = Callable[[Node, str], Awaitable[httpx.AsyncClient]]


def factor_policy(
    profile: str = "nist-800-63b-4", *, max_attempts: int = 5, grants_from: str = "this_app"
) -> PolicyHolder:
    """TOTP and recovery codes at aal2; reading an SSN needs aal2 within 5 minutes (met by
    grants from ``grants_from``), deleting PII needs aal2 bound to the one request
    (``max_age: 0``)."""
    text = textwrap.dedent(
        f"""\
        version: 1
        levels:
          aal1: {{acr: "urn:piigate:aal1"}}
          aal2: {{acr: "urn:piigate:aal2"}}
          aal3: {{acr: "urn:piigate:aal3"}}
        pii:
          ssn: {{}}
          phone: {{}}
        factors:
          totp: {{level: aal2}}
          recovery: {{level: aal2}}
        rules:
          - name: read-ssn
            when: {{pii: [ssn], action: [read, update]}}
            require: {{level: aal2, max_age: 5m, grants_from: {grants_from}}}
          - name: delete-pii
            when: {{pii: any, action: [delete]}}
            require: {{level: aal2, max_age: 0}}
        stepup: {{max_attempts: {max_attempts}}}
        profile: {profile}
        """
    )
    return PolicyHolder(compile_policy(load_policy_text(text)))


@pytest.fixture
async def users() -> AsyncIterator[Users]:
    async with contextlib.AsyncExitStack() as stack:

        async def make(node: Node, name: str) -> httpx.AsyncClient:
            await node.user(name, PASSWORD)
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


def totp_code(node: Node, secret: str, *, ago: int = 0) -> str:
    at = node.clock.now() - timedelta(seconds=ago)
    return hotp_code(Secret(secret), totp_step(at))


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def enroll_totp(
    node: Node, client: httpx.AsyncClient, *, grant: str | None = None
) -> tuple[str, str]:
    """An active TOTP factor ``(id, secret)``; the clock then moves to the next time step, so
    the enrolment code is spent and the next code is fresh."""
    headers = {"PIIGate-Grant": grant} if grant else {}
    started = await client.post("/v1/factors/totp", json={"label": "phone"}, headers=headers)
    assert started.status_code == 201, started.text
    factor_id, secret = started.json()["id"], started.json()["secret"]
    confirmed = await client.post(
        f"/v1/factors/totp/{factor_id}/confirm", json={"code": totp_code(node, secret)}
    )
    assert confirmed.status_code == 200, confirmed.text
    node.clock.advance(30)
    return factor_id, secret


async def challenge(
    node: Node, key: str, action: str = "update", *, subject: str = "alice", **extra: Any
) -> str:
    """A step-up challenge for ``subject`` (the id)."""
    response = await node.decide(key, decision_body(action, ["ssn"], subject=subject, **extra))
    body = response.json()
    assert body["outcome"] == "step_up", body
    challenge_id: str = body["challenge"]["id"]
    return challenge_id


async def own_challenge(client: httpx.AsyncClient, **body: str) -> str:
    """The logged-in user's own step-up (``POST /v1/challenges``), for changing their factors
    unless ``body`` says otherwise."""
    response = await client.post("/v1/challenges", json={"purpose": "manage_factors", **body})
    assert response.status_code == 201, response.text
    challenge_id: str = response.json()["id"]
    return challenge_id


async def own_grant(node: Node, client: httpx.AsyncClient, secret: str) -> str:
    """A grant of the user's own, proven with TOTP just now (the clock then moves on a step)."""
    response = await verify(client, await own_challenge(client), totp_code(node, secret))
    assert response.status_code == 200, response.text
    node.clock.advance(30)
    grant: str = response.json()["grant"]
    return grant


async def verify(
    client: httpx.AsyncClient, challenge_id: str, code: str, method: str = "totp"
) -> httpx.Response:
    return await client.post(
        f"/v1/challenges/{challenge_id}/verify", json={"method": method, "code": code}
    )


async def outbox_code(node: Node) -> str:
    sender = node.services.sms_sender
    assert isinstance(sender, OutboxSender)
    [latest] = await sender.latest(1)
    assert latest.text is not None
    found = SMS_CODE.search(latest.text.reveal())
    assert found is not None
    return found.group(1)


async def enroll_sms(
    node: Node, client: httpx.AsyncClient, phone: str = TYPED, **headers: str
) -> str:
    """An active SMS factor of the client's user; returns its id."""
    started = await client.post("/v1/factors/sms", json={"phone": phone}, headers=headers)
    assert started.status_code == 201, started.text
    factor_id: str = started.json()["id"]
    confirmed = await client.post(
        f"/v1/factors/sms/{factor_id}/confirm", json={"code": await outbox_code(node)}
    )
    assert confirmed.status_code == 200, confirmed.text
    # The outbox orders messages by time: the next one must not share this one's instant.
    node.clock.advance(1)
    return factor_id
