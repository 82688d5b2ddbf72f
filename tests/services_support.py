"""What a test does when something it needs from outside is missing (imported by name:
``tests/`` is on ``sys.path``): skip with the reason shown, or fail under
``PIIGATE_REQUIRE_SERVICES=1`` (CI), where every such test must run."""

from __future__ import annotations

import os

import pytest

__all__ = ["require_services", "unavailable"]


def require_services() -> bool:
    return os.environ.get("PIIGATE_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def unavailable(reason: str) -> None:
    """Skip the test with ``reason``; fail it instead when services are required."""
    if require_services():
        pytest.fail(f"{reason} (PIIGATE_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)
