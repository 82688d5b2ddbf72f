"""The ASGI side of a gate, shared by the reverse proxy (``proxy.py``) and the app middleware
(``piigate.integrations``): a request read into an :class:`~piigate.gateway.http.gate.Ask`
(its body read, up to a limit, for a route that decides on it, and parsed exactly, or for a
form's or a JSON object's POST, whose ``_method`` the gate looks for; a multipart POST's, or
one's without a ``Content-Type``, is scanned as it streams instead), an
:class:`~piigate.gateway.http.verdict.Answer` sent, and the headers that carry the verified
subject and level, which only the gate sets.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence

from starlette.types import Message, Receive, Scope, Send

from piigate.api.auth import GRANT_HEADER
from piigate.errors import PayloadTooLarge
from piigate.gateway.http.gate import Ask, Passage
from piigate.gateway.http.overrides import READ_WHOLE, body_kind
from piigate.gateway.http.routes import Body, RouteMatch
from piigate.gateway.http.sections import DEFAULT_MAX_BODY, ForwardHeaders
from piigate.gateway.http.verdict import Answer
from piigate.jsontext import loads_exact

__all__ = [
    "DEFAULT_MAX_BODY",
    "ClientGone",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "has_body",
    "parsed_body",
    "raw_headers",
    "read_ask",
    "read_body",
    "request_chunks",
    "request_headers",
    "request_target",
    "send_answer",
    "verified_headers",
]


class ClientGone(Exception):
    """The client disconnected while its request was read."""


def request_headers(scope: Scope) -> list[tuple[str, str]]:
    """The request's headers: lower-case names, latin-1 values, repeated names kept."""
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]


def request_target(scope: Scope) -> str:
    """The path as sent (not decoded) and the query."""
    raw = scope.get("raw_path") or scope["path"].encode()
    target: str = raw.decode("latin-1")
    query = scope.get("query_string") or b""
    return f"{target}?{query.decode('latin-1')}" if query else target


async def read_ask(
    scope: Scope,
    receive: Receive,
    headers: list[tuple[str, str]],
    match: RouteMatch | None,
    max_body: int,
) -> tuple[Ask, bytes | None]:
    """The request as the gate reads it, and its body when its route decides on it (then
    read whole: ``PayloadTooLarge`` beyond ``max_body``, ``ClientGone``); None otherwise, and
    the body is left to be received."""
    client = scope.get("client")
    ip = client[0] if client else None
    method: str = scope["method"]
    target = request_target(scope)
    reads = match is not None and match.route.reads_body
    if not reads and body_kind(method, headers) not in READ_WHOLE:
        return Ask(method, target, headers, client_ip=ip), None
    body = await read_body(receive, headers, max_body)
    parsed = parsed_body(body) if reads else Body.ABSENT
    return Ask(method, target, headers, client_ip=ip, body=parsed, raw_body=body), body


def parsed_body(body: bytes) -> object:
    """``body`` as the gate reads it: the JSON document (numbers exact), or a ``Body``."""
    if not body:
        return Body.ABSENT
    try:
        return loads_exact(body)
    except ValueError:  # not JSON, duplicate keys: every class of request_fields counts
        return Body.UNREADABLE


async def read_body(receive: Receive, headers: Sequence[tuple[str, str]], max_body: int) -> bytes:
    """The whole body; ``PayloadTooLarge`` as soon as it is known to exceed ``max_body``."""
    declared = next((v for k, v in headers if k == "content-length"), None)
    if declared is not None and declared.strip().isdigit() and int(declared) > max_body:
        raise _too_large(max_body)
    parts: list[bytes] = []
    size = 0
    async for chunk in request_chunks(receive):
        size += len(chunk)
        if size > max_body:
            raise _too_large(max_body)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(max_body: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body exceeds {max_body} bytes")


def has_body(headers: Sequence[tuple[str, str]]) -> bool:
    for key, value in headers:
        if key == "transfer-encoding" or (key == "content-length" and value.strip() != "0"):
            return True
    return False


async def request_chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def verified_headers(
    names: ForwardHeaders, passage: Passage
) -> tuple[frozenset[str], list[tuple[str, str]]]:
    """The header names only the gate sets (lower case: whatever the client sent under them
    is dropped, with its grant header) and what it sets them to for ``passage``: the verified
    subject and the level proven."""
    drop = _gate_only(names.subject, names.level)
    out: list[tuple[str, str]] = []
    if passage.caller is not None:
        out.append((names.subject, passage.caller.subject.id))
    verdict = passage.verdict
    if verdict is not None and verdict.level is not None:
        out.append((names.level, verdict.level))
    return drop, out


@functools.lru_cache(maxsize=16)
def _gate_only(subject: str, level: str) -> frozenset[str]:
    return frozenset({GRANT_HEADER.lower(), subject.lower(), level.lower()})


def raw_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def send_answer(send: Send, answer: Answer) -> None:
    """``answer`` whole, with its length."""
    headers = [*answer.headers, ("content-length", str(len(answer.body)))]
    start: Message = {
        "type": "http.response.start",
        "status": answer.status,
        "headers": raw_headers(headers),
    }
    await send(start)
    await send({"type": "http.response.body", "body": answer.body})
