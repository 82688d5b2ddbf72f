"""A client's start-up at the PostgreSQL gateway: encryption, who it is, the upstream.

An ``SSLRequest`` is answered ``S`` (TLS with the configured certificate) or ``N``, a
``GSSENCRequest`` ``N``; a ``CancelRequest`` goes to ``cancels.cancel``. The client then gives
a piigate credential as a cleartext password, accepted only over TLS or from this host
(:func:`tls_or_local`). Its start-up settings are checked (``startup``), the gateway opens its
own upstream connection and greets the client with the server's parameters and a backend key
of its own.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from piigate.callers import Caller
from piigate.errors import PiigateError
from piigate.gateway.postgres import auth
from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.cancels import cancel
from piigate.gateway.postgres.protocol import AuthKind
from piigate.gateway.postgres.scram import (
    MECHANISM,
    ScramError,
    ScramServer,
    ScramVerifier,
    new_server_nonce,
)
from piigate.gateway.postgres.startup import StartupRefused, upstream_parameters
from piigate.gateway.postgres.statements import error
from piigate.gateway.postgres.upstream import Upstream, UpstreamError, open_upstream
from piigate.identity.login import DB_USER_PREFIX
from piigate.model import Context

if TYPE_CHECKING:
    from piigate.gateway.postgres.session import ClientSession

__all__ = ["start_session", "tls_or_local"]

log = structlog.get_logger("piigate.gateway.postgres")


def tls_or_local(client_ip: str | None, *, tls: bool) -> bool:
    """May a client send its piigate credential in cleartext: over TLS, or from this host (a
    loopback address, an IPv4 one mapped into IPv6 included, or a Unix socket: no address)."""
    if tls or client_ip is None:
        return True
    try:
        address = ipaddress.ip_address(client_ip.split("%", 1)[0])  # no IPv6 zone
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


async def start_session(self: ClientSession) -> bool:
    """Encryption, the credential, the upstream connection, the greeting; False when the
    connection is to end (a cancel request, a refusal: the client was told)."""
    message = await self.next_message()
    while isinstance(message, fe.SSLRequest | fe.GSSENCRequest):
        tls = self.links.tls if isinstance(message, fe.SSLRequest) else None
        self.send(be.SSLAnswer(tls is not None))
        if tls is not None:
            await self.client.drain()
            await self.client.start_tls(tls)
        message = await self.next_message()
    if isinstance(message, fe.CancelRequest):
        await cancel(self.links, message)
        return False
    if not isinstance(message, fe.StartupMessage):
        return False
    caller = await _authenticate(self, message)
    if caller is None:
        return False
    self.caller = caller
    app = message.get("application_name")
    self.context = Context(ip=self.client_ip, user_agent=f"postgres/{app}" if app else None)
    try:
        params = upstream_parameters(message.parameters)
    except StartupRefused as exc:
        text = f"the start-up parameter {exc} is not passed through the gateway"
        self.send(error("0A000", text, "FATAL"))
        return False
    try:
        self.upstream = await open_upstream(self.links.config.upstream, params)
    except UpstreamError as exc:
        log.error("pg_upstream_unavailable", problem=str(exc))
        self.send(error("08006", "the database behind the gateway is unavailable", "FATAL"))
        return False
    self.search_path = self.upstream.search_path
    _greet(self, self.upstream)
    return True


async def _authenticate(self: ClientSession, startup: fe.StartupMessage) -> Caller | None:
    user = startup.get("user") or ""
    lookup = self.links.database_credentials
    if lookup is not None and user.startswith(DB_USER_PREFIX):
        return await _scram(self, user, lookup)
    if not tls_or_local(self.client_ip, tls=self.client.get_extra_info("ssl_object") is not None):
        self.send(
            error(
                "28000",
                "connect with TLS (sslmode=require): the password is a piigate token",
                "FATAL",
            )
        )
        return None
    self.parser.expect_auth(AuthKind.PASSWORD)
    self.send(auth.AuthenticationCleartextPassword())
    await self.client.drain()
    answer = await self.next_message()
    if not isinstance(answer, fe.PasswordMessage) or not answer.password:
        return None
    try:
        caller = await self.links.authenticate(answer.password)
    except PiigateError as exc:
        log.info("pg_auth_refused", user=startup.get("user"), reason=exc.code)
        self.send(error("28P01", f"password authentication failed: {exc.detail}", "FATAL"))
        return None
    except Exception as exc:  # the store or the IdP's keys: fail closed
        log.error("pg_auth_failed", error=type(exc).__name__)
        self.send(error("28000", "the gateway cannot check credentials right now", "FATAL"))
        return None
    self.send(auth.AuthenticationOk())
    return caller


async def _scram(
    self: ClientSession,
    user: str,
    lookup: Callable[[str], Awaitable[tuple[str, Caller] | None]],
) -> Caller | None:
    """SCRAM-SHA-256 for a database credential (the user ``dbc_<id>``), safe without TLS: the
    password never crosses. An unknown credential goes through the same exchange with a
    verifier no password matches, so a client learns nothing from how it fails."""
    try:
        found = await lookup(user[len(DB_USER_PREFIX) :])
    except Exception as exc:  # the store: fail closed
        log.error("pg_auth_failed", error=type(exc).__name__)
        self.send(error("28000", "the gateway cannot check credentials right now", "FATAL"))
        return None
    if found is None:
        verifier = ScramVerifier.from_password(
            secrets.token_urlsafe(32), salt=secrets.token_bytes(16)
        )
    else:
        verifier = ScramVerifier.parse(found[0])
    server = ScramServer(verifier, server_nonce=new_server_nonce())
    try:
        self.parser.expect_auth(AuthKind.SASL_INITIAL)
        self.send(auth.AuthenticationSASL((MECHANISM,)))
        await self.client.drain()
        first = await self.next_message()
        if not isinstance(first, fe.SASLInitialResponse) or first.data is None:
            return None
        if first.mechanism != MECHANISM:
            raise ScramError("a mechanism the gateway did not offer")
        self.parser.expect_auth(AuthKind.SASL)
        self.send(auth.AuthenticationSASLContinue(server.first(first.data)))
        await self.client.drain()
        final = await self.next_message()
        if not isinstance(final, fe.SASLResponse):
            return None
        proof = server.final(final.data)
    except ScramError as exc:
        log.info("pg_auth_refused", user=user, reason="scram", problem=str(exc))
        self.send(error("28P01", "password authentication failed", "FATAL"))
        return None
    if found is None:  # cannot happen: no password matches the made-up verifier
        return None
    self.send(auth.AuthenticationSASLFinal(proof), auth.AuthenticationOk())
    return found[1]


def _greet(self: ClientSession, upstream: Upstream) -> None:
    for status in upstream.statuses:
        self.send(status)
    peers = self.links.peers
    key = peers.new_key() if peers is not None else (secrets.randbits(31), secrets.token_bytes(4))
    self.key = key
    self.links.sessions[key] = self
    self.send(be.BackendKeyData(*key), be.ReadyForQuery(upstream.status))
    self.replies.status = upstream.status
