"""Cross-site requests: a request the session cookie authenticates must come from our own pages.

A page on another origin (even a same-site one: another port or subdomain, to which the
``SameSite=Lax`` cookie still goes) makes the user's browser send unsafe requests with the
session cookie. ``api.middleware.CrossSiteGuard`` refuses them unless ``Origin`` (or, without
it, ``Referer``) names the public URL's origin or an allowed one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from api_support import PROBLEM, Node, StartNode, bearer, decision_body
from factor_support import PASSWORD

OURS = "http://127.0.0.1:8080"  # the default public URL's origin
SAME_SITE = "http://127.0.0.1:9999"  # another port of the same host: the cookie goes there too
OTHER = "https://evil.example"

Browser = Callable[[Node, str], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A logged-in client that sends no ``Origin`` of its own: each test says what it sends."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(node: Node, name: str) -> httpx.AsyncClient:
            await node.user(name, PASSWORD)
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app), base_url="http://t")
            )
            login = await client.post("/v1/login", json={"username": name, "password": PASSWORD})
            assert login.status_code == 200, login.text
            assert "piigate_session" in client.cookies
            return client

        yield make


def assert_cross_site(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["code"] == "cross_site_request"
    assert body["type"].endswith("/cross_site_request")
    assert body["title"] == "Cross-site request refused"


async def factors(client: httpx.AsyncClient) -> list[str]:
    listed = await client.get("/v1/factors")  # a safe method: never checked
    assert listed.status_code == 200, listed.text
    return [f["kind"] for f in listed.json()["factors"]]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": SAME_SITE},
        {"Origin": OTHER},
        {"Origin": "null"},  # a sandboxed frame or a redirect chain
        {"Referer": f"{SAME_SITE}/page"},  # no Origin: the Referer's origin counts
        {},  # neither: a browser would have sent one
    ],
)
async def test_a_forged_request_with_the_session_cookie_is_refused(
    node: Node, browser: Browser, headers: dict[str, str]
) -> None:
    alice = await browser(node, "alice")
    # The bodiless POST a page on another origin can make with a form.
    assert_cross_site(await alice.post("/v1/factors/recovery", headers=headers))
    assert await factors(alice) == []  # nothing was created
    assert_cross_site(await alice.post("/v1/logout", headers=headers))
    assert await factors(alice) == []  # still logged in


async def test_our_own_pages_may(node: Node, browser: Browser) -> None:
    alice = await browser(node, "alice")
    created = await alice.post("/v1/factors/recovery", headers={"Origin": OURS})
    assert created.status_code == 201, created.text
    assert await factors(alice) == ["recovery"]
    # A browser that leaves Origin out sends the page in Referer.
    totp = await alice.post(
        "/v1/factors/totp", json={}, headers={"Referer": f"{OURS}/console/factors"}
    )
    assert totp.status_code == 401  # the check passed: now a grant is needed (a factor exists)
    assert totp.json()["code"] == "insufficient_user_authentication"


async def test_callers_with_an_authorization_header_are_not_checked(
    node: Node, browser: Browser, api_key: str
) -> None:
    """An API key or a bearer token is not sent by a browser on its own: no ambient authority."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=node.app), base_url="http://t"
    ) as app:
        assert "origin" not in app.headers
        decided = await app.post(
            "/v1/decisions", json=decision_body("read", ["phone"]), headers=bearer(api_key)
        )
        assert decided.status_code == 200, decided.text
    alice = await browser(node, "alice")
    # With the cookie too, the header is what authenticates (and an API key has no factors).
    refused = await alice.post("/v1/factors/recovery", headers={**bearer(api_key), "Origin": OTHER})
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"


async def test_login_from_another_origin_is_refused(node: Node) -> None:
    """Login CSRF: another site must not log the browser in to an account of its choosing."""
    await node.user("mallory", PASSWORD)
    body = {"username": "mallory", "password": PASSWORD}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=node.app), base_url="http://t"
    ) as client:
        assert_cross_site(await client.post("/v1/login", json=body, headers={"Origin": OTHER}))
        assert "piigate_session" not in client.cookies
        ours = await client.post("/v1/login", json=body, headers={"Origin": OURS})
        assert ours.status_code == 200
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=node.app), base_url="http://t"
    ) as script:  # curl or a test: no browser, so no other site behind it
        assert (await script.post("/v1/login", json=body)).status_code == 200


async def test_allowed_origins_may_too(start_node: StartNode) -> None:
    node = await start_node(
        public_url="https://piigate.example:8443/base/",
        allowed_origins=("https://console.example",),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=node.app), base_url="https://piigate.example:8443"
    ) as alice:
        await node.user("alice", PASSWORD)
        login = await alice.post(
            "/v1/login",
            json={"username": "alice", "password": PASSWORD},
            headers={"Origin": "https://console.example"},
        )
        assert login.status_code == 200, login.text
        assert_cross_site(
            await alice.post("/v1/factors/recovery", headers={"Origin": "https://other.example"})
        )
        ours = await alice.post(
            "/v1/factors/recovery", headers={"Origin": "https://piigate.example:8443"}
        )
        assert ours.status_code == 201, ours.text
        # Past the check: replacing recovery codes now needs a grant.
        console = await alice.post(
            "/v1/factors/recovery", headers={"Origin": "https://console.example"}
        )
        assert console.status_code == 401, console.text
        assert console.json()["code"] == "insufficient_user_authentication"
