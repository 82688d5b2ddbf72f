"""``PiigateMiddleware`` in front of an app's own endpoints, with the node's engine in this
process: the gateway's routes (no upstream), JSON answers masked as the proxy masks them, bodies
decided on and replayed, the verified subject in place of the client's, and every refusal
(step-up, no token, no route, an answer it cannot mask, rate limits, WebSockets)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from api_support import PROBLEM, Node, bearer
from integration_support import Token, Who, serve
from jwt_support import AUDIENCE, ISSUER, JwksServer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from piigate.gateway.http.assemble import in_process
from piigate.gateway.http.config import HttpGatewayConfig, load_gateway_config_text
from piigate.gateway.http.deciders import EngineDecider
from piigate.integrations import PiigateMiddleware

ROUTES = """\
gateway:
  http:
    default: deny
    routes:
      - match: {method: GET, path: "/customers/{id}"}
        action: read
        resource: {type: customer, id: "{id}"}
        response_fields: {"$.ssn": ssn, "$.phone": phone}
      - match: {method: PUT, path: "/customers/{id}"}
        action: update
        resource: {type: customer, id: "{id}"}
        request_fields: {"$.ssn": ssn, "$.phone": phone}
      - match: {method: GET, path: "/text"}
        action: read
        response_fields: {"$.ssn": ssn}
"""
# A number no float holds, to show the masked answer keeps every other value as written.
CUSTOMER = (
    b'{"id":"42","ssn":"123-45-6789","phone":"+16502530042","balance":12345678901234567890.10}'
)


class Upstream:
    """The protected app; counts the requests that reach it."""

    def __init__(self) -> None:
        self.calls = 0

    def app(self) -> Starlette:
        # It compresses what it can: an answer to mask must be asked for uncompressed.
        return Starlette(
            routes=[
                Route("/customers/{id}", self.customer, methods=["GET"]),
                Route("/customers/{id}", self.edit, methods=["PUT"]),
                Route("/text", self.text),
            ],
            middleware=[Middleware(GZipMiddleware, minimum_size=1)],
        )

    async def customer(self, request: Request) -> Response:
        self.calls += 1
        return Response(CUSTOMER, media_type="application/json")

    async def edit(self, request: Request) -> Response:
        self.calls += 1
        headers = request.headers
        return JSONResponse(
            {
                "body": (await request.body()).decode(),
                "subject": headers.getlist("piigate-subject"),
                "level": headers.get("piigate-level"),
                "grant": headers.get("piigate-grant"),
            }
        )

    async def text(self, request: Request) -> Response:
        self.calls += 1
        return PlainTextResponse("ssn 123-45-6789")


def config(node: Node, text: str = ROUTES) -> HttpGatewayConfig:
    policy = node.services.policy.current
    assert policy is not None
    return load_gateway_config_text(text, policy, upstream=False)


@pytest.fixture
async def guarded(node: Node, who: Who) -> AsyncIterator[tuple[httpx.AsyncClient, Upstream]]:
    """The app behind the middleware: the node's engine and its API keys, and the IdP."""
    upstream = Upstream()
    engine, api_keys = in_process(node.services)
    app = PiigateMiddleware(
        upstream.app(), routes=config(node), engine=engine, api_keys=api_keys, **who
    )
    async with contextlib.AsyncExitStack() as stack:
        yield await serve(app, stack), upstream


async def test_a_json_answer_is_masked_as_the_proxy_masks_it(
    guarded: tuple[httpx.AsyncClient, Upstream], token: Token
) -> None:
    client, _ = guarded
    gzip = {"Accept-Encoding": "gzip"}
    masked = await client.get("/customers/42", headers={**bearer(token()), **gzip})
    assert masked.status_code == 200, masked.text
    assert "content-encoding" not in masked.headers
    assert masked.json()["ssn"] == "***-**-6789"
    assert masked.json()["phone"] == "+16502530042"  # no rule hides a phone number
    assert "12345678901234567890.10" in masked.text
    assert masked.headers["piigate-masked"] == "ssn"
    assert masked.headers["piigate-unlock"].startswith('acr_values="urn:piigate:aal2", max_age=300')
    assert masked.headers["content-length"] == str(len(masked.content))
    proven = await client.get(
        "/customers/42", headers={**bearer(token(acr="urn:piigate:aal2")), **gzip}
    )
    assert proven.content == CUSTOMER and "piigate-masked" not in proven.headers
    assert proven.headers["content-encoding"] == "gzip"  # nothing to mask: as the app sent it


async def test_a_body_is_decided_on_then_replayed_with_the_verified_subject(
    guarded: tuple[httpx.AsyncClient, Upstream], token: Token
) -> None:
    client, upstream = guarded
    headers = {**bearer(token()), "PIIGate-Subject": "mallory", "PIIGate-Grant": "g"}
    plain = b'{"name": "Ann",  "note": 1.50}'
    edited = await client.put("/customers/42", content=plain, headers=headers)
    assert edited.status_code == 200, edited.text
    seen = edited.json()
    assert seen["body"] == plain.decode()  # as sent, byte for byte
    assert seen["subject"] == ["alice"] and seen["grant"] is None
    assert seen["level"] == "aal1"  # what her IdP token proves
    calls = upstream.calls
    ssn = json.dumps({"name": "Ann", "ssn": "987-65-4321"})
    refused = await client.put("/customers/42", content=ssn, headers=bearer(token()))
    assert refused.status_code == 401 and refused.headers["content-type"] == PROBLEM
    assert refused.json()["challenge"]["id"].startswith("chl_")
    assert upstream.calls == calls  # the app never saw it


async def test_refusals_never_reach_the_app(
    node: Node, guarded: tuple[httpx.AsyncClient, Upstream], token: Token
) -> None:
    client, upstream = guarded
    unmaskable = await client.get("/text", headers=bearer(token()))
    assert unmaskable.status_code == 500 and unmaskable.headers["content-type"] == PROBLEM
    assert unmaskable.json()["code"] == "answer_not_maskable"
    assert "6789" not in unmaskable.text
    calls = upstream.calls
    assert (await client.get("/customers/42")).status_code == 401
    assert (await client.get("/customers/42", headers=bearer("pgk_wrong"))).status_code == 401
    assert (await client.get("/nowhere", headers=bearer(token()))).status_code == 403
    assert (await client.get("/customers/%2e%2e/x", headers=bearer(token()))).status_code == 400
    assert upstream.calls == calls
    # The node's API keys are accepted (api_keys=): a service account reads, masked.
    _, key = await node.api_key("reporting")
    service = await client.get("/customers/42", headers=bearer(key))
    assert service.status_code == 200 and service.json()["ssn"] == "***-**-6789"


async def test_a_websocket_on_a_guarded_path_is_closed(node: Node, who: Who) -> None:
    reached: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    engine = EngineDecider(node.services.engine, node.settings.public_url)
    open_routes = ROUTES.replace("default: deny", "default: pass")
    app = PiigateMiddleware(inner, routes=config(node, open_routes), engine=engine, **who)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    for path in ("/customers/42", "/chat"):
        scope = {"type": "websocket", "path": path, "raw_path": path.encode(), "headers": []}
        await app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert reached == ["/chat"]


@pytest.mark.parametrize("store", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_the_configured_rate_limits_are_counted(
    node: Node, who: Who, token: Token, store: str, request: pytest.FixtureRequest
) -> None:
    where = "memory" if store == "memory" else request.getfixturevalue("redis_url")
    limited = ROUTES.replace(
        "    default: deny\n", f"    rate_limit: {{per_subject: 2/m, store: '{where}'}}\n"
    )
    engine = EngineDecider(node.services.engine, node.settings.public_url)
    app = PiigateMiddleware(Upstream().app(), routes=config(node, limited), engine=engine, **who)
    subject = f"user-{uuid.uuid4().hex}"  # a count of its own in a Redis that outlives the test
    async with contextlib.AsyncExitStack() as stack:
        client = await serve(app, stack)
        answers = [
            await client.get("/customers/42", headers=bearer(token(sub=subject))) for _ in range(3)
        ]
        await app.aclose()  # what the app's lifespan shutdown does
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "ratelimit" in answers[0].headers and answers[2].headers["retry-after"]


async def test_the_identity_section_names_the_idp(
    node: Node, jwks_server: JwksServer, token: Token
) -> None:
    idp = f"    identity: {{issuer: {ISSUER}, audience: {AUDIENCE}, jwks_url: {jwks_server.url}}}\n"
    routes = config(node, ROUTES.replace("    default: deny\n", idp))
    engine = EngineDecider(node.services.engine, node.settings.public_url)
    app = PiigateMiddleware(Upstream().app(), routes=routes, engine=engine, clock=node.clock)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(app.aclose)
        client = await serve(app, stack)
        masked = await client.get("/customers/42", headers=bearer(token()))
    assert masked.status_code == 200 and masked.json()["ssn"] == "***-**-6789"
    with pytest.raises(ValueError, match="who calls"):
        PiigateMiddleware(Upstream().app(), routes=config(node), engine=engine)


async def test_the_gate_closes_with_the_app_s_lifespan(node: Node, who: Who) -> None:
    engine = EngineDecider(node.services.engine, node.settings.public_url)
    limited = ROUTES.replace("    default: deny\n", "    rate_limit: {per_ip: 5/m}\n")
    app = PiigateMiddleware(Upstream().app(), routes=config(node, limited), engine=engine, **who)
    assert app._assembled.closers
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert not app._assembled.closers  # closed
