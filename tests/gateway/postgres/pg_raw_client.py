"""A bare PostgreSQL client over a socket, for what libpq will not send: a ``FunctionCall``, an
unknown message type, a ``GSSENCRequest``, an ``Execute`` with a row limit, a disconnect in
the middle of a statement. It speaks through the gateway's own message classes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from piigate.gateway.postgres import auth
from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.protocol import BackendParser

__all__ = ["RawClient", "errors"]


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = BackendParser()
        self.inbox: list[be.BackendMessage] = []

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, *messages: Any) -> None:
        for message in messages:
            self.writer.write(message if isinstance(message, bytes) else message.encode())

    async def answer_byte(self) -> bytes:
        """The one untagged byte answering an SSLRequest or GSSENCRequest."""
        await self.writer.drain()
        return await asyncio.wait_for(self.reader.readexactly(1), 10)

    async def next(self) -> be.BackendMessage | None:
        """The next message, or None when the gateway closed the connection."""
        await self.writer.drain()
        while not self.inbox:
            data = await asyncio.wait_for(self.reader.read(65536), 20)
            if not data:
                return None
            self.inbox.extend(self.parser.feed(data))
        return self.inbox.pop(0)

    async def until_ready(self) -> list[be.BackendMessage]:
        """Messages up to and including ReadyForQuery (or the end of the connection)."""
        got: list[be.BackendMessage] = []
        while (message := await self.next()) is not None:
            got.append(message)
            if isinstance(message, be.ReadyForQuery):
                break
        return got

    async def login(self, password: str, schema: str) -> list[be.BackendMessage]:
        options = f"-c search_path={schema}"
        params = (("user", "alice"), ("database", "test"), ("options", options))
        self.send(fe.StartupMessage(params))
        request = await self.next()
        assert isinstance(request, auth.AuthenticationCleartextPassword), request
        self.send(fe.PasswordMessage(password))
        got = await self.until_ready()
        assert isinstance(got[-1], be.ReadyForQuery), got
        return got

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def errors(messages: list[be.BackendMessage]) -> list[be.ErrorResponse]:
    return [m for m in messages if isinstance(m, be.ErrorResponse)]
