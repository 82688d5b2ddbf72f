"""A PostgreSQL gateway in front of the local server, with a piigate node in process.

``gateway_env`` starts: a node on SQLite with an IdP (``jwt_support``) and ``POLICY``; the
local user alice with a TOTP factor; the bypass corpus in a fresh schema of the local server
(``bypass_corpus``); and the gateway on a free port with that schema's catalog and a short
``approval_wait``. Clients connect with alice's IdP token (at ``aal1``) as their password.
"""

from __future__ import annotations

import contextlib
import dataclasses
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from api_support import Node, node_starter
from bypass_corpus import CATALOG, loaded_corpus
from factor_support import enroll_totp, totp_code
from joserfc.jwk import RSAKey
from jwt_support import AUDIENCE, ISSUER, JwksServer, idp_token

from piigate.config import IdentitySettings
from piigate.gateway.http.gate import GatewayCallers
from piigate.gateway.postgres.config import load_postgres_config_text
from piigate.gateway.postgres.desk import Desk
from piigate.gateway.postgres.server import PostgresGateway
from piigate.model import Caller
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder

__all__ = ["POLICY", "GatewayEnv", "gateway_env"]

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
    """
)


@dataclass
class GatewayEnv:
    node: Node
    gateway: PostgresGateway
    schema: str
    token: str  # alice's IdP token, at aal1
    secret: str  # alice's TOTP secret

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

    def code(self, *, ago: int = 0) -> str:
        return totp_code(self.node, self.secret, ago=ago)


@contextlib.asynccontextmanager
async def gateway_env(
    tmp_path: Path,
    pg_admin_url: str,
    jwks: JwksServer,
    idp_key: RSAKey,
    users: Any,
    *,
    approval_wait: str = "1s",
) -> AsyncIterator[GatewayEnv]:
    holder = PolicyHolder(compile_policy(load_policy_text(POLICY)))
    identity = IdentitySettings(ISSUER, AUDIENCE, jwks.url)
    async with node_starter(f"sqlite:///{tmp_path / 'piigate.db'}", tmp_path) as start:
        node = await start(policy=holder, identity=identity)
        client = await users(node, "alice")
        _, secret = await enroll_totp(node, client)
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
            config = dataclasses.replace(config, listen_port=0)  # a free port
            services = node.services
            callers = GatewayCallers(jwt=services.jwt, api_keys=None, clock=node.clock)

            async def authenticate(password: str) -> Caller:
                caller = await callers.caller(f"Bearer {password}")
                assert caller is not None
                return caller

            gateway = PostgresGateway(config, desk=Desk(services), authenticate=authenticate)
            await gateway.start()
            try:
                token = idp_token(idp_key, sub="alice", acr="urn:piigate:aal1", amr=["pwd"])
                yield GatewayEnv(node, gateway, schema, token, secret)
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
