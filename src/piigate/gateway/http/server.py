"""How ``piigate gateway http`` is served: uvicorn, whose HTTP/1.1 parser answers for the gateway
what it refuses to parse.

A request the parser cannot read (``Content-Length`` with ``Transfer-Encoding``, two lengths, a
bad chunk size, an invalid header) never reaches the gateway's application: uvicorn answers it
400 and closes the connection. Here that answer is the gateway's problem+json like every other
one, rather than uvicorn's plain-text line. WebSocket upgrades are not served (``ws="none"``):
an ``Upgrade`` header is hop-by-hop, and the request goes through the routes as a plain one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import uvicorn

from piigate.errors import BadRequest
from piigate.gateway.http.verdict import problem_answer

if TYPE_CHECKING:
    import asyncio

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
        def send_400_response(self, msg: str) -> None:
            self.transport.write(malformed_answer(self.server_state.default_headers))
            self.transport.close()

        def _unsupported_upgrade_warning(self) -> None:
            """Not a fault here: no upgrade is served, by design (the module's doc)."""

    return ProblemProtocol


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
