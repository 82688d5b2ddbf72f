"""The reverse proxy and the audit of its decisions: a safe request is forwarded while its
decision's audit event commits, yet nothing of the answer leaves before that commit; a failed
commit is a 503 and the upstream's answer is dropped; any other request reaches the upstream
only once its decision is audited. A scripted decider stands in for the engine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from loopback_support import free_port, serve_uvicorn
from piigate.callers import Caller
from piigate.clock import SystemClock
from piigate.gateway.http.config import load_gateway_config_text
from piigate.gateway.http.gate import Gate, GatewayCallers
from piigate.gateway.http.proxy import HttpGateway
from piigate.gateway.http.routes import Route as RouteDef
from piigate.gateway.http.upstream import Upstream, UpstreamAnswer
from piigate.gateway.http.verdict import Audited, Verdict
from piigate.model import AccessRequest, Outcome
from piigate.policy.holder import PolicyHolder
from piigate.store.db import StoreUnavailable

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
MARKER = "900-12-3456"
ROUTES = """\
gateway:
  http:
    upstream: {upstream}
    routes:
      - match: {{method: [GET, PUT], path: "/record"}}
        action: read
        response_fields: {{"$.ssn": ssn}}
      - match: {{method: [GET, PUT], path: "/open"}}
        action: read
      - match: {{method: GET, path: "/text"}}
        action: read
        response_fields: {{"$.ssn": ssn}}
"""
ALLOW = Verdict("dec_1", Outcome.ALLOW, level="aal1")
MASKED = replace(
    ALLOW,
    mask=frozenset({"ssn"}),
    required_level="aal2",
    acr_values=("urn:piigate:aal2",),
    max_age=300,
    challenge={"id": "chl_early"},
)
STEP_UP = Verdict(
    "dec_1", Outcome.STEP_UP, required_level="aal2", acr_values=("urn:piigate:aal2",), max_age=0
)


@dataclass
class ScriptedDecider:
    """Decides ``early``; the verdict as audited is ``audited`` (or the failure ``fails``),
    given once ``release`` is set."""

    early: Verdict = ALLOW
    audited: Verdict | None = None
    fails: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def decide(self, request: AccessRequest, caller: Caller) -> Verdict:
        return await self._audited()

    async def decide_early(self, request: AccessRequest, caller: Caller) -> tuple[Verdict, Audited]:
        return self.early, self._audited

    async def _audited(self) -> Verdict:
        await self.release.wait()
        if self.fails:
            raise StoreUnavailable("the audit event could not be stored")
        return self.audited or self.early


@dataclass
class Rig:
    client: httpx.AsyncClient
    decider: ScriptedDecider
    seen: list[str]  # the requests the upstream received
    reached: asyncio.Event  # set by the upstream's first request
    gateway: HttpGateway


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    seen: list[str] = []
    reached = asyncio.Event()

    async def record(request: Request) -> Response:
        seen.append(f"{request.method} {request.url.path}")
        reached.set()
        return JSONResponse({"ssn": MARKER})

    async def text(request: Request) -> Response:
        seen.append(f"{request.method} {request.url.path}")
        return PlainTextResponse(f"ssn={MARKER}")

    app = Starlette(
        routes=[
            *(Route(p, record, methods=["GET", "PUT"]) for p in ("/record", "/open")),
            Route("/text", text),
        ]
    )
    holder = PolicyHolder.from_file(str(EXAMPLES / "policy.yaml"))
    assert holder.current is not None
    decider = ScriptedDecider()

    async def keys(credential: str) -> Caller:
        return Caller.app("key_app")

    async with contextlib.AsyncExitStack() as stack:
        base = await stack.enter_async_context(serve_uvicorn(app))
        gate = Gate(
            load_gateway_config_text(ROUTES.format(upstream=base), holder.current),
            callers=GatewayCallers(jwt=None, api_keys=keys, clock=SystemClock()),
            decider=decider,
        )
        upstream = Upstream(base)
        stack.push_async_callback(upstream.aclose)
        gateway = HttpGateway(gate, upstream)
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw")
        )
        yield Rig(client, decider, seen, reached, gateway)


AUTH = {"authorization": "Bearer pgk_test"}


async def test_a_safe_request_is_forwarded_meanwhile_and_answered_once_audited(rig: Rig) -> None:
    answer = asyncio.create_task(rig.client.get("/open", headers=AUTH))
    await asyncio.wait_for(rig.reached.wait(), 10)
    assert rig.seen == ["GET /open"]
    await asyncio.sleep(0.05)
    assert not answer.done()  # the upstream answered; the gateway waits for the audit
    rig.decider.release.set()
    assert (await answer).status_code == 200


async def test_a_failed_audit_drops_the_upstreams_answer(rig: Rig) -> None:
    rig.decider.fails = True
    rig.decider.release.set()
    answer = await rig.client.get("/open", headers=AUTH)
    assert answer.status_code == 503
    assert answer.json()["code"] == "store_unavailable"
    assert MARKER not in answer.text
    assert rig.seen == ["GET /open"]


async def test_a_failed_audit_comes_before_an_upstream_that_is_down(rig: Rig) -> None:
    rig.gateway.upstream = Upstream(f"http://127.0.0.1:{free_port()}")
    rig.decider.fails = True
    rig.decider.release.set()
    try:
        answer = await rig.client.get("/open", headers=AUTH)
    finally:
        await rig.gateway.upstream.aclose()
    assert answer.status_code == 503


async def test_another_method_reaches_the_upstream_only_once_audited(rig: Rig) -> None:
    answer = asyncio.create_task(rig.client.put("/open", headers=AUTH))
    await asyncio.sleep(0.1)
    assert rig.seen == [] and not answer.done()
    rig.decider.release.set()
    assert (await answer).status_code == 200
    assert rig.seen == ["PUT /open"]
    rig.decider.fails = True
    assert (await rig.client.put("/open", headers=AUTH)).status_code == 503
    assert rig.seen == ["PUT /open"]


async def test_a_masked_answer_names_the_challenge_as_audited(rig: Rig) -> None:
    rig.decider.early = MASKED
    rig.decider.audited = replace(MASKED, challenge={"id": "chl_audited"})
    rig.decider.release.set()
    answer = await rig.client.get("/record", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"ssn": "***-**-3456"}
    assert answer.headers["piigate-unlock"].endswith('challenge="chl_audited"')


async def test_a_masked_answer_is_masked_while_its_audit_commits(rig: Rig) -> None:
    rig.decider.early = MASKED
    masked_while_pending: list[bool] = []
    original = rig.gateway._masked_body

    async def observed(answer: UpstreamAnswer, route: RouteDef, masked: frozenset[str]) -> bytes:
        body = await original(answer, route, masked)
        masked_while_pending.append(not rig.decider.release.is_set())
        return body

    rig.gateway._masked_body = observed  # type: ignore[method-assign]
    answer = asyncio.create_task(rig.client.get("/record", headers=AUTH))
    await asyncio.wait_for(rig.reached.wait(), 10)
    for _ in range(100):  # the masking is done before the commit is
        if masked_while_pending:
            break
        await asyncio.sleep(0.01)
    assert masked_while_pending == [True]
    assert not answer.done()  # nothing leaves before the audit
    rig.decider.release.set()
    got = await answer
    assert got.status_code == 200
    assert got.json() == {"ssn": "***-**-3456"}


async def test_an_answer_that_cannot_be_masked_is_a_502_once_audited(rig: Rig) -> None:
    rig.decider.early = MASKED
    rig.decider.release.set()
    answer = await rig.client.get("/text", headers=AUTH)
    assert answer.status_code == 502
    assert MARKER not in answer.text
    rig.decider.fails = True  # a failed commit comes first
    answer = await rig.client.get("/text", headers=AUTH)
    assert answer.status_code == 503
    assert answer.json()["code"] == "store_unavailable"
    assert MARKER not in answer.text
    assert rig.seen == ["GET /text", "GET /text"]


async def test_a_refusal_waits_for_its_audit(rig: Rig) -> None:
    rig.decider.early = STEP_UP
    rig.decider.fails = True
    rig.decider.release.set()
    answer = await rig.client.get("/open", headers=AUTH)
    assert answer.status_code == 503
    assert rig.seen == []
    rig.decider.fails = False
    assert (await rig.client.get("/open", headers=AUTH)).status_code == 401
    assert rig.seen == []
