"""Bad input gets an RFC 9457 problem that names the field and never echoes the value sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from api_support import FAKE_SSN, PROBLEM, Node, StartNode, bearer, decision_body

from loopback_support import serve_uvicorn


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    assert FAKE_SSN not in response.text
    return body


async def post_raw(node: Node, key: str, content: Any) -> httpx.Response:
    headers = {**bearer(key), "Content-Type": "application/json"}
    return await node.client.post("/v1/decisions", content=content, headers=headers)


async def test_malformed_json(node: Node, api_key: str) -> None:
    response = await post_raw(node, api_key, b'{"subject": {"id": "' + FAKE_SSN.encode() + b'"')
    body = assert_problem(response, 400)
    assert "malformed JSON" in body["detail"]
    assert body["instance"] == "/v1/decisions"


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"pii": ["ssn", FAKE_SSN]}, "pii"),
    ({"action": FAKE_SSN}, "action"),
    ({"nickname": FAKE_SSN}, "nickname"),
    ({"context": {"ip": FAKE_SSN}}, "context.ip"),
    ({"session": {"auth_time": FAKE_SSN}}, "session.auth_time"),
    ({"subject": {"id": FAKE_SSN, "role": FAKE_SSN}}, "subject.role"),
    ({"transaction": {"amount": FAKE_SSN}}, "transaction.amount"),
    ({"action": "transact"}, "transaction"),
]


async def test_bad_field_is_named_and_its_value_not_echoed(node: Node, api_key: str) -> None:
    for change, field in BAD_FIELDS:
        body = {**decision_body(subject=FAKE_SSN), **change}
        problem = assert_problem(await node.decide(api_key, body), 400)
        named = problem.get("field") or problem["errors"][0]["field"]
        assert named.startswith(field), (field, problem)
        assert field in problem["detail"], problem
    assert await node.services.audit.list_events(types=["decision"]) == []


async def test_missing_required_fields(node: Node, api_key: str) -> None:
    problem = assert_problem(await node.decide(api_key, {"pii": ["ssn"]}), 400)
    fields = {e["field"] for e in problem["errors"]}
    assert {"subject", "action"} <= fields


async def test_body_over_limit_with_content_length(start_node: StartNode) -> None:
    node = await start_node(max_body_bytes=300)
    _, key = await node.api_key()
    body = decision_body(context={"user_agent": FAKE_SSN * 40})
    assert len(json.dumps(body)) > 300
    problem = assert_problem(await node.decide(key, body), 413)
    assert problem["code"] == "payload_too_large"
    # Just under the limit still works.
    assert (await node.decide(key, decision_body())).status_code == 200


async def test_body_over_limit_chunked(start_node: StartNode) -> None:
    node = await start_node(max_body_bytes=300)
    _, key = await node.api_key()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"subject": {"id": "alice"}, "action": "read", "context": {"user_agent": "'
        for _ in range(20):
            yield FAKE_SSN.encode() * 4
        yield b'"}}'

    response = await post_raw(node, key, chunks())
    assert "content-length" not in {k.lower() for k in response.request.headers}
    problem = assert_problem(response, 413)
    assert problem["code"] == "payload_too_large"
    # The same over a real socket (Transfer-Encoding: chunked through uvicorn).
    async with serve_uvicorn(node.app) as base, httpx.AsyncClient(base_url=base) as client:
        headers = {**bearer(key), "Content-Type": "application/json"}
        response = await client.post("/v1/decisions", content=chunks(), headers=headers)
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert assert_problem(response, 413)["code"] == "payload_too_large"
    # Nothing was decided.
    assert await node.services.audit.list_events(types=["decision"]) == []


async def test_unknown_route_and_method_are_problems(node: Node, api_key: str) -> None:
    response = await node.client.get(f"/v1/nothing/{FAKE_SSN}")
    assert assert_problem(response, 404)["instance"] == "/v1/nothing/%5Bredacted%5D"
    response = await node.client.get("/v1/decisions", headers=bearer(api_key))
    assert assert_problem(response, 405)["instance"] == "/v1/decisions"


async def test_the_instance_is_the_path_asked_for(node: Node, api_key: str) -> None:
    """RFC 9457 ``instance``: the request's own path (not the route's template), without the
    query; what looks like an identity number, a code or a token is redacted from it."""
    response = await node.client.get(
        "/v1/challenges/chl_4xTq2-nope?debug=1", headers=bearer(api_key)
    )
    assert assert_problem(response, 404)["instance"] == "/v1/challenges/chl_4xTq2-nope"
    response = await node.client.get(f"/v1/challenges/{FAKE_SSN}", headers=bearer(api_key))
    assert assert_problem(response, 404)["instance"] == "/v1/challenges/%5Bredacted%5D"
    response = await node.client.post("/v1/challenges/chl_x/verify", json={"method": "totp"})
    assert assert_problem(response, 401)["instance"] == "/v1/challenges/chl_x/verify"


async def test_bad_query_parameter_is_a_problem(node: Node) -> None:
    _, key = await node.api_key(scopes=["events"])
    response = await node.client.get(f"/v1/events?after={FAKE_SSN}", headers=bearer(key))
    problem = assert_problem(response, 400)
    assert problem["errors"][0]["field"] == "query.after"


async def test_out_of_range_sequence_numbers_are_bad_requests(node: Node) -> None:
    _, key = await node.api_key(scopes=["events"])
    huge = str(2**70)
    response = await node.client.get(f"/v1/events?after={huge}", headers=bearer(key))
    assert assert_problem(response, 400)["errors"][0]["field"] == "query.after"
    response = await node.client.get(f"/v1/events/stream?after={huge}", headers=bearer(key))
    assert_problem(response, 400)
    response = await node.client.get("/v1/events?after=-1", headers=bearer(key))
    assert_problem(response, 400)
    response = await node.client.get("/v1/events?limit=5000", headers=bearer(key))
    assert_problem(response, 400)
