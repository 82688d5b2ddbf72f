"""The lean ``POST /v1/decisions`` path answers exactly as the declared FastAPI route does.

``LeanDecisions`` decides the plain case itself and hands everything else to the declared route
with the body replayed. These tests watch which path served a request (a spy on the hand-off)
and compare the answers of both paths for the same decisions, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_support import Node, bearer, decision_body
from starlette.types import Receive, Scope, Send

from piigate.api.routes.decisions import LeanDecisions

# Ids differ between two decisions; everything else must not.
_VOLATILE = {"decision_id", "challenge"}


class _Spy:
    """Counts the requests the lean route hands to the declared route."""

    def __init__(self, lean: LeanDecisions) -> None:
        self.inner = lean.fallback
        self.calls = 0

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await self.inner.handle(scope, receive, send)


@pytest.fixture
def spy(node: Node, monkeypatch: pytest.MonkeyPatch) -> _Spy:
    lean = node.app.router.routes[0]
    assert isinstance(lean, LeanDecisions)
    watcher = _Spy(lean)
    monkeypatch.setattr(lean, "fallback", watcher)
    return watcher


def _stable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _VOLATILE}


@pytest.mark.parametrize(
    "body",
    [
        decision_body("read", ["phone"]),
        decision_body("read", ["ssn"]),
        decision_body("export", ["ssn", "phone"]),
        decision_body("delete", ["ssn"]),
    ],
)
async def test_both_paths_give_the_same_answer(
    node: Node, api_key: str, spy: _Spy, body: dict[str, Any]
) -> None:
    lean = await node.decide(api_key, body)
    assert spy.calls == 0  # the plain case never reaches the declared route
    # application/merge-patch+json is JSON to FastAPI, but not the lean path's plain case.
    declared = await node.client.post(
        "/v1/decisions",
        content=json.dumps(body),
        headers={**bearer(api_key), "content-type": "application/merge-patch+json"},
    )
    assert spy.calls == 1
    assert lean.status_code == declared.status_code == 200
    assert lean.headers["content-type"] == declared.headers["content-type"]
    assert _stable(lean.json()) == _stable(declared.json())
    assert ("challenge" in lean.json()) == ("challenge" in declared.json())
    events = await node.services.audit.list_events(types=["decision"])
    assert [e.data["decision_id"] for e in events[-2:]] == [
        lean.json()["decision_id"],
        declared.json()["decision_id"],
    ]


async def test_anything_but_the_plain_case_is_answered_by_the_declared_route(
    node: Node, api_key: str, spy: _Spy
) -> None:
    body = decision_body("read", ["ssn"])
    unscoped = (await node.api_key("ops", scopes=["events"]))[1]
    cases = [
        ({"authorization": "Bearer pgk_not_a_key"}, json.dumps(body), 401),
        ({}, json.dumps(body), 401),
        (bearer(unscoped), json.dumps(body), 403),
        (bearer(api_key), "{not json", 400),
        (bearer(api_key), json.dumps({**body, "action": "smile"}), 400),
        (bearer(api_key), json.dumps({**body, "pii": ["not_a_class"]}), 400),
        (bearer(api_key), "", 400),
    ]
    for headers, content, status in cases:
        before = spy.calls
        response = await node.client.post(
            "/v1/decisions",
            content=content,
            headers={**headers, "content-type": "application/json"},
        )
        assert response.status_code == status, (headers, content, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["instance"] == "/v1/decisions"
        # Everything before the policy checks fell back; the unknown PII class is the engine's
        # request check, which both paths run in the same function.
        assert spy.calls == before + (0 if "not_a_class" in content else 1)
    assert await node.services.audit.list_events(types=["decision"]) == []


async def test_other_methods_are_not_claimed(node: Node, spy: _Spy) -> None:
    response = await node.client.get("/v1/decisions")
    assert response.status_code == 405
    assert spy.calls == 0  # routed past the lean route, straight to the declared one
    paths = (await node.client.get("/openapi.json")).json()["paths"]
    assert list(paths["/v1/decisions"]) == ["post"]
