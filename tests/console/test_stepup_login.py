"""A login the policy steps up, through the console end to end: the sign-in form hands the
login ticket to the step-up page in its cookie, the page verifies with it, and
``/login/complete`` opens the session. The ticket cookie also lets the page's script call the
challenge's ``/v1`` routes, under the same cross-site guard as the session cookie."""

from __future__ import annotations

import httpx
import pytest
from api_support import Node, StartNode
from console_support import csrf_of
from feed_support import role_login_policy
from stepup_page_support import PASSWORD, Browsers, browsers, enrol_totp, grant_cookie, totp_now

__all__ = ["browsers"]  # the fixture, for pytest


@pytest.fixture
async def clerk(start_node: StartNode) -> tuple[Node, str]:
    """A node where clerks log in at aal2 (``role_login_policy``), and alice, a clerk with
    TOTP: her secret."""
    node = await start_node(policy=role_login_policy())
    await node.user("alice", PASSWORD, roles=["clerk"])
    return node, await enrol_totp(node, "alice")


async def stepped_up_sign_in(client: httpx.AsyncClient) -> tuple[str, str]:
    """The console's sign-in, stepped up: the step-up page's path and its challenge id."""
    form = await client.get("/login", params={"next": "/security"})
    answer = await client.post(
        "/login",
        data={
            "csrf_token": csrf_of(form),
            "username": "alice",
            "password": PASSWORD,
            "next": "/security",
        },
    )
    assert answer.status_code == 303, answer.text
    location = httpx.URL(answer.headers["location"])
    assert location.path.startswith("/stepup/chl_")
    assert location.params["return_to"] == "/login/complete?next=%2Fsecurity"
    assert "piigate_login_ticket" in client.cookies and "piigate_session" not in client.cookies
    return str(location.raw_path, "ascii"), location.path.removeprefix("/stepup/")


async def test_a_stepped_up_sign_in_completes_through_the_page(
    clerk: tuple[Node, str], browsers: Browsers
) -> None:
    node, secret = clerk
    client = browsers(node)
    path, challenge_id = await stepped_up_sign_in(client)
    page = await client.get(path)
    assert page.status_code == 200, page.text
    assert "Sign in as alice" in page.text and "Confirm it's you" in page.text
    assert "Sign out" not in page.text  # nobody is signed in yet
    answer = await client.post(
        f"/stepup/{challenge_id}/verify",
        data={
            "csrf_token": csrf_of(page),
            "method": "totp",
            "code": totp_now(node, secret),
            "return_to": "/login/complete?next=%2Fsecurity",
        },
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/login/complete?next=%2Fsecurity"
    assert grant_cookie(answer) is not None
    done = await client.get(answer.headers["location"])
    assert done.status_code == 303 and done.headers["location"] == "/security"
    assert "piigate_session" in client.cookies
    assert "piigate_login_ticket" not in client.cookies  # spent, and deleted
    me = await client.get("/v1/factors")
    assert me.status_code == 200 and [f["kind"] for f in me.json()["factors"]] == ["totp"]


async def test_the_ticket_cookie_opens_only_its_own_challenge(
    clerk: tuple[Node, str], browsers: Browsers
) -> None:
    node, _ = clerk
    client = browsers(node)
    _, challenge_id = await stepped_up_sign_in(client)
    other = browsers(node)
    _, other_id = await stepped_up_sign_in(other)
    # Another login's challenge: the same answer as none at all (sign in first).
    for elsewhere in (other_id, "chl_doesnotexist"):
        answer = await client.get(f"/stepup/{elsewhere}")
        assert answer.status_code == 303
        assert httpx.URL(answer.headers["location"]).path == "/login"
    assert (await client.get(f"/v1/challenges/{other_id}")).status_code == 401
    # Its own, through the API as the page's script calls it.
    shown = await client.get(f"/v1/challenges/{challenge_id}")
    assert shown.status_code == 200 and shown.json()["action"] == "login"
    options = await client.get(f"/v1/challenges/{challenge_id}/webauthn")
    # Let in by the ticket; refused only because the policy has no WebAuthn.
    assert options.status_code == 409, options.text
    assert options.json()["detail"] == "the challenge cannot be answered with webauthn"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://127.0.0.1:9999"},  # same site, another port: the cookie goes there
        {"Referer": "https://evil.example/page"},
        {},
    ],
)
async def test_the_ticket_cookie_is_guarded_like_the_session_cookie(
    clerk: tuple[Node, str], headers: dict[str, str]
) -> None:
    node, secret = clerk
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app), base_url="http://t")
    async with client:
        own = {"Origin": node.settings.public_url.rstrip("/")}
        form = await client.get("/login")
        answer = await client.post(
            "/login",
            data={"csrf_token": csrf_of(form), "username": "alice", "password": PASSWORD},
            headers=own,
        )
        challenge_id = httpx.URL(answer.headers["location"]).path.removeprefix("/stepup/")
        proof = {"method": "totp", "code": totp_now(node, secret)}
        forged = await client.post(
            f"/v1/challenges/{challenge_id}/verify", json=proof, headers=headers
        )
        assert forged.status_code == 403, forged.text
        assert forged.json()["code"] == "cross_site_request"
        assert (await node.services.challenges.get(challenge_id)).attempts == 0
        # From the service's own page, the same request verifies.
        ours = await client.post(f"/v1/challenges/{challenge_id}/verify", json=proof, headers=own)
        assert ours.status_code == 200, ours.text
