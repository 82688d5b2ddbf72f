"""The gateway's own connection to the database: startup and authentication as its service
role (trust, cleartext, MD5 or SCRAM-SHA-256), never with the client's credential.

The server's replies up to the first ``ReadyForQuery`` (parameter statuses, the backend key)
are returned for the session to pass on; the password is never logged or put in an error.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from piigate.gateway.postgres import auth
from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.config import UpstreamDsn
from piigate.gateway.postgres.links import Link
from piigate.gateway.postgres.protocol import BackendParser

__all__ = ["Upstream", "UpstreamError", "open_upstream"]


class UpstreamError(Exception):
    """The database refused or could not be reached; the text names no secret."""


@dataclass
class Upstream:
    link: Link
    parser: BackendParser  # what it holds after the start-up (``pending``) is the session's
    statuses: list[be.ParameterStatus]
    key: be.BackendKeyData | None
    status: str
    search_path: str | None = None


async def open_upstream(
    dsn: UpstreamDsn, parameters: dict[str, str], *, limit: float = 10.0
) -> Upstream:
    loop = asyncio.get_running_loop()
    try:
        connecting = loop.create_connection(Link, dsn.host, dsn.port)
        _, link = await asyncio.wait_for(connecting, limit)
    except (OSError, TimeoutError) as exc:
        raise UpstreamError(f"the database at {dsn.host}:{dsn.port} cannot be reached") from exc
    try:
        return await asyncio.wait_for(_start(link, dsn, parameters), limit)
    except BaseException:
        link.close()
        raise


async def _start(link: Link, dsn: UpstreamDsn, parameters: dict[str, str]) -> Upstream:
    params = {**parameters, "user": dsn.user, "database": dsn.database}
    link.write(fe.StartupMessage(tuple(params.items())).encode())
    parser = BackendParser()
    statuses: list[be.ParameterStatus] = []
    key: be.BackendKeyData | None = None
    scram: _ScramClient | None = None
    pending: list[be.BackendMessage] = []
    while True:
        while not pending:
            data = await link.read()
            if not data:
                raise UpstreamError("the database closed the connection during start-up")
            pending.extend(parser.feed(data))
        message = pending.pop(0)
        if isinstance(message, be.ErrorResponse):
            code = message.get("C") or "?"
            raise UpstreamError(f"the database refused the gateway's connection ({code})")
        if isinstance(message, auth.AuthenticationOk):
            continue
        if isinstance(message, auth.AuthenticationCleartextPassword):
            link.write(fe.PasswordMessage(_password(dsn)).encode())
        elif isinstance(message, auth.AuthenticationMD5Password):
            inner = hashlib.md5((_password(dsn) + dsn.user).encode()).hexdigest()  # noqa: S324
            outer = hashlib.md5(inner.encode() + message.salt).hexdigest()  # noqa: S324
            link.write(fe.PasswordMessage("md5" + outer).encode())
        elif isinstance(message, auth.AuthenticationSASL):
            if "SCRAM-SHA-256" not in message.mechanisms:
                raise UpstreamError("the database offers no SASL mechanism the gateway knows")
            scram = _ScramClient(_password(dsn))
            first = fe.SASLInitialResponse("SCRAM-SHA-256", scram.first())
            link.write(first.encode())
        elif isinstance(message, auth.AuthenticationSASLContinue) and scram is not None:
            link.write(fe.SASLResponse(scram.final(message.data)).encode())
        elif isinstance(message, auth.AuthenticationSASLFinal) and scram is not None:
            scram.verify(message.data)
        elif isinstance(message, be.ParameterStatus):
            statuses.append(message)
        elif isinstance(message, be.BackendKeyData):
            key = message
        elif isinstance(message, be.ReadyForQuery):
            if pending:
                raise UpstreamError("the database sent data after its start-up")
            path = await _search_path(link, parser)
            return Upstream(link, parser, statuses, key, message.status, path)
        elif isinstance(message, be.NoticeResponse):
            continue
        else:
            raise UpstreamError("the database asked for an authentication the gateway lacks")
        await link.drain()


async def _search_path(link: Link, parser: BackendParser) -> str | None:
    """The session's search path as the server set it up (the client's ``options`` included):
    unqualified names in the client's statements are read with it."""
    link.write(fe.Query("SHOW search_path").encode())
    await link.drain()
    found: str | None = None
    while True:
        data = await link.read()
        if not data:
            raise UpstreamError("the database closed the connection during start-up")
        for message in parser.feed(data):
            if isinstance(message, be.DataRow) and message.values and message.values[0]:
                found = message.values[0].decode()
            elif isinstance(message, be.ReadyForQuery):
                return found


def _password(dsn: UpstreamDsn) -> str:
    if dsn.password is None:
        raise UpstreamError(
            "the database asks for a password: put it in the upstream URL or in "
            "PIIGATE_PG_UPSTREAM_PASSWORD"
        )
    return dsn.password


class _ScramClient:
    """The client side of SCRAM-SHA-256 (RFC 5802/7677), without channel binding."""

    def __init__(self, password: str) -> None:
        self.password = password.encode()
        self.nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.server_signature = b""

    def first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        attrs = dict(part.split("=", 1) for part in text.split(","))
        nonce, salt, rounds = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.nonce) or rounds < 4096:
            raise UpstreamError("the database's SCRAM answer is not acceptable")
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, rounds)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        message = f"{self.first_bare},{text},{without_proof}".encode()
        signature = hmac.digest(stored, message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.server_signature = hmac.digest(server_key, message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        text = server_final.decode()
        if not text.startswith("v=") or not hmac.compare_digest(
            base64.b64decode(text[2:]), self.server_signature
        ):
            raise UpstreamError("the database's SCRAM signature does not match")
