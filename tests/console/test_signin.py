"""The console's sign-in with a local account: the form, its CSRF token, the session, the
throttle, and signing out."""

from __future__ import annotations

import pytest
from api_support import Node
from console_support import csrf_of, sign_in

PASSWORD = "correct horse battery staple"


async def test_sign_in_opens_a_session_and_lands_on_my_security(node: Node) -> None:
    await node.user("ann", PASSWORD)
    answer = await sign_in(node, "ann", PASSWORD)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    assert "piigate_session" in node.client.cookies
    home = await node.client.get("/")
    assert home.headers["location"] == "/me"


async def test_a_wrong_password_shows_one_message_and_no_session(node: Node) -> None:
    await node.user("ann", PASSWORD)
    answer = await sign_in(node, "ann", "wrong")
    assert answer.status_code == 401
    assert "The username or password is wrong." in answer.text
    assert "piigate_session" not in node.client.cookies
    unknown = await sign_in(node, "nobody", "wrong")
    assert unknown.status_code == 401
    assert "The username or password is wrong." in unknown.text


async def test_a_form_without_its_token_is_refused(node: Node, origin: dict[str, str]) -> None:
    await node.user("ann", PASSWORD)
    await node.client.get("/login")  # the nonce cookie
    answer = await node.client.post(
        "/login", data={"username": "ann", "password": PASSWORD}, headers=origin
    )
    assert answer.status_code == 403
    assert answer.json()["code"] == "csrf_rejected"
    forged = await node.client.post(
        "/login",
        data={"username": "ann", "password": PASSWORD, "csrf_token": "k.deadbeef"},
        headers=origin,
    )
    assert forged.status_code == 403
    assert "piigate_session" not in node.client.cookies


async def test_a_token_of_another_browser_is_refused(node: Node, origin: dict[str, str]) -> None:
    await node.user("ann", PASSWORD)
    token = csrf_of(await node.client.get("/login"))
    node.client.cookies.delete("piigate_csrf")
    await node.client.get("/login")  # another nonce
    answer = await node.client.post(
        "/login",
        data={"username": "ann", "password": PASSWORD, "csrf_token": token},
        headers=origin,
    )
    assert answer.status_code == 403


async def test_pages_carry_the_security_headers(node: Node) -> None:
    answer = await node.client.get("/login")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    cookie = answer.headers["set-cookie"]
    assert "piigate_csrf=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "<script>" not in answer.text


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"],
)
async def test_sign_in_never_returns_to_another_site(node: Node, target: str) -> None:
    await node.user("ann", PASSWORD)
    form = await node.client.get("/login", params={"next": target})
    answer = await node.client.post(
        "/login",
        data={"csrf_token": csrf_of(form), "username": "ann", "password": PASSWORD, "next": target},
        headers={"Origin": node.settings.public_url.rstrip("/")},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
