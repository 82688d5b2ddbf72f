"""Request bodies as JSON, with every object's keys unique.

RFC 8259 §4 leaves duplicate names to the parser: Python keeps the last, other parsers the first,
so a gateway or app that checked the body could have seen another request than piigate decides.
Every body piigate reads is decoded by :func:`loads`, which refuses a duplicate at any depth
(:class:`DuplicateKeyError`, a 400 naming the key's path, never a value): the routes through
:class:`JsonRoute`, the route class of every router, and the decision route's lean path directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

__all__ = ["DuplicateKeyError", "JsonRoute", "loads"]


class DuplicateKeyError(json.JSONDecodeError):
    """An object in the body has the key at ``path`` more than once.

    A ``JSONDecodeError``, so that FastAPI answers it as it answers malformed JSON (a request
    validation error, rendered by ``api.problems``), which then names ``path``.
    """

    def __init__(self, path: str) -> None:
        super().__init__(f"duplicate key {path}", "", 0)
        self.path = path


class _Duplicate(Exception):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Duplicate
    return obj


# Built once: ``json.loads`` with a hook would build a decoder (and its scanner) per call,
# which costs more than the parse of a decision's body.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique)


def loads(body: bytes | str) -> Any:
    """``json.loads(body)``, refusing an object with a key twice (:class:`DuplicateKeyError`).

    The check is one length comparison per object while parsing; the path is looked for only
    when there is a duplicate.
    """
    text = _text(body)
    try:
        return _DECODER.decode(text)
    except _Duplicate:
        raise DuplicateKeyError(_duplicate_path(text)) from None


def _text(body: bytes | str) -> str:
    """``body`` as ``json.loads`` reads it: bytes in UTF-8, -16 or -32, a leading BOM refused."""
    if isinstance(body, str):
        text = body
    else:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return text


class _Pairs(list[tuple[str, Any]]):
    """An object's members in order, duplicates kept (to find where the duplicate is)."""


def _duplicate_path(text: str) -> str:
    """The dotted path of the first duplicate key (``subject.id``, ``grants.0.x``)."""
    pending: list[tuple[tuple[str, ...], Any]] = [((), json.loads(text, object_pairs_hook=_Pairs))]
    while pending:  # depth first, without recursion: the body may nest as deep as json allows
        path, node = pending.pop()
        if isinstance(node, _Pairs):
            seen: set[str] = set()
            for key, _ in node:
                if key in seen:
                    return ".".join((*path, key))
                seen.add(key)
            pending.extend(((*path, key), value) for key, value in reversed(node))
        elif isinstance(node, list):
            pending.extend(((*path, str(i)), v) for i, v in reversed(list(enumerate(node))))
    return "body"  # not reached: loads found a duplicate


class _JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """An ``APIRoute`` whose body, when it is JSON, is read by :func:`loads`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_json(request: Request) -> Response:
            return await handler(_JsonRequest(request.scope, request.receive))

        return strict_json
