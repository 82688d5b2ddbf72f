"""The lean ``POST /v1/challenges/{id}/verify`` path answers exactly as the declared route does.

An app relaying its user's proof with its API key is the plain case, which ``LeanVerify`` (run
by ``api/lean.py``'s ``LeanPaths``) answers itself; everything else reaches the declared route
with the body replayed. A spy on the hand-off tells which path served a request; the answers
of both paths are compared for the same situations, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

import httpx
import pytest
from api_support import LeanSpy, Node, bearer
from factor_support import Users, challenge, enroll_totp, totp_code, users, verify, wrong

from piigate.api.routes.verify import LeanVerify

__all__ = ["users"]  # the fixture, re-exported for pytest

# Declared by the route, JSON to FastAPI, but not the lean path's plain case.
_DECLARED_JSON = "application/merge-patch+json"


@pytest.fixture
async def spy(node: Node, monkeypatch: pytest.MonkeyPatch) -> LeanSpy:
    assert (await node.client.get("/healthz")).status_code == 200  # builds the stack
    lean = node.app.lean
    assert lean is not None and any(isinstance(r, LeanVerify) for r in lean.routes)
    watcher = LeanSpy(lean.app)
    monkeypatch.setattr(lean, "app", watcher)
    return watcher


async def _relay(
    node: Node, key: str, challenge_id: str, body: object, *, declared: bool = False
) -> httpx.Response:
    content_type = _DECLARED_JSON if declared else "application/json"
    return await node.client.post(
        f"/v1/challenges/{challenge_id}/verify",
        content=json.dumps(body),
        headers={**bearer(key), "content-type": content_type},
    )


def _path(challenge_id: str) -> str:
    return f"/v1/challenges/{challenge_id}/verify"


async def test_a_relayed_code_is_verified_on_the_lean_path(
    node: Node, api_key: str, users: Users, spy: LeanSpy
) -> None:
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    first = await challenge(node, api_key)
    lean = await _relay(node, api_key, first, {"method": "totp", "code": totp_code(node, secret)})
    assert spy.handed_on(_path(first)) == 0
    node.clock.advance(30)  # a fresh code for the second challenge
    second = await challenge(node, api_key)
    code = totp_code(node, secret)
    declared = await _relay(node, api_key, second, {"method": "totp", "code": code}, declared=True)
    assert spy.handed_on(_path(second)) == 1

    assert lean.status_code == declared.status_code == 200, lean.text
    for name in ("content-type", "cache-control"):
        assert lean.headers[name] == declared.headers[name]
    assert lean.headers["cache-control"] == "no-store"
    volatile = {"grant", "expires_at"}
    assert {k: v for k, v in lean.json().items() if k not in volatile} == {
        k: v for k, v in declared.json().items() if k not in volatile
    }
    verified = await node.services.audit.list_events(types=["challenge_verified"])
    assert [e.data["challenge_id"] for e in verified] == [first, second]


async def test_refusals_are_the_same_problems_on_both_paths(
    node: Node, api_key: str, users: Users, spy: LeanSpy
) -> None:
    _, other_key = await node.api_key("other-app")
    answers: dict[bool, list[httpx.Response]] = {}
    for declared, name in ((False, "alice"), (True, "bob")):  # a factor each: same back-off
        _, secret = await enroll_totp(node, await users(node, name))
        challenge_id = await challenge(node, api_key, subject=name)
        bad = {"method": "totp", "code": wrong(totp_code(node, secret))}
        good = {"method": "totp", "code": totp_code(node, secret)}
        answers[declared] = [
            await _relay(node, api_key, challenge_id, bad, declared=declared),  # 401
            await _relay(node, api_key, challenge_id, good, declared=declared),  # 429 back-off
            await _relay(node, other_key, challenge_id, good, declared=declared),  # 404
            await _relay(node, api_key, "chl_unknown", good, declared=declared),  # 404
        ]
    assert spy.handed_on(_path("chl_unknown")) == 1  # the declared round only

    for lean, declared_answer in zip(answers[False], answers[True], strict=True):
        assert lean.status_code == declared_answer.status_code
        assert lean.headers["content-type"] == "application/problem+json"
        assert lean.headers.get("retry-after") == declared_answer.headers.get("retry-after")
        lean_body, declared_body = lean.json(), declared_answer.json()
        assert lean_body.pop("instance").startswith("/v1/challenges/")
        assert declared_body.pop("instance").startswith("/v1/challenges/")
        assert lean_body == declared_body
    assert [r.status_code for r in answers[False]] == [401, 429, 404, 404]


async def test_anything_but_the_plain_case_reaches_the_declared_route(
    node: Node, api_key: str, users: Users, spy: LeanSpy
) -> None:
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    challenge_id = await challenge(node, api_key)
    path = _path(challenge_id)
    cases: list[tuple[dict[str, str], str, int]] = [
        ({"authorization": "Bearer pgk_not_a_key"}, '{"method": "totp", "code": "1"}', 401),
        ({}, '{"method": "totp", "code": "123456"}', 401),
        (bearer(api_key), "{not json", 400),
        (bearer(api_key), '{"method": ""}', 400),
        (bearer(api_key), "", 400),
    ]
    for headers, content, status in cases:
        before = spy.handed_on(path)
        response = await node.client.post(
            path, content=content, headers={**headers, "content-type": "application/json"}
        )
        assert response.status_code == status, (headers, content, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert spy.handed_on(path) == before + 1
    # The user's own session is the declared route's, and verifies there.
    before = spy.handed_on(path)
    ok = await verify(alice, challenge_id, totp_code(node, secret))
    assert ok.status_code == 200, ok.text
    assert spy.handed_on(path) == before + 1
    # Other methods and nested paths are not claimed.
    assert (await node.client.get(path, headers=bearer(api_key))).status_code == 405
    assert spy.handed_on(path, "GET") == 1


async def test_a_proof_with_a_repeated_key_is_refused_on_both_paths(
    node: Node, api_key: str, users: Users, spy: LeanSpy
) -> None:
    """{"code": wrong, "code": right}: one parser would check the first, another the last."""
    alice = await users(node, "alice")
    _, secret = await enroll_totp(node, alice)
    challenge_id = await challenge(node, api_key)
    code = totp_code(node, secret)
    content = f'{{"method":"totp","code":"{wrong(code)}","code":"{code}"}}'
    for content_type, handed_on in (("application/json", 1), (_DECLARED_JSON, 2)):
        response = await node.client.post(
            _path(challenge_id),
            content=content,
            headers={**bearer(api_key), "content-type": content_type},
        )
        assert response.status_code == 400, response.text
        assert response.json()["errors"] == [{"field": "code", "message": "duplicate key"}]
        assert response.json()["detail"] == "code: duplicate key"  # the key, never a value
        assert spy.handed_on(_path(challenge_id)) == handed_on
    assert await node.services.audit.list_events(types=["verification_failed"]) == []
    assert await node.services.audit.list_events(types=["challenge_verified"]) == []
