"""Request bodies as JSON, with every object's keys unique.

RFC 8259 §4 leaves duplicate names to the parser: Python keeps the last, other parsers the first,
so a gateway or app that checked the body could have seen another request than piigate decides.
Every body piigate reads is decoded by ``piigate.jsontext.loads``, which refuses a duplicate at
any depth (``DuplicateKeyError``, a 400 naming the key's path, never a value): the routes through
:class:`JsonRoute`, the route class of every router, and the decision route's lean path directly.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from piigate.jsontext import DuplicateKeyError, loads

__all__ = ["DuplicateKeyError", "JsonRoute", "loads"]


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
