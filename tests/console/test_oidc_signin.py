"""The console's sign-in at the identity provider (OIDC authorization code + PKCE) against a
provider on loopback (``oidc_support.FakeIdp``, its key and JWKS from ``jwt_support``): the
redirect and its flow cookie, the session it opens, the provider's acr and roles, the login
decided by the policy (allow, deny, step-up and its completion), and each refused answer —
none of which opens a session, shows a code or a token, or goes uncounted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from api_support import T0, Node, StartNode
from factor_support import enroll_totp, totp_code
from feed_support import role_login_policy
from joserfc.jwk import RSAKey
from jwt_support import idp_key
from oidc_support import CLIENT_ID, FakeIdp

from piigate.config import IdentitySettings
from piigate.oidc_settings import OidcClientSettings
from store_support import set_user_disabled

__all__ = ["idp_key"]  # the fixture, for pytest

AAL1, AAL2 = "urn:piigate:aal1", "urn:piigate:aal2"
STALE = "This sign-in has expired or was started in another browser."
UNVERIFIED = "sign-in could not be verified."
FLOW = "piigate_oidc_flow"
SESSION = "piigate_session"


def identity(idp: FakeIdp, **client: object) -> IdentitySettings:
    return IdentitySettings(
        issuer=idp.issuer,
        audience="piigate-api",
        jwks_url=f"{idp.issuer}/jwks",
        console=OidcClientSettings(CLIENT_ID, **client),  # type: ignore[arg-type]
    )


@pytest.fixture
def idp(idp_key: RSAKey) -> Iterator[FakeIdp]:
    server = FakeIdp(idp_key)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def site(start_node: StartNode, idp: FakeIdp) -> Node:
    return await start_node(policy=role_login_policy(), identity=identity(idp))


async def begin(node: Node, next: str = "/") -> str:
    """``GET /login/oidc``: where piigate sends the browser (the provider's authorization
    request)."""
    answer = await node.client.get("/login/oidc", params={"next": next})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


async def sign_in(node: Node, idp: FakeIdp, **claims: object) -> httpx.Response:
    """A whole sign-in: to the provider, ``claims`` about the person, back to piigate."""
    return await node.client.get(idp.authorize(await begin(node), **claims))


def onward(page: httpx.Response) -> str:
    """Where a "Continue" page sends the browser."""
    found = re.search(r'<a class="button primary" href="([^"]+)">Continue</a>', page.text)
    assert found is not None, page.text
    return found.group(1)


async def session_of(node: Node) -> tuple[str, frozenset[str], str | None]:
    found = await node.services.logins.session_for(node.client.cookies[SESSION])
    assert found is not None
    return found.subject.id, found.subject.roles, found.session.level


async def failures(node: Node) -> list[object]:
    events = await node.services.audit.list_events(types=["login_failed"], limit=500)
    return [event.data.get("reason") for event in events]


async def test_the_sign_in_page_offers_the_provider_only_with_a_console_client(
    start_node: StartNode, idp: FakeIdp
) -> None:
    bearer_only = IdentitySettings(idp.issuer, "piigate-api", f"{idp.issuer}/jwks")
    node = await start_node(identity=bearer_only)
    page = await node.client.get("/login")
    assert "Sign in with your organisation" not in page.text
    assert (await node.client.get("/login/oidc")).status_code == 404
    assert (await node.client.get("/login/oidc/callback?code=x&state=y")).status_code == 404


async def test_the_redirect_carries_pkce_state_and_nonce_and_seals_the_flow(
    site: Node, idp: FakeIdp
) -> None:
    page = await site.client.get("/login")
    assert 'href="/login/oidc?next=/"' in page.text.replace("%2F", "/")
    answer = await site.client.get("/login/oidc", params={"next": "/security/audit"})
    assert answer.status_code == 303
    query = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}
    assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == "http://127.0.0.1:8080/login/oidc/callback"
    assert query["scope"] == "openid"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43 and len(query["nonce"]) >= 43
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{FLOW}=")
    for attribute in ("HttpOnly", "Max-Age=600", "Path=/login/oidc/callback", "SameSite=lax"):
        assert attribute in cookie, cookie
    # Sealed: neither the state nor the nonce can be read from it.
    assert query["state"] not in cookie and query["nonce"] not in cookie
    again = parse_qs(urlsplit(await begin(site)).query)
    assert again["state"][0] != query["state"] and again["nonce"][0] != query["nonce"]
    assert again["code_challenge"][0] != query["code_challenge"]


async def test_a_sign_in_opens_a_session_and_lands_on_my_security(site: Node, idp: FakeIdp) -> None:
    location = await begin(site, "/me")
    back = idp.authorize(location, sub="dana", acr=AAL1, roles=[])
    answer = await site.client.get(back)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/me"
    assert f'{FLOW}=""' in answer.headers["set-cookie"]  # spent
    assert await session_of(site) == ("dana", frozenset(), "aal1")
    assert (await site.client.get("/")).headers["location"] == "/me"
    # The code was exchanged with the verifier whose S256 the request carried, as a public
    # client (the provider answers only then).
    [(form, authorization)] = idp.token_requests
    assert authorization is None and form["client_id"] == CLIENT_ID
    assert form["redirect_uri"] == "http://127.0.0.1:8080/login/oidc/callback"
    [event] = await site.services.audit.list_events(types=["login_succeeded"])
    assert event.subject_id == "dana" and event.data["issuer"] == idp.issuer
    code = parse_qs(urlsplit(back).query)["code"][0]
    events = await site.services.audit.list_events(limit=500)
    assert code not in str([e.data for e in events])
    # The same answer again: the flow is spent, so it is refused.
    site.client.cookies.clear()
    assert (await site.client.get(back)).status_code == 400


async def test_the_providers_acr_and_roles_count(site: Node, idp: FakeIdp) -> None:
    # Clerks log in at aal2: the provider's acr for aal2 is the proof, no step-up here.
    answer = await sign_in(site, idp, sub="dana", acr=AAL2, roles=["clerk", "security"])
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert await session_of(site) == ("dana", frozenset({"clerk", "security"}), "aal2")
    assert (await site.client.get("/")).headers["location"] == "/security"


async def test_a_login_the_policy_steps_up_goes_to_the_step_up_page_and_completes(
    site: Node, idp: FakeIdp
) -> None:
    # dana signs in once without a rule in the way and enrols TOTP in that session.
    assert (await sign_in(site, idp, sub="dana", acr=AAL1, roles=[])).status_code == 303
    _, secret = await enroll_totp(site, site.client)
    site.client.cookies.delete(SESSION)
    # As a clerk at aal1, the login needs aal2: the step-up page, with the login ticket. The
    # browser comes from the provider's site: a page of this origin moves it on, so that the
    # navigation is same-site and carries the ticket's SameSite=Strict cookie.
    answer = await sign_in(site, idp, sub="dana", acr=AAL1, roles=["clerk"])
    assert answer.status_code == 200, answer.text
    location = onward(answer)
    assert f'<meta http-equiv="refresh" content="0; url={location}">' in answer.text
    assert location.startswith("/stepup/")
    assert "return_to=%2Flogin%2Fcomplete%3Fnext%3D%252F" in location
    assert SESSION not in site.client.cookies
    challenge_id = urlsplit(location).path.removeprefix("/stepup/")
    ticket = site.client.cookies["piigate_login_ticket"]
    verified = await site.client.post(
        f"/v1/challenges/{challenge_id}/verify",
        json={"method": "totp", "code": totp_code(site, secret)},
        headers={"PIIGate-Login-Ticket": ticket},
    )
    assert verified.status_code == 200, verified.text
    done = await site.client.get("/login/complete", params={"next": "/"})
    assert done.status_code == 303 and done.headers["location"] == "/"
    # The session is the provider's word: its roles and its acr's level.
    assert await session_of(site) == ("dana", frozenset({"clerk"}), "aal1")
    events = await site.services.audit.list_events(types=["login_succeeded"], subject_id="dana")
    completed = events[-1]
    assert completed.data["challenge_id"] == challenge_id
    assert completed.data["issuer"] == idp.issuer


async def test_a_denied_login_and_a_disabled_local_account_show_a_clear_page(
    site: Node, idp: FakeIdp
) -> None:
    denied = await sign_in(site, idp, sub="dana", roles=["blocked"])
    assert denied.status_code == 403
    assert "This sign-in is not allowed." in denied.text
    await site.user("erin", "correct horse battery staple")
    await set_user_disabled(site.services.db, "erin", True)
    disabled = await sign_in(site, idp, sub="erin", roles=[])
    assert disabled.status_code == 403
    assert SESSION not in site.client.cookies
    reasons = [
        e.data.get("reason")
        for e in await site.services.audit.list_events(types=["login_denied"], limit=10)
    ]
    assert "account_disabled" in reasons


async def test_the_subject_can_come_from_another_claim(start_node: StartNode, idp: FakeIdp) -> None:
    node = await start_node(
        policy=role_login_policy(),
        identity=identity(idp, subject_claim="preferred_username", roles_claim="groups"),
    )
    answer = await sign_in(
        node, idp, sub="00u1a2b3", preferred_username="dana", groups=["security"], roles=[]
    )
    assert answer.status_code == 303, answer.text
    assert await session_of(node) == ("dana", frozenset({"security"}), "aal2")
    node.client.cookies.delete(SESSION)
    refused = await sign_in(node, idp, sub="00u1a2b3", groups=[])  # no preferred_username
    assert refused.status_code == 401


async def test_a_confidential_client_authenticates_with_its_secret(
    start_node: StartNode, idp_key: RSAKey
) -> None:
    from piigate.crypto.secret import Secret

    idp = FakeIdp(idp_key, client_secret="s3cr3t-of-the-console")
    try:
        node = await start_node(
            policy=role_login_policy(),
            identity=identity(idp, client_secret=Secret("s3cr3t-of-the-console")),
        )
        assert (await sign_in(node, idp, sub="dana", roles=[])).status_code == 303
        [(form, authorization)] = idp.token_requests
        assert authorization is not None and authorization.startswith("Basic ")
        assert "client_secret" not in form
    finally:
        idp.close()


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"nonce": "not-the-flows"}, "nonce_mismatch"),
        ({"aud": "someone-else"}, "id_token_audience"),
        ({"iss": "https://evil.example"}, "id_token_issuer"),
        ({"exp": int(T0.timestamp()) - 120}, "id_token_expired"),
        ({"iat": int(T0.timestamp()) - 3600}, "id_token_iat"),
        ({"aud": [CLIENT_ID, "another-app"]}, "id_token_azp"),
        ({"azp": "another-app"}, "id_token_azp"),
    ],
)
async def test_an_id_token_that_is_not_this_sign_ins_is_refused(
    site: Node, idp: FakeIdp, claims: dict[str, object], reason: str
) -> None:
    location = await begin(site)
    back = idp.authorize(location, sub="dana", roles=["security"], **claims)
    grant = next(iter(idp.codes.values()))
    answer = await site.client.get(back)
    assert answer.status_code == 401
    assert UNVERIFIED in answer.text
    assert SESSION not in site.client.cookies
    code = parse_qs(urlsplit(back).query)["code"][0]
    assert code not in answer.text and grant.id_token not in answer.text
    assert await failures(site) == [reason]


async def test_an_id_token_signed_by_another_key_is_refused(site: Node, idp: FakeIdp) -> None:
    forger = RSAKey.generate_key(2048, parameters={"kid": idp.key.kid})
    answer = await site.client.get(idp.authorize(await begin(site), key=forger, sub="dana"))
    assert answer.status_code == 401
    assert await failures(site) == ["id_token_signature"]


async def test_an_answer_for_another_flow_is_refused(site: Node, idp: FakeIdp) -> None:
    back = idp.authorize(await begin(site), sub="dana")
    # Another state than the flow's (a code injected into this browser).
    forged = back.replace("state=", "state=x")
    answer = await site.client.get(forged)
    assert answer.status_code == 400 and STALE in answer.text
    # No flow at all (the cookie gone, or another browser).
    site.client.cookies.delete(FLOW)
    assert (await site.client.get(back)).status_code == 400
    assert SESSION not in site.client.cookies
    assert await failures(site) == ["state_mismatch", "no_flow"]
    assert idp.token_requests == []  # nothing was exchanged


async def test_a_code_the_provider_does_not_accept_is_refused(site: Node, idp: FakeIdp) -> None:
    back = idp.authorize(await begin(site), sub="dana")
    idp.codes.clear()  # expired, or spent already
    answer = await site.client.get(back)
    assert answer.status_code == 401
    assert await failures(site) == ["token_invalid_grant"]


async def test_an_error_from_the_provider_is_said_plainly(site: Node, idp: FakeIdp) -> None:
    answer = await site.client.get(idp.authorize(await begin(site), error="access_denied"))
    assert answer.status_code == 401
    assert "The sign-in was cancelled or refused at your organisation." in answer.text
    assert "555-0100" not in answer.text  # the provider's description is never shown
    assert f'{FLOW}=""' in answer.headers["set-cookie"]
    other = await site.client.get(idp.authorize(await begin(site), error="login_required"))
    assert other.status_code == 400
    assert "did not complete" in other.text
    assert SESSION not in site.client.cookies


async def test_an_unreachable_provider_is_said_plainly(site: Node, idp: FakeIdp) -> None:
    idp.discovery_status = 503
    answer = await site.client.get("/login/oidc")
    assert answer.status_code == 503
    assert "cannot be reached right now" in answer.text
    assert FLOW not in site.client.cookies


async def test_refused_answers_back_off_the_network(site: Node, idp: FakeIdp) -> None:
    for _ in range(21):  # twenty free failures per network, then the back-off
        assert (await site.client.get("/login/oidc/callback?code=c&state=s")).status_code == 400
    throttled = await site.client.get("/login/oidc/callback?code=c&state=s")
    assert throttled.status_code == 429 and "retry-after" in throttled.headers
    started = await site.client.get("/login/oidc")
    assert started.status_code == 429
    # A genuine sign-in from that network waits as well.
    site.clock.advance(3)
    assert (await sign_in(site, idp, sub="dana", roles=[])).status_code == 303
