"""Fixtures of the integration tests: a node (started as in tests/api), the IdP whose tokens the
app accepts, and the example FastAPI app (examples/fastapi_app.py) asking that node's engine in
this process or through ``PiigateClient`` over the node's HTTP API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_support import Node, node, start_node
from integration_support import (
    PIIGATE_URL,
    Token,
    Who,
    Wired,
    example_app,
    piigate_client,
    serve,
)
from joserfc.jwk import RSAKey
from jwt_support import AUDIENCE, ISSUER, JwksServer, idp_key, idp_token, jwks_server

from piigate.gateway.http.deciders import EngineDecider
from piigate.identity import JwtValidator

__all__ = ["idp_key", "jwks_server", "node", "start_node"]  # the fixtures, for pytest


@pytest.fixture
async def idp(jwks_server: JwksServer) -> AsyncIterator[JwtValidator]:
    validator = JwtValidator(ISSUER, AUDIENCE, jwks_server.url)
    try:
        yield validator
    finally:
        await validator.aclose()


@pytest.fixture
def who(node: Node, idp: JwtValidator) -> Who:
    """Who calls, for ``configure`` and the middleware: IdP tokens, checked on the node's clock
    (the tokens are issued at its T0)."""
    return {"identity": idp, "clock": node.clock}


@pytest.fixture(params=["engine", "client"])
async def wired(request: pytest.FixtureRequest, node: Node, who: Who) -> AsyncIterator[Wired]:
    async with contextlib.AsyncExitStack() as stack:
        piigate = None
        if request.param == "engine":
            public = node.settings.public_url
            app = example_app().create_app(
                engine=EngineDecider(node.services.engine, public), **who
            )
        else:
            piigate = await piigate_client(node, stack)
            public = PIIGATE_URL
            app = example_app().create_app(client=piigate, **who)
        yield Wired(request.param, node, app, await serve(app, stack), piigate, public)


@pytest.fixture
def token(idp_key: RSAKey) -> Token:
    """``token(**claims)``: alice's IdP token (aal1 unless ``acr`` says otherwise)."""

    def make(**claims: Any) -> str:
        return idp_token(idp_key, **{"acr": "urn:piigate:aal1", "amr": ["pwd"], **claims})

    return make
