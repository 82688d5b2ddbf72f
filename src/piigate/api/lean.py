"""Lean paths: a route's plain case answered without FastAPI's per-request machinery.

Through the middleware stack (error and exception middleware, body caps, an exit stack per
request, two send wrappers, routing) and FastAPI's route (dependency solving, ``Request``
building, double route resolution), the framework costs more CPU than a decision and its audit
together. The routes that apps and gateways call thousands of times a second with an API key --
``POST /v1/decisions``, ``POST /v1/challenges/{id}/verify`` -- each define a
:class:`LeanRoute`: the declared route's contract (authentication, access, body validation) as
plain steps, and the work. :class:`LeanPaths`, an ASGI wrapper around the whole app outside
every middleware, claims a ``POST`` to one of their paths with a ``Content-Length`` within the
body cap and runs the lean route only when every step of the contract passes. Anything else --
a chunked or oversized body, a missing or wrong credential, a JWT or session cookie, malformed
JSON, a validation error, a store failure while authenticating, a client disconnect -- goes
through the app as usual with the body replayed, so every error response, status and header
comes from the declared route and its middleware, in FastAPI's order (a malformed body before a
missing credential). Nothing with an effect happens before that hand-off (authentication only
fills the key cache).

From the work on, an error is answered by the app's own exception handler for its class, with
``scope["route"]`` set to the declared route, as the declared route's would be.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic_core import to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from piigate.api.auth import API_KEY_PREFIX, api_key_caller, bearer_credential
from piigate.api.jsonbody import loads
from piigate.api.services import Services
from piigate.callers import Caller

__all__ = ["Answer", "LeanHeaders", "LeanPaths", "LeanRoute", "Work"]

# A lean route's answer: the JSON body and any headers besides length and type.
Answer = tuple[Any, Sequence[tuple[bytes, bytes]]]
# What a lean route runs once its contract has passed.
Work = Callable[[], Awaitable[Answer]]


@dataclass(slots=True)
class LeanHeaders:
    """The request headers a lean route reads."""

    length: bytes | None = None
    authorization: str | None = None
    content_type: str | None = None


@dataclass
class LeanRoute(ABC):
    """One route's plain case. Subclasses give :meth:`match` and :meth:`admitted`."""

    declared: APIRoute  # the FastAPI route: its log lines, OpenAPI, every other case
    body_field: Any = field(init=False)

    def __post_init__(self) -> None:
        body_field = self.declared.body_field
        assert body_field is not None, "a lean route takes a body"
        self.body_field = body_field

    @abstractmethod
    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters when ``path`` is this route's; else None."""

    @abstractmethod
    async def admitted(
        self, services: Services, headers: LeanHeaders, body: bytes, params: dict[str, str]
    ) -> Work | None:
        """The work, when every step of the route's contract admits the request; else None
        (the declared route answers). May raise: that is a hand-off too."""

    async def api_key(self, services: Services, headers: LeanHeaders) -> Caller | None:
        """The app whose API key is the bearer credential, if that is what was presented."""
        if headers.authorization is None:
            return None
        credential = bearer_credential(headers.authorization)
        if not credential.startswith(API_KEY_PREFIX):
            return None  # an identity provider's token: the declared route validates it
        return await api_key_caller(services, credential)

    def validated(self, body: bytes) -> Any:
        """The body as the declared route validates it: ``jsonbody.loads`` (a repeated key is
        refused), then the route's own body field (``validate_python(...,
        from_attributes=True)``)."""
        value, errors = self.body_field.validate(loads(body), loc=("body",))
        if errors:
            raise RequestValidationError(errors)
        return value


class LeanPaths:
    """The ASGI wrapper in front of the app's middleware stack (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        owner: FastAPI,
        routes: Sequence[LeanRoute],
        max_body_bytes: int,
    ) -> None:
        self.app = app  # the app's middleware stack: everything not claimed here
        self.owner = owner
        self.routes = tuple(routes)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        claimed = self._claimed(scope)
        if claimed is None:
            await self.app(scope, receive, send)
            return
        route, params, headers = claimed
        received: list[Message] = []
        body = await _read_body(receive, received)
        work = None if body is None else await _admitted(self.owner, route, headers, body, params)
        if work is None:
            await self.app(scope, _replay(received, receive), send)
            return
        scope["app"] = self.owner
        scope["route"] = route.declared
        scope["path_params"] = params
        try:
            content, extra = await work()
        except Exception as error:
            await self._problem(scope, receive, send, error)
            return
        payload = to_json(content)
        headers_out = [
            (b"content-length", str(len(payload)).encode("latin-1")),
            (b"content-type", b"application/json"),
            *extra,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers_out})
        await send({"type": "http.response.body", "body": payload})

    def _claimed(self, scope: Scope) -> tuple[LeanRoute, dict[str, str], LeanHeaders] | None:
        """The lean route, its path parameters and the headers it reads, if this request is
        one to look at; else None."""
        # Served under a root path (behind a prefixing proxy), the app routes it.
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            return None
        path = scope["path"]
        for route in self.routes:
            params = route.match(path)
            if params is not None:
                break
        else:
            return None
        headers = _headers(scope)
        length = None if headers is None else headers.length
        # Chunked or over the cap: the body limit middleware counts and answers (413).
        if length is None or not length.isdigit() or int(length) > self.max_body_bytes:
            return None
        assert headers is not None
        return route, params, headers

    async def _problem(self, scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
        """Answer ``error`` with the app's handler for it, as its exception middleware would."""
        handlers = self.owner.exception_handlers
        handler = next((handlers[k] for k in type(error).__mro__ if k in handlers), None)
        if handler is None:
            raise error
        response = handler(Request(scope, receive), error)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)


async def _admitted(
    owner: FastAPI, route: LeanRoute, headers: LeanHeaders, body: bytes, params: dict[str, str]
) -> Work | None:
    services = getattr(owner.state, "services", None)
    if services is None or not body:
        return None
    content_type = headers.content_type
    if content_type is not None and not _is_plain_json(content_type):
        return None
    try:
        return await route.admitted(services, headers, body, params)
    except Exception:  # answered by the declared route, in its order
        return None


def _headers(scope: Scope) -> LeanHeaders | None:
    """The headers lean routes read; None when the length is given twice."""
    headers = LeanHeaders()
    for name, value in scope["headers"]:
        if name == b"content-length":
            if headers.length is not None:
                return None
            headers.length = value
        elif name == b"authorization" and headers.authorization is None:
            headers.authorization = value.decode("latin-1")
        elif name == b"content-type" and headers.content_type is None:
            headers.content_type = value.decode("latin-1")
    return headers


async def _read_body(receive: Receive, received: list[Message]) -> bytes | None:
    """The whole body, keeping every message for a replay; None if the client went away."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(received: list[Message], receive: Receive) -> Callable[[], Awaitable[Message]]:
    pending = deque(received)

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return replay


def _is_plain_json(content_type: str) -> bool:
    """``application/json`` with any parameters; rarer JSON types take the declared route."""
    return content_type.partition(";")[0].strip().lower() == "application/json"
