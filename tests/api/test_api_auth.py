"""Who may call (CONTRACT §4.1): API keys and their scopes, session cookies, IdP bearer JWTs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from api_support import PROBLEM, T0, Node, StartNode, bearer, decision_body
from joserfc.jwk import RSAKey
from jwt_support import AUDIENCE, ISSUER, JwksServer, idp_token

from piigate.api.auth import SESSION_COOKIE
from piigate.config import IdentitySettings
from store_support import revoke_api_key


def assert_401(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["www-authenticate"].startswith("Bearer")
    body: dict[str, Any] = response.json()
    assert body["status"] == 401
    return body


def session_cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


async def step_up_for(node: Node, key: str, subject: str) -> str:
    response = await node.decide(key, decision_body("update", ["ssn"], subject=subject))
    assert response.json()["outcome"] == "step_up"
    challenge_id: str = response.json()["challenge"]["id"]
    return challenge_id


# -- API keys ----------------------------------------------------------------------------------
async def test_no_credentials(node: Node) -> None:
    body = assert_401(await node.client.post("/v1/decisions", json=decision_body()))
    assert body["code"] == "unauthorized"


WRONG_AUTHORIZATIONS = [
    "Bearer pgk_0123456789ab_" + "A" * 43,  # well formed, unknown
    "Bearer pgk_short",
    "Basic YWxpY2U6c2VjcmV0",
    "Bearer ",
    "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln",  # a JWT, but no IdP is configured
]


async def test_wrong_credentials(node: Node) -> None:
    for authorization in WRONG_AUTHORIZATIONS:
        response = await node.client.post(
            "/v1/decisions", json=decision_body(), headers={"Authorization": authorization}
        )
        assert_401(response)
    assert await node.services.audit.list_events(types=["decision"]) == []


async def test_revoked_key_is_refused(node: Node) -> None:
    _, key = await node.api_key("gone")
    assert await revoke_api_key(node.services.store.db, "gone")
    node.services.api_keys.invalidate()
    assert_401(await node.decide(key, decision_body()))


async def test_key_without_decisions_scope(node: Node) -> None:
    _, key = await node.api_key(scopes=["events"])
    response = await node.decide(key, decision_body())
    assert response.status_code == 403
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="decisions"'
    )
    assert response.json()["code"] == "insufficient_scope"
    assert await node.services.audit.list_events(types=["decision"]) == []


async def test_api_key_reads_only_challenges_it_requested(node: Node) -> None:
    _, key_a = await node.api_key("app-a")
    _, key_b = await node.api_key("app-b")
    challenge = await step_up_for(node, key_a, "alice")
    own = await node.client.get(f"/v1/challenges/{challenge}", headers=bearer(key_a))
    assert own.status_code == 200
    body = own.json()
    assert body["id"] == challenge
    assert body["subject"] == "alice"
    assert body["action"] == "update" and body["pii"] == ["ssn"]
    assert body["state"] == "pending" and body["level"] == "aal2"
    status = await node.client.get(f"/v1/challenges/{challenge}/status", headers=bearer(key_a))
    assert status.json() == {"id": challenge, "state": "pending"}
    for path in (f"/v1/challenges/{challenge}", f"/v1/challenges/{challenge}/status"):
        other = await node.client.get(path, headers=bearer(key_b))
        assert other.status_code == 404
        assert other.headers["content-type"].startswith(PROBLEM)


async def test_challenge_expires(node: Node, api_key: str) -> None:
    challenge = await step_up_for(node, api_key, "alice")
    node.clock.advance(3600)
    status = await node.client.get(f"/v1/challenges/{challenge}/status", headers=bearer(api_key))
    assert status.json()["state"] == "expired"


# -- session cookie ----------------------------------------------------------------------------
async def test_session_cookie_reads_own_challenge_only(node: Node, api_key: str) -> None:
    await node.user("alice", "correct horse battery")
    mine = await step_up_for(node, api_key, "alice")
    theirs = await step_up_for(node, api_key, "bob")
    login = await node.client.post(
        "/v1/login", json={"username": "alice", "password": "correct horse battery"}
    )
    assert login.status_code == 200, login.text
    assert login.json()["subject"] == "alice"
    assert login.json()["level"] == "aal1"
    set_cookie = login.headers["set-cookie"]
    assert set_cookie.startswith(f"{SESSION_COOKIE}=")
    assert "httponly" in set_cookie.lower() and "samesite=lax" in set_cookie.lower()
    token = login.cookies[SESSION_COOKIE]
    node.client.cookies.clear()
    cookies = session_cookie(token)

    own = await node.client.get(f"/v1/challenges/{mine}", headers=cookies)
    assert own.status_code == 200 and own.json()["subject"] == "alice"
    other = await node.client.get(f"/v1/challenges/{theirs}", headers=cookies)
    assert other.status_code == 404
    # A console session is not an app: it may not ask for decisions.
    response = await node.client.post("/v1/decisions", json=decision_body(), headers=cookies)
    assert response.status_code == 403
    # A forged cookie is no session; a logged-out one neither.
    forged = await node.client.get(f"/v1/challenges/{mine}", headers=session_cookie("x" * 43))
    assert_401(forged)
    out = await node.client.post("/v1/logout", headers=cookies)
    assert out.status_code == 204
    node.client.cookies.clear()
    assert_401(await node.client.get(f"/v1/challenges/{mine}", headers=cookies))


async def test_session_expires(node: Node, api_key: str) -> None:
    await node.user("alice", "correct horse battery")
    mine = await step_up_for(node, api_key, "alice")
    login = await node.client.post(
        "/v1/login", json={"username": "alice", "password": "correct horse battery"}
    )
    cookies = session_cookie(login.cookies[SESSION_COOKIE])
    node.client.cookies.clear()
    node.clock.advance(node.settings.session_ttl + 1)
    assert_401(await node.client.get(f"/v1/challenges/{mine}", headers=cookies))


# -- IdP bearer JWTs ---------------------------------------------------------------------------
async def test_bearer_jwt_from_the_configured_idp(
    start_node: StartNode, jwks_server: JwksServer, idp_key: RSAKey
) -> None:
    node = await start_node(identity=IdentitySettings(ISSUER, AUDIENCE, jwks_server.url))
    _, key = await node.api_key("app")
    mine = await step_up_for(node, key, "alice")
    theirs = await step_up_for(node, key, "bob")
    token = idp_token(idp_key)

    own = await node.client.get(f"/v1/challenges/{mine}", headers=bearer(token))
    assert own.status_code == 200, own.text
    assert own.json()["subject"] == "alice"
    assert (
        await node.client.get(f"/v1/challenges/{theirs}", headers=bearer(token))
    ).status_code == 404
    # The token's scope claim is read: "decisions" lets it ask for decisions.
    decided = await node.decide(token, decision_body("read", ["phone"]))
    assert decided.status_code == 200 and decided.json()["outcome"] == "allow"
    without = idp_token(idp_key, scope="openid")
    assert (await node.decide(without, decision_body())).status_code == 403


BAD_CLAIMS: list[dict[str, Any]] = [
    {"exp": int(T0.timestamp()) - 3600, "iat": int(T0.timestamp()) - 7200},  # expired
    {"aud": "someone-else"},
    {"iss": "https://evil.example"},
    {"auth_time": int(T0.timestamp()) + 3600},  # authenticated in the future
]


async def test_bad_bearer_jwt_is_401(
    start_node: StartNode, jwks_server: JwksServer, idp_key: RSAKey
) -> None:
    node = await start_node(identity=IdentitySettings(ISSUER, AUDIENCE, jwks_server.url))
    _, key = await node.api_key("app")
    mine = await step_up_for(node, key, "alice")
    for overrides in BAD_CLAIMS:
        token = idp_token(idp_key, **overrides)
        response = await node.client.get(f"/v1/challenges/{mine}", headers=bearer(token))
        body = assert_401(response)
        assert body["code"] == "invalid_token", overrides
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert token not in response.text


async def test_jwt_signed_by_another_key_is_401(
    start_node: StartNode, jwks_server: JwksServer
) -> None:
    node = await start_node(identity=IdentitySettings(ISSUER, AUDIENCE, jwks_server.url))
    impostor = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})
    response = await node.client.get("/v1/challenges/chl_x", headers=bearer(idp_token(impostor)))
    assert assert_401(response)["code"] == "invalid_token"


async def test_jwt_expiry_follows_the_service_clock(
    start_node: StartNode, jwks_server: JwksServer, idp_key: RSAKey
) -> None:
    node = await start_node(identity=IdentitySettings(ISSUER, AUDIENCE, jwks_server.url))
    _, key = await node.api_key("app")
    mine = await step_up_for(node, key, "alice")
    token = idp_token(idp_key)
    assert (await node.client.get(f"/v1/challenges/{mine}", headers=bearer(token))).is_success
    node.clock.advance(timedelta(minutes=20).total_seconds())
    assert_401(await node.client.get(f"/v1/challenges/{mine}", headers=bearer(token)))
