"""A PostgreSQL gateway in front of the local server, with a piigate node in process.

``gateway_env`` starts: a node on SQLite with an IdP (``jwt_support``) and ``POLICY``; the
local user alice with a TOTP factor; the bypass corpus in a fresh schema of the local server
(``bypass_corpus``); and the gateway on a free port with that schema's catalog and a short
``approval_wait``. Clients connect with alice's IdP token (at ``aal1``) as their password.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import textwrap
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import yaml
from api_support import Node, node_starter, same_origin
from bypass_corpus import CATALOG, loaded_corpus
from factor_support import PASSWORD, enroll_totp, own_grant, totp_code
from joserfc.jwk import KeySet, RSAKey
from jwt_support import AUDIENCE, ISSUER, JwksServer, idp_token
from push_support import Device, complete, start_enrollment, token_of

from piigate.callers import Caller
from piigate.config import IdentitySettings
from piigate.gateway.http.gate import GatewayCallers
from piigate.gateway.postgres.config import load_postgres_config_text
from piigate.gateway.postgres.desk import Desk
from piigate.gateway.postgres.server import PostgresGateway
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder

__all__ = ["POLICY", "GatewayEnv", "GatewayThread", "gateway_env"]

POLICY = textwrap.dedent(
    """\
    version: 1
    levels:
      aal1: {acr: "urn:piigate:aal1"}
      aal2: {acr: "urn:piigate:aal2"}
      aal3: {acr: "urn:piigate:aal3"}
    pii:
      ssn: {sensitivity: high}
      phone: {sensitivity: medium}
      mailing_address: {sensitivity: medium}
      bank_account: {sensitivity: high}
    factors:
      totp: {level: aal2}
      push: {level: aal2, number_matching: true}
      recovery: {level: aal2}
    rules:
      - name: read-identity-numbers
        when: {pii: [ssn, bank_account], action: [read]}
        require: {level: aal2, max_age: 5m}
        otherwise: mask
      - name: edit-identity-numbers
        when: {pii: [ssn, bank_account], action: [update, create]}
        require: {level: aal2, max_age: 5m}
      - name: export-pii
        when: {pii: any, action: [export]}
        require: {level: aal2, max_age: 5m}
      - name: delete-pii
        when: {pii: any, action: [delete]}
        require: {level: aal2, max_age: 0}
      - name: bulk-pii-change
        when: {pii: any, action: [update, delete], rows_over: 1}
        require: {level: aal3, max_age: 0}
    """
)


@dataclass
class GatewayEnv:
    node: Node
    gateway: PostgresGateway
    schema: str
    idp_key: RSAKey
    secret: str  # alice's TOTP secret
    device: Device  # alice's push device
    console: httpx.AsyncClient  # alice, logged in at the node

    @property
    def token(self) -> str:
        """Alice's IdP token at aal1, valid at the node's clock (which tests move on)."""
        now = int(self.node.clock.now().timestamp())
        return idp_token(
            self.idp_key,
            sub="alice",
            acr="urn:piigate:aal1",
            amr=["pwd"],
            iat=now - 60,
            auth_time=now - 60,
            exp=now + 600,
        )

    def dsn(self, **extra: str) -> str:
        parts = {
            "host": "127.0.0.1",
            "port": str(self.gateway.port),
            "user": "alice",
            "dbname": "test",
            "password": self.token,
            "options": f"-c search_path={self.schema}",
            "sslmode": "disable",
            **extra,
        }
        return " ".join(f"{k}='{v}'" for k, v in parts.items())

    async def asyncpg(self) -> asyncpg.Connection:
        """An asyncpg connection through the gateway, as alice (prepared, binary)."""
        return await asyncpg.connect(
            host="127.0.0.1",
            port=self.gateway.port,
            user="alice",
            password=self.token,
            database="test",
            server_settings={"search_path": self.schema},
            ssl=False,
        )

    def code(self, *, ago: int = 0) -> str:
        return totp_code(self.node, self.secret, ago=ago)


@contextlib.asynccontextmanager
async def gateway_env(
    tmp_path: Path,
    pg_admin_url: str,
    jwks: JwksServer,
    idp_key: RSAKey,
    *,
    approval_wait: str = "1s",
    **overrides: Any,
) -> AsyncIterator[GatewayEnv]:
    """``overrides`` replace fields of the gateway's configuration (``tls``, ...)."""
    holder = PolicyHolder(compile_policy(load_policy_text(POLICY)))
    identity = IdentitySettings(ISSUER, AUDIENCE, jwks.url)
    async with (
        node_starter(f"sqlite:///{tmp_path / 'piigate.db'}", tmp_path) as start,
        contextlib.AsyncExitStack() as stack,
    ):
        node = await start(policy=holder, identity=identity)
        await node.user("alice", PASSWORD)
        client = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=node.app),
                base_url="http://t",
                headers=same_origin(node.settings),
            )
        )
        login = await client.post("/v1/login", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200, login.text
        _, secret = await enroll_totp(node, client)
        grant = await own_grant(node, client, secret)  # a second factor needs a step-up
        started = await start_enrollment(client, **{"PIIGate-Grant": grant})
        enrolled, key = await complete(node, token_of(started["enroll_uri"]))
        assert enrolled.status_code == 201, enrolled.text
        device = Device(node, enrolled.json()["device_id"], key)
        with loaded_corpus(_libpq(pg_admin_url)) as schema:
            config = load_postgres_config_text(
                yaml.safe_dump(
                    {
                        "gateway": {
                            "postgres": {
                                "upstream": _upstream(pg_admin_url),
                                "approval_wait": approval_wait,
                                "catalog": CATALOG(schema),
                            }
                        }
                    }
                ),
                holder.current or compile_policy(load_policy_text(POLICY)),
            )
            config = dataclasses.replace(config, listen_port=0, **overrides)  # a free port
            services = node.services
            callers = GatewayCallers(jwt=services.jwt, api_keys=None, clock=node.clock)

            desk = Desk(services)

            async def authenticate(password: str) -> Caller:
                return await desk.caller(password, callers)

            gateway = PostgresGateway(config, desk=desk, authenticate=authenticate)
            await gateway.start()
            try:
                yield GatewayEnv(node, gateway, schema, idp_key, secret, device, client)
            finally:
                await gateway.aclose()


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _upstream(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host = parsed.host or "127.0.0.1"
    port = parsed.port or 5432
    return f"postgresql://{parsed.username or 'postgres'}@{host}:{port}/{parsed.database}"


class GatewayThread:
    """``gateway_env`` served by an event loop of its own thread, for blocking clients (the
    bypass corpus's ``observe`` uses sync psycopg)."""

    def __init__(self, tmp_path: Path, pg_admin_url: str, idp_key: RSAKey, wait: str) -> None:
        self._args = (tmp_path, pg_admin_url, idp_key, wait)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.env: GatewayEnv | None = None
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GatewayEnv:
        self._thread.start()
        self._ready.wait(60)
        if self.env is None:
            raise RuntimeError("the gateway did not start") from self.failure
        return self.env

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by __enter__
            self.failure = exc
            self._ready.set()

    async def _main(self) -> None:
        tmp_path, url, key, wait = self._args
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        jwks = JwksServer(KeySet([key]))
        try:
            async with gateway_env(tmp_path, url, jwks, key, approval_wait=wait) as env:
                self.env = env
                self._ready.set()
                await self._stop.wait()
        finally:
            jwks.close()
