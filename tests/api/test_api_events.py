"""Monitoring (CONTRACT §4.5): audit events by page and live over SSE; metrics, OpenAPI, JWKS."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
from api_support import Node, bearer, decision_body

from loopback_support import serve_uvicorn


async def test_events_paging_and_filtering(node: Node, api_key: str) -> None:
    _, reader = await node.api_key("auditor", scopes=["events"])
    ids = []
    for i in range(5):
        body = (
            await node.decide(api_key, decision_body("read", ["phone"], subject=f"u{i}"))
        ).json()
        ids.append(body["decision_id"])

    page = await node.client.get("/v1/events", headers=bearer(reader))
    assert page.status_code == 200
    everything = page.json()["events"]
    assert [e["type"] for e in everything[:2]] == ["keyring_created", "service_started"]
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert {"seq", "type", "at", "subject", "data", "hash"} <= set(everything[0])

    seen: list[str] = []
    after = 0
    for _ in range(10):
        response = await node.client.get(
            "/v1/events",
            params={"after": after, "type": "decision", "limit": 2},
            headers=bearer(reader),
        )
        body = response.json()
        if not body["events"]:
            assert body["next_after"] == after
            break
        assert len(body["events"]) <= 2
        assert all(e["type"] == "decision" for e in body["events"])
        assert all(e["seq"] > after for e in body["events"])
        seen += [e["data"]["decision_id"] for e in body["events"]]
        after = body["next_after"]
    assert seen == ids

    by_subject = await node.client.get(
        "/v1/events", params={"subject": "u3"}, headers=bearer(reader)
    )
    assert [e["data"]["decision_id"] for e in by_subject.json()["events"]] == [ids[3]]


async def test_events_need_the_events_scope(node: Node, api_key: str) -> None:
    response = await node.client.get("/v1/events", headers=bearer(api_key))
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
    assert 'scope="events"' in response.headers["www-authenticate"]
    assert (await node.client.get("/v1/events")).status_code == 401
    stream = await node.client.get("/v1/events/stream", headers=bearer(api_key))
    assert stream.status_code == 403
    # An admin role stands in for the scope.
    _, admin = await node.api_key("admin", scopes=[], roles=["admin"])
    assert (await node.client.get("/v1/events", headers=bearer(admin))).status_code == 200


class SseReader:
    """Reads events off one SSE response, as ``{"id", "event", "data"}`` dicts."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, count: int) -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = []
        current: dict[str, Any] = {}
        async for line in self.lines:
            if line == "":
                if "data" in current:
                    frames.append(current)
                    if len(frames) == count:
                        return frames
                current = {}
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                current["data"] = json.loads(value)
            elif field in ("id", "event"):
                current[field] = value
        raise AssertionError(f"stream ended after {len(frames)} events")


async def test_sse_stream_delivers_existing_and_new_events(node: Node, api_key: str) -> None:
    _, reader = await node.api_key("watcher", scopes=["events"])
    first = (await node.decide(api_key, decision_body("read", ["phone"]))).json()
    async with serve_uvicorn(node.app) as base, httpx.AsyncClient(base_url=base) as client:
        async with asyncio.timeout(10):
            async with client.stream(
                "GET", "/v1/events/stream", params={"after": 0}, headers=bearer(reader)
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                sse = SseReader(response)
                frames = await sse.next(3)
                assert [f["event"] for f in frames] == [
                    "keyring_created",
                    "service_started",
                    "decision",
                ]
                assert [f["id"] for f in frames] == ["1", "2", "3"]
                assert frames[2]["data"]["data"]["decision_id"] == first["decision_id"]
                assert frames[2]["data"]["seq"] == 3

                # Appended after the stream started: pushed without a new request.
                later = (await node.decide(api_key, decision_body("update", ["ssn"]))).json()
                (frame,) = await sse.next(1)
                assert frame["event"] == "decision" and frame["id"] == "4"
                assert frame["data"]["data"]["decision_id"] == later["decision_id"]


async def test_sse_stream_filters_by_type_and_starts_at_the_head(node: Node, api_key: str) -> None:
    _, reader = await node.api_key("watcher", scopes=["events"])
    await node.decide(api_key, decision_body("read", ["phone"]))
    async with serve_uvicorn(node.app) as base, httpx.AsyncClient(base_url=base) as client:
        async with asyncio.timeout(10):
            async with client.stream(
                "GET", "/v1/events/stream", params={"type": "decision"}, headers=bearer(reader)
            ) as response:
                assert response.status_code == 200
                await node.services.audit.record("not_a_decision")
                later = (await node.decide(api_key, decision_body("delete", ["ssn"]))).json()
                (frame,) = await SseReader(response).next(1)
                assert frame["event"] == "decision"
                assert frame["data"]["data"]["decision_id"] == later["decision_id"]


async def test_metrics_count_decisions_by_outcome(node: Node, api_key: str) -> None:
    await node.decide(api_key, decision_body("update", ["ssn"]))
    await node.decide(api_key, decision_body("read", ["phone"]))
    response = await node.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert re.search(r'^piigate_decisions_total\{outcome="step_up"\} 1\.0$', text, re.M)
    assert re.search(r'^piigate_decisions_total\{outcome="allow"\} 1\.0$', text, re.M)
    assert 'rule="edit-identity-numbers"' in text
    assert "piigate_policy_loaded 1.0" in text


async def test_openapi_lists_the_api(node: Node) -> None:
    response = await node.client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "post" in paths["/v1/decisions"]
    assert {"/v1/events", "/v1/events/stream", "/v1/login", "/readyz", "/metrics"} <= set(paths)


async def test_jwks_publishes_the_grant_signing_key(node: Node) -> None:
    response = await node.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    kids = {k["kid"] for k in keys}
    assert node.services.keyring.signing_kid in kids
    for key in keys:
        assert key["kty"] == "EC" and key["alg"] == "ES256"
        assert "d" not in key  # never the private part


async def test_sse_resumes_after_last_event_id(node: Node, api_key: str) -> None:
    _, reader = await node.api_key("watcher", scopes=["events"])
    await node.decide(api_key, decision_body("read", ["phone"]))
    async with serve_uvicorn(node.app) as base, httpx.AsyncClient(base_url=base) as client:
        for last_id, first in (("2", "3"), ("²", "1"), (str(2**80), "1"), ("x", "1")):
            # Header bytes are latin-1 to the server: b"\xb2" arrives as "²", which isdigit().
            headers = {**bearer(reader), "Last-Event-ID": last_id.encode("latin-1")}
            async with asyncio.timeout(10):
                async with client.stream(
                    "GET", "/v1/events/stream", params={"after": 0}, headers=headers
                ) as response:
                    assert response.status_code == 200, last_id
                    (frame,) = await SseReader(response).next(1)
                    assert frame["id"] == first, last_id
