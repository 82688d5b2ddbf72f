"""``POST /v1/db-credentials``: a session of its own for the PostgreSQL gateway (local users)."""

from __future__ import annotations

from typing import Any

from api_support import Node, bearer
from factor_support import users

from piigate.gateway.postgres.scram import ScramVerifier
from piigate.identity.login import DB_CREDENTIAL_PREFIX

__all__ = ["users"]  # a fixture, for pytest


async def test_a_local_user_gets_a_credential_that_is_a_session_of_its_own(
    node: Node, users: Any
) -> None:
    client = await users(node, "alice")
    issued = await client.post("/v1/db-credentials")
    assert issued.status_code == 201, issued.text
    assert issued.headers["cache-control"] == "no-store"
    body = issued.json()
    assert body["subject"] == "alice" and body["password"].startswith(DB_CREDENTIAL_PREFIX)
    token = body["password"][len(DB_CREDENTIAL_PREFIX) :]
    found = await node.services.logins.session_for(token)
    assert found is not None and found.subject.id == "alice"
    # Its user name names the SCRAM-SHA-256 verifier of exactly this password.
    session_id = body["user"].removeprefix("dbc_")
    scram = await node.services.logins.database_session(session_id)
    assert scram is not None and scram[0].subject.id == "alice"
    verifier = ScramVerifier.parse(scram[1])
    expected = ScramVerifier.from_password(body["password"], salt=verifier.salt)
    assert expected == verifier
    assert await node.services.logins.database_session("0" * 16) is None
    other = await client.post("/v1/db-credentials")
    assert other.json()["password"] != body["password"]  # a new session each time
    await node.services.logins.logout(token)
    assert await node.services.logins.session_for(token) is None


async def test_an_api_key_gets_no_database_credential(node: Node) -> None:
    _, key = await node.api_key("app")
    refused = await node.client.post("/v1/db-credentials", headers=bearer(key))
    assert refused.status_code == 403
    assert "password" not in refused.text


async def test_no_credential_without_a_login(node: Node) -> None:
    assert (await node.client.post("/v1/db-credentials")).status_code == 401
