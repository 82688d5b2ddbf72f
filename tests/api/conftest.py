"""Fixtures of the HTTP API tests: a running app on each store backend (see api_support), and an
identity provider (see jwt_support)."""

from __future__ import annotations

import pytest
from api_support import Node, node, start_node
from jwt_support import idp_key, jwks_server

__all__ = ["idp_key", "jwks_server", "node", "start_node"]  # the fixtures, for pytest


@pytest.fixture
async def api_key(node: Node) -> str:
    """An API key with scope ``decisions``."""
    return (await node.api_key("app"))[1]
