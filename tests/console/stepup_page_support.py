"""Helpers of the step-up page's tests (imported by name: ``tests/console`` is on ``sys.path``):
browsers with their own cookie jars, a TOTP factor enrolled through the node's services, its
codes from pyotp, a decision's challenge, and the page's forms."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pyotp
import pytest
from api_support import Node, decision_body
from console_support import csrf_of

from piigate.crypto.secret import Secret

__all__ = [
    "PASSWORD",
    "Browsers",
    "browsers",
    "challenge_for",
    "enrol_totp",
    "grant_cookie",
    "post_code",
    "signed_in",
    "totp_now",
]

PASSWORD = "correct horse battery staple"
Browsers = Callable[[Node], httpx.AsyncClient]
_SET_COOKIE = re.compile(r"^([^=]+)=")


@pytest.fixture
async def browsers() -> AsyncIterator[Browsers]:
    """``browsers(node)``: a new client of ``node`` with its own cookie jar, sending the
    ``Origin`` of the node's pages (as a browser does with the console's forms)."""
    async with contextlib.AsyncExitStack() as stack:

        def make(node: Node) -> httpx.AsyncClient:
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=node.app),
                base_url="http://t",
                headers={
                    "Origin": node.settings.public_url.rstrip("/"),
                    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
                },
            )
            stack.push_async_callback(client.aclose)
            return client

        yield make


async def enrol_totp(node: Node, subject: str) -> str:
    """An active TOTP factor of ``subject``, enrolled through the node's services (as the
    enrolment API does): its secret. The clock then moves to the next step, so the
    confirmation's code is spent and the next one is fresh."""
    started = await node.services.enrollment.start_totp(subject, label="phone")
    secret = started.secret.reveal()
    await node.services.enrollment.confirm_totp(
        subject, started.factor.id, Secret(totp_now(node, secret))
    )
    node.clock.advance(30)
    return secret


def totp_now(node: Node, secret: str) -> str:
    """The code an authenticator app shows at the node's time (pyotp, RFC 6238)."""
    return pyotp.TOTP(secret).at(node.clock.now())


async def challenge_for(
    node: Node, key: str, action: str = "update", *, subject: str = "alice", **extra: Any
) -> str:
    """A challenge an app (``key``) opened for ``subject``: its id."""
    pii = extra.pop("pii", ["ssn"])
    response = await node.decide(key, decision_body(action, pii, subject=subject, **extra))
    body = response.json()
    assert body["outcome"] == "step_up", body
    challenge_id: str = body["challenge"]["id"]
    return challenge_id


async def post_code(
    client: httpx.AsyncClient,
    challenge_id: str,
    code: str,
    *,
    method: str = "totp",
    return_to: str = "/",
    csrf: str | None = None,
) -> httpx.Response:
    """The page's code form, posted as a browser without the page's script does."""
    if csrf is None:
        csrf = csrf_of(await client.get(f"/stepup/{challenge_id}"))
    return await client.post(
        f"/stepup/{challenge_id}/verify",
        data={"csrf_token": csrf, "method": method, "code": code, "return_to": return_to},
    )


def grant_cookie(response: httpx.Response) -> str | None:
    """The ``Set-Cookie`` line of the grant cookie, if the response sets one."""
    for line in response.headers.get_list("set-cookie"):
        found = _SET_COOKIE.match(line)
        if found and found.group(1) == "piigate_grant":
            return line
    return None


async def signed_in(node: Node, client: httpx.AsyncClient, name: str) -> None:
    """``client`` signed in to the console as the local user ``name`` (created here)."""
    await node.user(name, PASSWORD)
    form = await client.get("/login")
    answer = await client.post(
        "/login", data={"csrf_token": csrf_of(form), "username": name, "password": PASSWORD}
    )
    assert answer.status_code == 303, answer.text
