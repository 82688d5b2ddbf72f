"""The engine behind a gate: in this process (:class:`EngineDecider`), or a piigate service
asked over ``POST /v1/decisions`` with an API key of scope ``decisions`` (:class:`RemoteDecider`).

Both give the same :class:`~piigate.gateway.http.verdict.Verdict`; the challenge's links point at
the piigate service that verifies it (``service.public_url`` in process, the engine's URL when
remote). In process, the decision names the person as its caller: the grant they obtain is
theirs. Remote, the gateway's API key asks: the grant is for this gateway (its ``aud``), which
sends it back with the request it was obtained for.

A remote engine that cannot be reached, answers late or answers something else than a decision
fails the request closed (``ServiceUnavailable``, a 503): never through.

``decide_early`` gives the verdict as soon as it is made, with what to await for the verdict as
audited: in process, the engine's audit commit is then still running (``Engine.decide_early``),
so the reverse proxy can forward a safe request meanwhile; a remote engine answers only once
its decision is audited.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, Final

import aiohttp

from piigate.api.devices import DeviceCookies
from piigate.api.schemas import challenge_json
from piigate.callers import Caller
from piigate.errors import ServiceUnavailable
from piigate.gateway.http.verdict import (
    Audited,
    Verdict,
    already_audited,
    challenge_links,
    verdict_from_json,
)
from piigate.jsontext import loads
from piigate.model import AccessRequest, Decision
from piigate.risk.devices import client_device_id, read_signed
from piigate.stepup.engine import Engine

__all__ = ["EngineDecider", "RemoteDecider", "decision_body", "verdict_of"]

DECISIONS_PATH: Final = "/v1/decisions"


def verdict_of(decision: Decision, base_url: str) -> Verdict:
    """The verdict of the engine's ``decision``; challenge links on ``base_url``."""
    req = decision.required
    challenge = None
    if decision.challenge is not None:
        challenge = challenge_links(challenge_json(decision.challenge), base_url)
    return Verdict(
        decision_id=decision.id,
        outcome=decision.outcome,
        mask=decision.mask,
        level=decision.level,
        required_level=None if req is None else req.level,
        acr_values=() if req is None else req.acr_values,
        max_age=None if req is None else req.max_age,
        methods=() if req is None else req.methods,
        challenge=challenge,
        reason=decision.reason,
        missing_scope=decision.missing_scope,
    )


class EngineDecider:
    """The engine in this process. ``devices`` reads the device the gate passes on (a cookie's
    value, a client's id): a node's (``in_process``); without it, a cookie cannot be checked and
    counts as no device."""

    def __init__(self, engine: Engine, base_url: str, devices: DeviceCookies | None = None) -> None:
        self.engine = engine
        self.base_url = base_url
        self.devices = devices

    async def decide(self, request: AccessRequest, caller: Caller) -> Verdict:
        request = await self._with_device(request)
        return verdict_of(await self.engine.decide(request, caller=caller), self.base_url)

    async def decide_early(self, request: AccessRequest, caller: Caller) -> tuple[Verdict, Audited]:
        request = await self._with_device(request)
        decision, task = await self.engine.decide_early(request, caller=caller)
        # Retrieved even if nobody asks (the request went away): never an unretrieved error.
        task.add_done_callback(_retrieve)

        early = verdict_of(decision, self.base_url)

        async def audited() -> Verdict:
            done = await task
            # The same decision, unless its commit named another challenge (``Engine._commit``).
            return early if done is decision else verdict_of(done, self.base_url)

        return early, audited

    async def _with_device(self, request: AccessRequest) -> AccessRequest:
        presented = request.context.device_id
        if presented is None:
            return request
        device = await self._device(presented)
        if device == presented:
            return request
        context = dataclasses.replace(request.context, device_id=device)
        return dataclasses.replace(request, context=context)

    async def _device(self, presented: str) -> str | None:
        if self.devices is not None:
            return await self.devices.resolve(presented)
        return None if read_signed(presented) is not None else client_device_id(presented)


class RemoteDecider:
    """Asks the piigate service at ``base_url`` with ``api_key`` (scope ``decisions``), over
    pooled aiohttp connections (``bench/upstream_clients.py``: a fraction of httpx's CPU per
    request), opened on first use inside the serving event loop."""

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 5.0, max_connections: int = 64
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._url = self.base_url + DECISIONS_PATH
        self._headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
        self._timeout = timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=4.0),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        return self._session

    async def decide_early(self, request: AccessRequest, caller: Caller) -> tuple[Verdict, Audited]:
        """The service answers once its decision is audited: nothing left to await."""
        return already_audited(await self.decide(request, caller))

    async def decide(self, request: AccessRequest, caller: Caller) -> Verdict:
        session = self._session or self._open()
        data = json.dumps(decision_body(request), separators=(",", ":")).encode()
        try:
            async with session.post(
                self._url, data=data, headers=self._headers, allow_redirects=False
            ) as response:
                status, content = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceUnavailable("the decision service cannot be reached") from exc
        if status != 200:
            raise ServiceUnavailable(f"the decision service answered {status}")
        try:
            body = loads(content)
        except ValueError as exc:
            raise ServiceUnavailable("the decision service gave an unreadable answer") from exc
        return verdict_from_json(body, self.base_url)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def decision_body(request: AccessRequest) -> dict[str, Any]:
    """``request`` as a ``POST /v1/decisions`` body."""
    subject, session, context = request.subject, request.session, request.context
    body: dict[str, Any] = {
        "subject": {
            "id": subject.id,
            "roles": sorted(subject.roles),
            "scopes": sorted(subject.scopes),
        },
        "session": {
            "id": session.id,
            "acr": session.acr,
            "amr": list(session.amr),
            "auth_time": None if session.auth_time is None else int(session.auth_time.timestamp()),
        },
        "grants": list(request.grants),
        "context": {
            "ip": context.ip,
            "user_agent": context.user_agent,
            "device_id": context.device_id,
        },
        "action": request.action.value,
        "resource": {"type": request.resource.type, "id": request.resource.id},
        "pii": sorted(request.pii),
        "binding": dict(request.binding_fields),
    }
    txn = request.transaction
    if txn is not None:
        body["transaction"] = {
            "amount": str(txn.amount),
            "currency": txn.currency,
            "payee": txn.payee,
        }
    return body
