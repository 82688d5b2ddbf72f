"""How ``piigate gateway http`` is served: uvicorn, whose HTTP/1.1 parser answers for the gateway
what it refuses to parse.

A request the parser cannot read (``Content-Length`` with ``Transfer-Encoding``, two lengths, a
bad chunk size, an invalid header) never reaches the gateway's application: uvicorn answers it
400 and closes the connection. Here that answer is the gateway's problem+json like every other
one, rather than uvicorn's plain-text line. WebSocket upgrades are not served (``ws="none"``):
an ``Upgrade`` header is hop-by-hop, and the request goes through the routes as a plain one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from piigate.errors import BadRequest
from piigate.gateway.http.verdict import problem_answer

__all__ = ["MALFORMED_DETAIL", "gateway_server", "malformed_answer", "problem_protocol"]

MALFORMED_DETAIL = "the request is not valid HTTP/1.1 (its framing or a header)"


def malformed_answer(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole 400 answer to a request the parser refused, ``Connection: close``."""
    answer = problem_answer(BadRequest(MALFORMED_DETAIL))
    lines = [b"HTTP/1.1 400 Bad Request"]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in answer.headers]
    lines += [f"content-length: {len(answer.body)}".encode(), b"connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + answer.body


def problem_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (httptools, else h11) answering parse errors with
    :func:`malformed_answer`."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    class ProblemProtocol(Base):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # The answers' writes coalesced; reading and its flow control stay on the socket's.
            self.transport = _Coalesced(transport, self.loop)  # type: ignore[assignment]  # duck-typed

        def send_400_response(self, msg: str) -> None:
            self.transport.write(malformed_answer(self.server_state.default_headers))
            self.transport.close()

        def _unsupported_upgrade_warning(self) -> None:
            """Not a fault here: no upgrade is served, by design (the module's doc)."""

    return ProblemProtocol


class _Coalesced:
    """A connection's transport whose writes within one turn of the event loop go to the socket
    as one write, at the end of that turn (or when the connection is closed). Everything else
    is the transport's own."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def gateway_server(app: Any, host: str, port: int) -> uvicorn.Server:
    """The server of the gateway's ASGI ``app`` on ``host:port``."""
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http=problem_protocol(),
            ws="none",
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            lifespan="off",
        )
    )
