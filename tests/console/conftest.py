"""Fixtures of the console tests: a running node (``tests/api/api_support``) and a signed-in
browser-like client."""

from __future__ import annotations

import pytest
from api_support import Node, node, start_node

__all__ = ["node", "start_node"]  # the fixtures, for pytest


@pytest.fixture
def origin(node: Node) -> dict[str, str]:
    """The header a browser sends with a form posted from the console's own pages."""
    return {"Origin": node.settings.public_url.rstrip("/")}
