"""The lean ``POST /v1/decisions`` path answers exactly as the declared FastAPI route does.

``LeanDecisions`` (run by ``api/lean.py``'s ``LeanPaths``) decides the plain case itself and
hands everything else to the declared route with the body replayed. These tests watch which
path served a request (a spy on the hand-off) and compare the answers of both paths for the
same decisions, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_support import LeanSpy, Node, bearer, decision_body
from factor_support import PASSWORD
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse

from piigate.api import routes as api_routes
from piigate.api.jsonbody import JsonRoute
from piigate.api.lean import LeanPaths
from piigate.api.routes.decisions import DecisionResponse, LeanDecisions

# Ids differ between two decisions; everything else must not.
_VOLATILE = {"decision_id", "challenge"}


class _Spy(LeanSpy):
    @property
    def calls(self) -> int:
        """Decision requests handed on (answered by the declared route)."""
        return self.handed_on("/v1/decisions")


@pytest.fixture
async def spy(node: Node, monkeypatch: pytest.MonkeyPatch) -> _Spy:
    assert (await node.client.get("/healthz")).status_code == 200  # builds the stack
    lean = node.app.lean
    assert isinstance(lean, LeanPaths)
    assert node.app.middleware_stack is lean  # in front of every middleware
    assert any(isinstance(route, LeanDecisions) for route in lean.routes)
    watcher = _Spy(lean.app)
    monkeypatch.setattr(lean, "app", watcher)
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
    assert spy.passed == [("GET", "/v1/decisions")]  # passed on without reading anything
    paths = (await node.client.get("/openapi.json")).json()["paths"]
    assert list(paths["/v1/decisions"]) == ["post"]


async def test_bodies_without_a_length_or_over_the_cap_go_through_the_middleware(
    node: Node, api_key: str, spy: _Spy
) -> None:
    body = json.dumps(decision_body("read", ["phone"])).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield body[:10]
        yield body[10:]

    chunked = await node.client.post(
        "/v1/decisions",
        content=chunks(),
        headers={**bearer(api_key), "content-type": "application/json"},
    )
    assert chunked.status_code == 200, chunked.text
    assert spy.calls == 1  # no Content-Length: the body cap counts it on the usual path
    padded = {**decision_body("read", ["phone"]), "context": {"pad": "x" * 70_000}}
    oversized = await node.client.post(
        "/v1/decisions",
        content=json.dumps(padded),
        headers={**bearer(api_key), "content-type": "application/json"},
    )
    assert oversized.status_code == 413
    assert oversized.json()["code"] == "payload_too_large"
    assert spy.calls == 2


async def test_errors_after_the_plain_checks_are_the_apps_problems(
    node: Node, api_key: str, spy: _Spy
) -> None:
    future = decision_body("read", ["ssn"])
    future["session"] = {"acr": "aal2", "auth_time": 4_000_000_000}
    response = await node.decide(api_key, future)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["instance"] == "/v1/decisions"
    assert "auth_time" in response.json()["detail"]
    assert spy.calls == 0  # answered on the lean path by the app's own handler


def test_decisions_render_as_starlette_would() -> None:
    body = {
        "decision_id": "dec_x",
        "outcome": "step_up",
        "rules": ["lire-les-numéros", "名前", 'quote " and \\ back', "line\nbreak\u2028"],
        "mask": [],
        "risk": {"score": 45, "signals": ["new_device"]},
        "required": {"level": "aal2", "max_age": 0, "binding": None},
        "challenge": {"id": "chl_x", "expires_at": 1780000000},
    }
    assert DecisionResponse(body).body == JSONResponse(body).body


async def test_a_body_without_a_content_type_is_json_on_both_paths(
    node: Node, api_key: str, spy: _Spy
) -> None:
    body = json.dumps(decision_body("read", ["phone"]))
    lean = await node.client.post("/v1/decisions", content=body, headers=bearer(api_key))
    assert spy.calls == 0
    node.app.middleware_stack = spy  # the declared route alone
    declared = await node.client.post("/v1/decisions", content=body, headers=bearer(api_key))
    assert spy.calls == 1
    assert lean.status_code == declared.status_code == 200, declared.text
    assert _stable(lean.json()) == _stable(declared.json())


async def test_the_decision_event_names_who_asked_on_both_paths(node: Node, spy: _Spy) -> None:
    key_id, key = await node.api_key("orders-app")
    body = decision_body("read", ["phone"])
    lean = (await node.decide(key, body)).json()
    assert spy.calls == 0
    declared = await node.client.post(
        "/v1/decisions",
        content=json.dumps(body),
        headers={**bearer(key), "content-type": "application/merge-patch+json"},
    )
    assert declared.status_code == 200 and spy.calls == 1
    # A person may ask too: an administrator's console session.
    await node.user("root", PASSWORD, ["admin"])
    login = await node.client.post("/v1/login", json={"username": "root", "password": PASSWORD})
    assert login.status_code == 200
    by_session = await node.client.post("/v1/decisions", json=body)
    assert by_session.status_code == 200, by_session.text

    events = {
        e.data["decision_id"]: e.data
        for e in await node.services.audit.list_events(types=["decision"])
    }
    app = {"kind": "api_key", "id": key_id}
    assert events[lean["decision_id"]]["caller"] == app
    assert events[declared.json()["decision_id"]]["caller"] == app
    assert events[by_session.json()["decision_id"]]["caller"] == {
        "kind": "session",
        "id": "root",
        "session_id": login.json()["session_id"],
    }
    trail = json.dumps([dict(e) for e in events.values()])
    assert key not in trail and key.removeprefix("pgk_") not in trail  # the key id, never the key


# Each body repeats one key (at some depth) with two values; the second is an SSN-like value.
DUPLICATED = [
    ('{"subject":{"id":"alice"},"action":"read","action":"delete","pii":["ssn"]}', "action"),
    ('{"subject":{"id":"alice","id":"123-45-6789"},"action":"read","pii":["ssn"]}', "subject.id"),
    (
        '{"subject":{"id":"alice"},"action":"read","pii":["ssn"],'
        '"context":{"ip":"10.0.0.1","device_id":"d","ip":"123-45-6789"}}',
        "context.ip",
    ),
]


@pytest.mark.parametrize(("content", "path"), DUPLICATED)
async def test_duplicate_keys_are_refused_on_both_paths(
    node: Node, api_key: str, spy: _Spy, content: str, path: str
) -> None:
    """RFC 8259 §4 leaves a repeated key to the parser: one that keeps the first value would see
    another request than piigate, which kept the last. Refused, naming the key, not a value."""
    for content_type, handed_over in (
        ("application/json", 1),  # the lean path does not decide it: the declared route answers
        ("application/merge-patch+json", 2),
    ):
        response = await node.client.post(
            "/v1/decisions",
            content=content,
            headers={**bearer(api_key), "content-type": content_type},
        )
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["detail"] == f"{path}: duplicate key"
        assert problem["errors"] == [{"field": path, "message": "duplicate key"}]
        assert "123-45-6789" not in response.text and "delete" not in response.text
        assert spy.calls == handed_over
    assert await node.services.audit.list_events(types=["decision"]) == []


async def test_a_duplicate_key_is_refused_in_other_bodies(node: Node) -> None:
    await node.user("alice", PASSWORD)
    login = await node.client.post(
        "/v1/login",
        content=f'{{"username":"alice","password":"{PASSWORD}","username":"mallory"}}',
        headers={"content-type": "application/json"},
    )
    assert login.status_code == 400
    assert login.json()["errors"] == [{"field": "username", "message": "duplicate key"}]
    assert PASSWORD not in login.text and "mallory" not in login.text
    assert "piigate_session" not in node.client.cookies


def test_every_route_reads_json_bodies_without_duplicates() -> None:
    routes = [
        route
        for info in pkgutil.iter_modules(api_routes.__path__)
        for route in importlib.import_module(f"{api_routes.__name__}.{info.name}").router.routes
        if isinstance(route, APIRoute)
    ]
    assert len(routes) > 20
    assert all(isinstance(r, JsonRoute) for r in routes), [
        r.path for r in routes if not isinstance(r, JsonRoute)
    ]
