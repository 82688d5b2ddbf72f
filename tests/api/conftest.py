"""Fixtures of the HTTP API tests: a running app on each store backend (see api_support)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import EXAMPLE_POLICY, T0, Node, StartNode, same_origin
from joserfc.jwk import KeySet, RSAKey
from jwt_support import JwksServer

from piigate.api.app import create_app
from piigate.clock import FixedClock
from piigate.config import Settings
from piigate.policy.holder import PolicyHolder


@pytest.fixture
async def start_node(database_url: str, tmp_path: Path) -> AsyncIterator[StartNode]:
    """``await start_node(clock=..., policy=..., **settings)`` → a started node; all stop after."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            *,
            clock: FixedClock | None = None,
            policy: PolicyHolder | None = None,
            **overrides: Any,
        ) -> Node:
            # The audit writer process has tests of its own (tests/audit/test_writer.py, and
            # every test that runs `piigate serve`); a thread keeps node start-up fast here.
            settings = Settings(
                policy_path=str(EXAMPLE_POLICY),
                data_dir=tmp_path,
                database_url=database_url,
                audit_writer="thread",
            )
            settings = replace(settings, **overrides)
            clock = clock or FixedClock(T0)
            app = create_app(settings, clock=clock, policy=policy)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://t",
                    headers=same_origin(settings),
                )
            )
            return Node(app, app.state.services, client, clock, settings)

        yield start


@pytest.fixture
async def node(start_node: StartNode) -> Node:
    """The example policy on a fresh store (SQLite and PostgreSQL)."""
    return await start_node()


@pytest.fixture
async def api_key(node: Node) -> str:
    """An API key with scope ``decisions``."""
    return (await node.api_key("app"))[1]


@pytest.fixture(scope="module")
def idp_key() -> RSAKey:
    """An identity provider's signing key (``jwt_support.idp_token`` signs with it)."""
    return RSAKey.generate_key(2048, parameters={"kid": "idp-1"})


@pytest.fixture
def jwks_server(idp_key: RSAKey) -> Iterator[JwksServer]:
    """``idp_key``'s JWK Set, served on loopback."""
    server = JwksServer(KeySet([idp_key]))
    try:
        yield server
    finally:
        server.close()
