"""Helpers of the My security tests (imported by name: ``tests/console`` is on ``sys.path``):
a signed-in person, posting the page's forms, reading what the pages show."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pyotp
from api_support import Node
from console_support import csrf_of, sign_in

__all__ = [
    "PASSWORD",
    "enrol_totp",
    "grant_for",
    "post",
    "secret_of",
    "signed_in",
    "totp_now",
]

PASSWORD = "correct horse battery staple"
_SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')
_CONFIRM = re.compile(r'action="/me/totp/(fct_[A-Za-z0-9_-]+)/confirm"')


async def signed_in(node: Node, name: str = "ann", roles: tuple[str, ...] = ()) -> None:
    """A new local user ``name``, signed in through the sign-in page (``node.client``)."""
    await node.user(name, PASSWORD, roles)
    answer = await sign_in(node, name, PASSWORD)
    assert answer.status_code == 303, answer.text


async def post(node: Node, path: str, **fields: str) -> httpx.Response:
    """Post a My security form with the page's CSRF token."""
    token = csrf_of(await node.client.get("/me"))
    return await node.client.post(path, data={"csrf_token": token, **fields})


def secret_of(page: httpx.Response) -> tuple[str, str]:
    """The TOTP factor id and secret the enrolment page shows."""
    secret, factor = _SECRET.search(page.text), _CONFIRM.search(page.text)
    assert secret is not None and factor is not None, page.text
    return factor.group(1), secret.group(1)


def totp_now(node: Node, secret: str) -> str:
    return str(pyotp.TOTP(secret).at(node.clock.now()))


async def enrol_totp(node: Node, label: str = "phone") -> tuple[str, str]:
    """An active TOTP factor enrolled through the page's forms: ``(id, secret)``. The clock
    then moves a step on, so that the next code is fresh."""
    started = await post(node, "/me/totp", label=label)
    assert started.status_code == 200, started.text
    factor_id, secret = secret_of(started)
    confirmed = await post(node, f"/me/totp/{factor_id}/confirm", code=totp_now(node, secret))
    assert confirmed.status_code == 303, confirmed.text
    assert confirmed.headers["location"] == "/me?done=totp"
    node.clock.advance(30)
    return factor_id, secret


async def grant_for(node: Node, step_up: httpx.Response, secret: str) -> dict[str, Any]:
    """Stand in for the step-up page: answer the challenge ``step_up`` (a redirect to
    ``/stepup/{challenge}``) with a TOTP code, and keep the grant in the ``piigate_grant``
    cookie as that page does. The grant's answer."""
    assert step_up.status_code == 303, step_up.text
    location = step_up.headers["location"]
    assert location.startswith("/stepup/chl_"), location
    challenge_id = location.removeprefix("/stepup/").split("?")[0]
    verified = await node.client.post(
        f"/v1/challenges/{challenge_id}/verify",
        json={"method": "totp", "code": totp_now(node, secret)},
    )
    assert verified.status_code == 200, verified.text
    node.clock.advance(30)
    node.client.cookies.set("piigate_grant", verified.json()["grant"])
    answer: dict[str, Any] = verified.json()
    return answer
