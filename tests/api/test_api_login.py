"""``POST /v1/login``: vague failures, throttling with Retry-After, and an audit without secrets."""

from __future__ import annotations

import asyncio
import json

from api_support import PROBLEM, Node
from sqlalchemy import select

from piigate.store.tables import audit_events

PASSWORD = "correct horse battery staple"
WRONG = "Tr0ub4dor&3-not-it"


async def login(node: Node, username: str, password: str) -> tuple[int, dict[str, str], str]:
    body = {"username": username, "password": password}
    response = await node.client.post("/v1/login", json=body)
    node.client.cookies.clear()
    return response.status_code, dict(response.headers), response.text


async def raw_audit(node: Node) -> str:
    async with node.services.db.connect() as conn:
        rows = (await conn.execute(select(audit_events))).all()
    return json.dumps([list(map(str, row)) for row in rows])


async def test_wrong_password_and_unknown_user_look_the_same(node: Node) -> None:
    await node.user("alice", PASSWORD)
    status, headers, text = await login(node, "alice", WRONG)
    status2, _, text2 = await login(node, "nobody", WRONG)
    assert status == status2 == 401
    assert headers["content-type"].startswith(PROBLEM)
    assert json.loads(text)["detail"] == json.loads(text2)["detail"]
    assert json.loads(text)["detail"] == "invalid username or password"
    assert WRONG not in text
    status, _, text = await login(node, "alice", PASSWORD)
    assert status == 200, text


async def test_repeated_failures_are_throttled_and_audited(node: Node) -> None:
    await node.user("alice", PASSWORD)
    await node.user("bob", PASSWORD)
    for _ in range(6):
        status, _, _ = await login(node, "alice", WRONG)
        assert status == 401
    status, headers, text = await login(node, "alice", WRONG)
    assert status == 429, text
    assert headers["content-type"].startswith(PROBLEM)
    assert int(headers["retry-after"]) >= 1
    assert WRONG not in text
    # While locked, even the right password is refused without being checked ...
    status, headers, _ = await login(node, "alice", PASSWORD)
    assert status == 429
    # ... but only for that user.
    assert (await login(node, "bob", PASSWORD))[0] == 200
    # Once the back-off is over, the right password works and clears the count.
    node.clock.advance(int(headers["retry-after"]))
    status, headers, text = await login(node, "alice", PASSWORD)
    assert status == 200, text
    token = headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert len(token) > 20
    status, _, _ = await login(node, "alice", WRONG)
    assert status == 401

    events = await node.services.audit.list_events(subject_id="alice", limit=1000)
    types = [e.type for e in events]
    assert types.count("login_failed") == 7
    assert types.count("login_throttled") == 2
    assert types.count("login_succeeded") == 1
    failed = next(e for e in events if e.type == "login_failed")
    assert set(failed.data) == {"ip_key"}  # the address by its keyed hash only
    throttled = next(e for e in events if e.type == "login_throttled")
    assert throttled.data["retry_after"] >= 1  # type: ignore[operator]
    stored = await raw_audit(node)
    assert WRONG not in stored and PASSWORD not in stored
    # The session token is not in the audit either (only a prefix of its hash).
    assert token not in stored
    assert (await node.services.audit.verify()).ok


async def test_login_input_is_validated(node: Node) -> None:
    response = await node.client.post("/v1/login", json={"username": "alice"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "password"
    response = await node.client.post(
        "/v1/login", json={"username": "alice", "password": WRONG, "otp": "123456"}
    )
    assert response.status_code == 400
    assert WRONG not in response.text and "123456" not in response.text


async def test_parallel_guesses_cannot_outrun_the_throttle(node: Node) -> None:
    await node.user("alice", PASSWORD)

    async def guess() -> int:
        body = {"username": "alice", "password": WRONG}
        return (await node.client.post("/v1/login", json=body)).status_code

    statuses = await asyncio.gather(*(guess() for _ in range(30)))
    assert set(statuses) <= {401, 429}
    # Only the free failures and the one that starts the back-off reach the password check.
    assert 1 <= statuses.count(401) <= 6, statuses
    failed = await node.services.audit.list_events(types=["login_failed"])
    assert len(failed) == statuses.count(401)
