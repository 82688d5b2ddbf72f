"""Fixtures of the PostgreSQL gateway's tests: the identity provider's key and JWKS, and
``env``, a gateway on an in-process node in front of the local PostgreSQL whose step-ups
fail at once (``approval_wait: 0s``); a module that waits for approvals overrides it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from joserfc.jwk import RSAKey
from jwt_support import JwksServer, idp_key, jwks_server
from pg_gateway_support import GatewayEnv, gateway_env

__all__ = ["env", "idp_key", "jwks_server"]  # fixtures, for pytest


@pytest.fixture
async def env(
    tmp_path: Path, pg_admin_url: str, jwks_server: JwksServer, idp_key: RSAKey
) -> AsyncIterator[GatewayEnv]:
    async with gateway_env(tmp_path, pg_admin_url, jwks_server, idp_key, approval_wait="0s") as e:
        yield e
