"""Fixtures of the HTTP API tests: a running app on each store backend (see api_support), and an
identity provider (see jwt_support)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_support import Node, StartNode, node_starter
from jwt_support import idp_key, jwks_server

__all__ = ["idp_key", "jwks_server"]  # the fixtures, for pytest


@pytest.fixture
async def start_node(database_url: str, tmp_path: Path) -> AsyncIterator[StartNode]:
    """``await start_node(clock=..., policy=..., **settings)`` → a started node; all stop after."""
    async with node_starter(database_url, tmp_path) as start:
        yield start


@pytest.fixture
async def node(start_node: StartNode) -> Node:
    """The example policy on a fresh store (SQLite and PostgreSQL)."""
    return await start_node()


@pytest.fixture
async def api_key(node: Node) -> str:
    """An API key with scope ``decisions``."""
    return (await node.api_key("app"))[1]
