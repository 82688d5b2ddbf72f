"""Helpers of the HTTP API tests and of the other tests that run a node (imported by name:
``tests/api`` is on ``sys.path``, see ``pythonpath`` in pyproject.toml).

``Node`` is one app from ``create_app`` with its lifespan entered, an ``httpx.AsyncClient`` over
``ASGITransport`` and a ``FixedClock``; ``node_starter`` starts them (the ``start_node`` fixture of
``tests/api`` and ``tests/integrations``). What needs a real loopback socket is in
``tests/loopback_support.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from piigate.api.app import create_app
from piigate.api.services import Services
from piigate.clock import FixedClock
from piigate.config import Settings
from piigate.crypto.secret import Secret
from piigate.identity import generate_api_key, hash_password
from piigate.origins import web_origin
from piigate.policy.holder import PolicyHolder

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_POLICY = ROOT / "examples" / "policy.yaml"
T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
FAKE_SSN = "123-45-6789"
PROBLEM = "application/problem+json"


@dataclass
class Node:
    app: FastAPI
    services: Services
    client: httpx.AsyncClient
    clock: FixedClock
    settings: Settings

    async def api_key(
        self,
        name: str | None = None,
        *,
        scopes: Iterable[str] = ("decisions",),
        roles: Iterable[str] = (),
    ) -> tuple[str, str]:
        """A new API key: ``(key id, the pgk_ secret)``."""
        key_id, secret, digest = generate_api_key()
        await self.services.store.create_api_key(
            key_id, name or key_id, digest, list(roles), list(scopes), self.clock.now()
        )
        return key_id, secret.reveal()

    async def user(self, name: str, password: str, roles: Iterable[str] = ()) -> None:
        digest = await asyncio.to_thread(password_hash, password)
        await self.services.store.add_user(name, digest, list(roles), self.clock.now())

    async def decide(self, key: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
        return await self.client.post("/v1/decisions", json=body, headers=bearer(key), **kw)


StartNode = Callable[..., Awaitable[Node]]


@functools.cache
def password_hash(password: str) -> str:
    """The argon2id hash of ``password``, made once per test process: every user the tests
    make with that password stores the same hash (same salt). It is a real hash with the
    product's parameters, so each login still verifies it in full; what is saved is ~0.15 s
    of CPU per user made (tests/identity/test_passwords.py checks the hashing itself)."""
    return hash_password(Secret(password))


@contextlib.asynccontextmanager
async def node_starter(database_url: str, data_dir: Path) -> AsyncIterator[StartNode]:
    """``await start(clock=..., policy=..., **settings)`` → a started node; all stop after."""
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
                data_dir=data_dir,
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
async def start_node(migrated_url: str, tmp_path: Path) -> AsyncIterator[StartNode]:
    """``await start_node(clock=..., policy=..., **settings)`` → a started node; all stop after.
    A fixture: a conftest imports it to offer it (tests/api, tests/integrations). The store is
    a copy of one migrated per session (tests/conftest.py): a node's start-up migration finds
    it current, as on every start but a deployment's first."""
    async with node_starter(migrated_url, tmp_path) as start:
        yield start


@pytest.fixture
async def node(start_node: StartNode) -> Node:
    """The example policy on a fresh store (SQLite and PostgreSQL)."""
    return await start_node()


def same_origin(settings: Settings) -> dict[str, str]:
    """The ``Origin`` a browser sends from the service's own pages: what a request with the
    session cookie needs (``api.middleware.CrossSiteGuard``)."""
    return {"Origin": web_origin(settings.public_url)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def decision_body(
    action: str = "read",
    pii: Iterable[str] = ("ssn",),
    *,
    subject: str = "alice",
    roles: Iterable[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": {"id": subject, "roles": list(roles)},
        "action": action,
        "resource": {"type": "customer", "id": "42"},
        "pii": list(pii),
    }
    body.update(extra)
    return body


class LeanSpy:
    """Watches what the lean paths (``api/lean.py``) hand to the app's middleware stack: put it
    in place with ``monkeypatch.setattr(node.app.lean, "app", LeanSpy(node.app.lean.app))``."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self.passed: list[tuple[str, str]] = []

    def handed_on(self, path: str, method: str = "POST") -> int:
        """Requests to ``path`` handed on (answered by the declared route)."""
        return self.passed.count((method, path))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.passed.append((scope["method"], scope["path"]))
        await self.inner(scope, receive, send)
