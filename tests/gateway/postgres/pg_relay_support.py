"""A test relay between a real PostgreSQL client and server that parses both directions with
``FrontendParser``/``BackendParser`` and forwards the RE-ENCODED messages, never the raw bytes:
a client that works through it proves the codec byte-exact on real traffic.

With ``password`` set, the relay authenticates the client itself with ``ScramServer`` and then
connects upstream (trust authentication), as the gateway will.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from piigate.gateway.postgres import auth
from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.protocol import AuthKind, BackendParser, FrontendParser
from piigate.gateway.postgres.scram import MECHANISM, ScramError, ScramServer, ScramVerifier

__all__ = ["Relay", "relay"]

_AUTH_KINDS: dict[type[Any], AuthKind] = {
    auth.AuthenticationSASL: AuthKind.SASL_INITIAL,
    auth.AuthenticationSASLContinue: AuthKind.SASL,
    auth.AuthenticationCleartextPassword: AuthKind.PASSWORD,
    auth.AuthenticationMD5Password: AuthKind.PASSWORD,
}


class _Inbox:
    """Messages from one side, one at a time."""

    def __init__(self, reader: asyncio.StreamReader, parser: FrontendParser) -> None:
        self.reader, self.parser = reader, parser
        self.pending: list[fe.FrontendMessage] = []

    async def next(self) -> fe.FrontendMessage:
        while not self.pending:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("client went away")
            self.pending.extend(self.parser.feed(data))
        return self.pending.pop(0)


async def reader_closed(inbox: _Inbox) -> None:
    """Wait for the client to hang up (a client that refused the server must)."""
    with contextlib.suppress(ConnectionError):
        while True:
            await inbox.next()


class Relay:
    def __init__(
        self, host: str, port: int, *, password: str | None = None, tamper: bool = False
    ) -> None:
        self.upstream = (host, port)
        self.tamper = tamper  # send a wrong server signature: the client must refuse it
        self.verifier = (
            ScramVerifier.from_password(password, salt=secrets.token_bytes(16))
            if password is not None
            else None
        )
        self.frontend: Counter[str] = Counter()
        self.backend: Counter[str] = Counter()
        self.failures: list[str] = []
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        parser, inbox = FrontendParser(), None
        try:
            inbox = _Inbox(reader, parser)
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            back = BackendParser()
            if self.verifier is not None and not await self._authenticate(inbox, writer, up_writer):
                up_writer.close()
                return
            pending = inbox.pending
            inbox.pending = []
            for message in pending:
                self._forward_front(message, back, up_writer)
            await asyncio.gather(
                self._pump_front(reader, parser, back, up_writer),
                self._pump_back(up_reader, back, parser, writer),
            )
        except asyncio.CancelledError:
            pass  # the relay is shutting down: end quietly, as a finished connection
        except Exception as error:  # a test helper: the tests assert that none came
            self.failures.append(f"{type(error).__name__}: {error}")
        finally:
            writer.close()
            self._tasks.discard(task)

    def _forward_front(
        self, message: fe.FrontendMessage, back: BackendParser, up: asyncio.StreamWriter
    ) -> None:
        self.frontend[type(message).__name__] += 1
        if isinstance(message, fe.SSLRequest | fe.GSSENCRequest):
            back.expect_ssl_answer()
        up.write(message.encode())

    async def _pump_front(
        self,
        reader: asyncio.StreamReader,
        parser: FrontendParser,
        back: BackendParser,
        up: asyncio.StreamWriter,
    ) -> None:
        while data := await reader.read(65536):
            for message in parser.feed(data):
                self._forward_front(message, back, up)
            await up.drain()
        if up.can_write_eof():
            up.write_eof()

    async def _pump_back(
        self,
        up: asyncio.StreamReader,
        parser: BackendParser,
        front: FrontendParser,
        writer: asyncio.StreamWriter,
    ) -> None:
        while data := await up.read(65536):
            for message in parser.feed(data):
                self.backend[type(message).__name__] += 1
                if type(message) in _AUTH_KINDS:
                    front.expect_auth(_AUTH_KINDS[type(message)])
                writer.write(message.encode())
            if writer.is_closing():
                break
            await writer.drain()
        writer.close()

    async def _authenticate(
        self, inbox: _Inbox, writer: asyncio.StreamWriter, up: asyncio.StreamWriter
    ) -> bool:
        """Answer encryption requests with N, run SCRAM with the client, then start upstream."""
        assert self.verifier is not None
        startup = await inbox.next()
        while isinstance(startup, fe.SSLRequest | fe.GSSENCRequest):
            writer.write(be.SSLAnswer(False).encode())
            startup = await inbox.next()
        assert isinstance(startup, fe.StartupMessage)
        server = ScramServer(self.verifier, server_nonce=secrets.token_urlsafe(18))
        try:
            final = await self._scram(server, inbox, writer)
        except ScramError as error:
            self.failures.append(f"scram: {error}")
            fields = (("S", "FATAL"), ("C", "28P01"), ("M", "password authentication failed"))
            writer.write(be.ErrorResponse(fields).encode())
            await writer.drain()
            return False
        if self.tamper:  # the client must hang up: nothing goes upstream
            final = final[:-4] + (b"AAA=" if final[-4:] != b"AAA=" else b"BBB=")
            writer.write(auth.AuthenticationSASLFinal(final).encode())
            await reader_closed(inbox)
            return False
        writer.write(auth.AuthenticationSASLFinal(final).encode())
        up.write(startup.encode())  # upstream trusts the relay: its AuthenticationOk goes on
        return True

    async def _scram(
        self, server: ScramServer, inbox: _Inbox, writer: asyncio.StreamWriter
    ) -> bytes:
        inbox.parser.expect_auth(AuthKind.SASL_INITIAL)
        writer.write(auth.AuthenticationSASL((MECHANISM,)).encode())
        first = await inbox.next()
        assert isinstance(first, fe.SASLInitialResponse)
        assert first.mechanism == MECHANISM and first.data is not None
        inbox.parser.expect_auth(AuthKind.SASL)
        writer.write(auth.AuthenticationSASLContinue(server.first(first.data)).encode())
        response = await inbox.next()
        assert isinstance(response, fe.SASLResponse)
        return server.final(response.data)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def relay(
    host: str, port: int, *, password: str | None = None, tamper: bool = False
) -> AsyncIterator[Relay]:
    proxy = Relay(host, port, password=password, tamper=tamper)
    server = await asyncio.start_server(proxy._handle, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        await proxy.aclose()
        await server.wait_closed()
