"""WebAuthn over HTTP (CONTRACT §4.3, §4.4), SQLite and PostgreSQL: register a credential, fetch
request options for a challenge, answer it through ``/verify``; and every way that must fail."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from api_support import PROBLEM, Node, StartNode, bearer, decision_body
from factor_support import PASSWORD, Users

from webauthn_soft import SoftAuthenticator, unb64u

ORIGIN = "https://piigate.test"
DELETE_42 = {"method": "DELETE", "path": "/customers/42"}


@pytest.fixture
async def node(start_node: StartNode) -> Node:
    """The example policy (webauthn at aal3, user verification required) at ``ORIGIN``."""
    return await start_node(public_url=ORIGIN)


@pytest.fixture
async def key(node: Node) -> str:
    return (await node.api_key("app"))[1]


@pytest.fixture
async def users() -> AsyncIterator[Users]:
    """Like ``factor_support.users``, over https: with an https public URL the session cookie
    is ``Secure`` and would not be sent to ``http://``."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(node: Node, name: str) -> httpx.AsyncClient:
            await node.user(name, PASSWORD)
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=node.app),
                    base_url=ORIGIN,
                    headers={"Origin": ORIGIN},
                )
            )
            response = await client.post("/v1/login", json={"username": name, "password": PASSWORD})
            assert response.status_code == 200, response.text
            return client

        yield make


async def register(
    client: httpx.AsyncClient,
    auth: SoftAuthenticator,
    *,
    grant: str | None = None,
    **tamper: Any,
) -> httpx.Response:
    headers = {"PIIGate-Grant": grant} if grant else {}
    options = await client.post("/v1/factors/webauthn/options", headers=headers)
    assert options.status_code == 200, options.text
    credential = auth.create(options.json()["publicKey"], **tamper)
    return await client.post(
        "/v1/factors/webauthn", json={"credential": credential, "label": "key"}, headers=headers
    )


async def request_options(
    client: httpx.AsyncClient, challenge_id: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await client.get(f"/v1/challenges/{challenge_id}/webauthn", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    public_key: dict[str, Any] = response.json()["publicKey"]
    return public_key


async def verify(
    client: httpx.AsyncClient,
    challenge_id: str,
    credential: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        f"/v1/challenges/{challenge_id}/verify",
        json={"method": "webauthn", "credential": credential},
        headers=headers or {},
    )


async def step_up(node: Node, key: str, body: dict[str, Any]) -> str:
    decided = (await node.decide(key, body)).json()
    assert decided["outcome"] == "step_up", decided
    assert "webauthn" in decided["required"]["methods"]
    challenge_id: str = decided["challenge"]["id"]
    return challenge_id


def assert_rejected(node: Node, response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["code"] == "factor_rejected" and body["detail"] == "Verification failed"
    node.clock.advance(16)  # past the factor's failure back-off


async def reasons(node: Node, type: str = "verification_failed") -> list[str]:
    events = await node.services.audit.list_events(types=[type], limit=1000)
    return [str(e.data["reason"]) for e in events]


async def enrolled(node: Node, users: Users, name: str = "alice") -> tuple[Any, Any]:
    client = await users(node, name)
    auth = SoftAuthenticator(origin=ORIGIN)
    response = await register(client, auth)
    assert response.status_code == 201, response.text
    return client, auth


# -- enrollment ------------------------------------------------------------------------------------


async def test_register_a_credential(node: Node, users: Users) -> None:
    alice = await users(node, "alice")
    options = await alice.post("/v1/factors/webauthn/options")
    assert options.status_code == 200 and options.headers["cache-control"] == "no-store"
    body = options.json()
    assert set(body) == {"publicKey", "ceremony", "expires_at"}
    assert body["publicKey"]["rp"]["id"] == "piigate.test"
    assert body["publicKey"]["authenticatorSelection"]["userVerification"] == "required"

    auth = SoftAuthenticator(origin=ORIGIN)
    created = await alice.post(
        "/v1/factors/webauthn",
        json={"credential": auth.create(body["publicKey"]), "label": "yubikey"},
    )
    assert created.status_code == 201, created.text
    factor = created.json()
    assert factor["kind"] == "webauthn" and factor["state"] == "active"
    assert factor["label"] == "yubikey" and factor["transports"] == ["internal"]
    assert factor["backup_eligible"] is False
    assert "public_key" not in factor and "credential_id" not in factor
    listed = (await alice.get("/v1/factors")).json()["factors"]
    assert [f["id"] for f in listed] == [factor["id"]]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"uv": False}, "no_user_verification"),
        ({"origin": "https://evil.test"}, "bad_assertion"),
        ({"rp_id": "evil.test"}, "bad_assertion"),
    ],
)
async def test_registration_refusals(
    node: Node, users: Users, tamper: dict[str, Any], reason: str
) -> None:
    alice = await users(node, "alice")
    response = await register(alice, SoftAuthenticator(origin=ORIGIN), **tamper)
    assert_rejected(node, response)
    assert await reasons(node, "factor_confirmation_failed") == [reason]
    assert (await alice.get("/v1/factors")).json()["factors"] == []


async def test_a_registration_challenge_is_used_once(node: Node, users: Users) -> None:
    alice = await users(node, "alice")
    bob = await users(node, "bob")
    options = (await bob.post("/v1/factors/webauthn/options")).json()["publicKey"]
    first = await bob.post(
        "/v1/factors/webauthn",
        json={"credential": SoftAuthenticator(origin=ORIGIN).create(options)},
    )
    assert first.status_code == 201
    # The same options again, answered by another authenticator, by another user.
    again = await alice.post(
        "/v1/factors/webauthn",
        json={"credential": SoftAuthenticator(origin=ORIGIN).create(options)},
    )
    assert_rejected(node, again)
    assert await reasons(node, "factor_confirmation_failed") == ["bad_assertion"]


async def test_a_second_credential_needs_a_fresh_grant(node: Node, users: Users) -> None:
    alice, first = await enrolled(node, users)
    refused = await alice.post("/v1/factors/webauthn/options")
    assert refused.status_code == 401
    assert refused.json()["code"] == "insufficient_user_authentication"
    assert "insufficient_user_authentication" in refused.headers["www-authenticate"]

    # The refusal carries alice's own step-up, answered with her security key.
    challenge_id = refused.json()["challenge"]["id"]
    options = await request_options(alice, challenge_id)
    grant = (await verify(alice, challenge_id, first.get(options))).json()["grant"]
    second = await register(alice, SoftAuthenticator(origin=ORIGIN), grant=grant)
    assert second.status_code == 201, second.text


async def test_only_people_register_credentials(node: Node, key: str) -> None:
    response = await node.client.post("/v1/factors/webauthn/options", headers=bearer(key))
    assert response.status_code in (401, 403)
    shapeless = await node.client.post(
        "/v1/factors/webauthn", json={"label": "x"}, headers=bearer(key)
    )
    assert shapeless.status_code in (401, 403, 422)


# -- step-up ---------------------------------------------------------------------------------------


async def test_step_up_with_webauthn(node: Node, key: str, users: Users) -> None:
    alice, auth = await enrolled(node, users)
    body = decision_body("update", ["ssn"])
    challenge_id = await step_up(node, key, body)
    options = await request_options(alice, challenge_id)
    assert options["userVerification"] == "required" and options["rpId"] == "piigate.test"
    assert [unb64u(c["id"]) for c in options["allowCredentials"]] == [auth.credential_id]

    response = await verify(alice, challenge_id, auth.get(options))
    assert response.status_code == 200, response.text
    granted = response.json()
    assert granted["level"] == "aal3" and granted["amr"] == ["hwk", "user"]
    allowed = (await node.decide(key, {**body, "grants": [granted["grant"]]})).json()
    assert allowed["outcome"] == "allow"


async def test_the_app_relays_options_and_assertion(node: Node, key: str, users: Users) -> None:
    _, auth = await enrolled(node, users)
    bob = await users(node, "bob")
    challenge_id = await step_up(node, key, decision_body("update", ["ssn"]))
    # Neither another user nor another app may see the challenge's options.
    assert (await bob.get(f"/v1/challenges/{challenge_id}/webauthn")).status_code == 404
    other_key = (await node.api_key("other"))[1]
    stranger = await node.client.get(
        f"/v1/challenges/{challenge_id}/webauthn", headers=bearer(other_key)
    )
    assert stranger.status_code == 404
    options = await request_options(node.client, challenge_id, bearer(key))
    response = await verify(node.client, challenge_id, auth.get(options), bearer(key))
    assert response.status_code == 200, response.text


async def test_bound_step_up(node: Node, key: str, users: Users) -> None:
    alice, auth = await enrolled(node, users)
    body = decision_body("delete", ["ssn"], binding=DELETE_42)
    decided = (await node.decide(key, body)).json()
    assert decided["required"]["max_age"] == 0 and decided["required"]["level"] == "aal3"
    challenge_id = decided["challenge"]["id"]
    granted = (
        await verify(alice, challenge_id, auth.get(await request_options(alice, challenge_id)))
    ).json()
    assert granted["single_use"] is True
    assert (await node.decide(key, {**body, "grants": [granted["grant"]]})).json()["outcome"] == (
        "allow"
    )
    assert (await node.decide(key, {**body, "grants": [granted["grant"]]})).json()["outcome"] == (
        "step_up"
    )


async def test_an_assertion_for_another_request_is_refused(
    node: Node, key: str, users: Users
) -> None:
    alice, auth = await enrolled(node, users)
    body_a = decision_body("delete", ["ssn"], binding=DELETE_42)
    body_b = {
        **decision_body("delete", ["ssn"], binding={"method": "DELETE", "path": "/customers/43"}),
        "resource": {"type": "customer", "id": "43"},
    }
    a = await step_up(node, key, body_a)
    b = await step_up(node, key, body_b)
    for_a = auth.get(await request_options(alice, a))
    await request_options(alice, b)
    # The user approved deleting record 42; the assertion cannot delete record 43.
    assert_rejected(node, await verify(alice, b, for_a))
    assert await reasons(node) == ["bad_assertion"]
    granted = (await verify(alice, a, for_a)).json()
    outcome = (await node.decide(key, {**body_b, "grants": [granted["grant"]]})).json()["outcome"]
    assert outcome == "step_up"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"uv": False}, "no_user_verification"),
        ({"origin": "https://evil.test"}, "bad_assertion"),
        ({"rp_id": "evil.test"}, "bad_assertion"),
    ],
)
async def test_refused_assertions(
    node: Node, key: str, users: Users, tamper: dict[str, Any], reason: str
) -> None:
    alice, auth = await enrolled(node, users)
    challenge_id = await step_up(node, key, decision_body("update", ["ssn"]))
    options = await request_options(alice, challenge_id)
    assert_rejected(node, await verify(alice, challenge_id, auth.get(options, **tamper)))
    assert await reasons(node) == [reason]


async def test_replayed_assertions_are_refused(node: Node, key: str, users: Users) -> None:
    alice, auth = await enrolled(node, users)
    challenge_id = await step_up(node, key, decision_body("update", ["ssn"]))
    assertion = auth.get(await request_options(alice, challenge_id))
    assert (await verify(alice, challenge_id, assertion)).status_code == 200
    assert_rejected(node, await verify(alice, challenge_id, assertion))
    # A challenge still pending: a refused answer spent the options, a good one cannot reuse them.
    other = await step_up(node, key, decision_body("update", ["passport"]))
    options = await request_options(alice, other)
    assert_rejected(node, await verify(alice, other, auth.get(options, uv=False)))
    assert_rejected(node, await verify(alice, other, auth.get(options)))
    assert await reasons(node) == ["not_pending", "no_user_verification", "replayed"]


async def test_sign_count_regression_is_refused(node: Node, key: str, users: Users) -> None:
    alice, auth = await enrolled(node, users)
    first = await step_up(node, key, decision_body("update", ["ssn"]))
    ok = await verify(alice, first, auth.get(await request_options(alice, first), counter=10))
    assert ok.status_code == 200
    second = await step_up(node, key, decision_body("update", ["passport"]))
    options = await request_options(alice, second)
    assert_rejected(node, await verify(alice, second, auth.get(options, counter=10)))
    assert await reasons(node) == ["sign_count_regressed"]


async def test_no_webauthn_credential_no_options(node: Node, key: str, users: Users) -> None:
    alice = await users(node, "alice")
    challenge_id = await step_up(node, key, decision_body("update", ["ssn"]))
    response = await alice.get(f"/v1/challenges/{challenge_id}/webauthn")
    assert response.status_code == 409 and response.headers["content-type"] == PROBLEM
    missing = await alice.get("/v1/challenges/chl_nope/webauthn")
    assert missing.status_code == 404


async def test_no_credential_material_reaches_audit_or_logs(
    node: Node,
    key: str,
    users: Users,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level("DEBUG")
    alice, auth = await enrolled(node, users)
    challenge_id = await step_up(node, key, decision_body("update", ["ssn"]))
    options = await request_options(alice, challenge_id)
    bad = auth.get(options, uv=False)
    assert_rejected(node, await verify(alice, challenge_id, bad))
    good = auth.get(await request_options(alice, challenge_id))
    granted = (await verify(alice, challenge_id, good)).json()
    sensitive = [granted["grant"], PASSWORD, options["challenge"]]
    for credential in (bad, good):
        sensitive.extend(v for k, v in credential["response"].items() if k != "userHandle")
    events = await node.services.audit.list_events(limit=1000)
    audit_text = json.dumps([[e.type, e.subject_id, dict(e.data)] for e in events])
    out, err = capsys.readouterr()
    for text in (audit_text, caplog.text, out, err):
        for value in sensitive:
            assert value not in text
