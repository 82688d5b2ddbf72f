"""What the integration tests share (imported by name: ``tests/integrations`` is on ``sys.path``
while they run): the README's example app, clients of a node and of an app, ``Wired``."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import httpx
from api_support import ROOT, Node
from fastapi import FastAPI

from piigate.integrations import PiigateClient

PIIGATE_URL = "http://piigate.test"  # the client's base URL: the node through ASGITransport
Token = Callable[..., str]  # the ``token`` fixture: alice's IdP token with these claims
Who = dict[str, Any]  # the ``who`` fixture: who calls (``identity=``, ``clock=``)


@cache
def example_app() -> ModuleType:
    """examples/fastapi_app.py, the README's example."""
    path = ROOT / "examples" / "fastapi_app.py"
    spec = importlib.util.spec_from_file_location("fastapi_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Wired:
    """The example app (``asgi``; ``app``: a client to it) and the engine it asks: ``piigate``
    is the client in ``client`` mode, None in ``engine`` mode (the engine in this process)."""

    mode: str
    node: Node
    asgi: FastAPI
    app: httpx.AsyncClient
    piigate: PiigateClient | None
    links: str  # where the challenges' links point


async def piigate_client(node: Node, stack: contextlib.AsyncExitStack) -> PiigateClient:
    """A client of ``node`` with a new API key (scope ``decisions``)."""
    http = await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app))
    )
    _, key = await node.api_key("orders-app")
    return PiigateClient(PIIGATE_URL, key, http=http)


async def serve(app: Any, stack: contextlib.AsyncExitStack) -> httpx.AsyncClient:
    """A client of ``app`` (ASGI, in this process)."""
    return await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test")
    )
