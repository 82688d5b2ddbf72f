"""Cancel requests between the workers of one PostgreSQL gateway (``workers: N``).

A client cancels a running statement by opening a new connection and sending its session's key
(``CancelRequest``). With several workers on one address, that connection reaches any of them,
most likely not the one running the session. So each worker gives its sessions keys whose
process id is its own index modulo the number of workers (:meth:`CancelPeers.new_key`), listens
on a Unix socket of its own in a directory only the gateway's account can enter (the
supervisor's), and hands a cancel whose key belongs to another worker to that worker's socket
(:meth:`CancelPeers.forward`), where it is handled as if it had come to it: the key is checked
there, against that worker's sessions. A cancel never travels further than one hop, and one for
a key no worker issued cancels nothing, as with one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import structlog

from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.protocol import FrontendParser

__all__ = ["CancelPeers"]

log = structlog.get_logger("piigate.gateway.postgres")

_MAX_CANCEL: Final = 8 + 4 + 256  # length, code, process id, the longest key (protocol 3.2)
_TIMEOUT: Final = 5.0  # seconds to hand a cancel over, or to read one


class CancelPeers:
    """Worker ``index`` of ``count``, whose peers listen in ``directory``."""

    def __init__(self, index: int, count: int, directory: Path) -> None:
        self.index = index
        self.count = count
        self.directory = directory
        self._server: asyncio.Server | None = None

    def new_key(self) -> tuple[int, bytes]:
        """A session key that names this worker: its process id is ``index`` modulo
        ``count`` (and, like PostgreSQL's, positive in 31 bits)."""
        base = secrets.randbits(31) // self.count * self.count
        return base + self.index, secrets.token_bytes(4)

    def owner(self, process_id: int) -> int:
        return process_id % self.count

    def _socket(self, index: int) -> str:
        return str(self.directory / f"cancel-{index}.sock")

    def _cleared(self, index: int) -> str:
        """Worker ``index``'s socket path, with what a predecessor left there removed."""
        path = self._socket(index)
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()
        return path

    async def forward(self, message: fe.CancelRequest) -> None:
        """Hand ``message`` to the worker whose key it quotes (nothing when that one is gone:
        there is no statement of its to cancel)."""
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(_TIMEOUT):
                _, writer = await asyncio.open_unix_connection(
                    self._socket(self.owner(message.process_id))
                )
                writer.write(message.encode())
                await writer.drain()
                writer.close()
                await writer.wait_closed()

    async def start(self, cancel: Callable[[fe.CancelRequest], Awaitable[None]]) -> None:
        """Take the cancels the other workers hand over, each with ``cancel``."""

        async def handed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                data = b""
                async with asyncio.timeout(_TIMEOUT):  # to the sender's end, however it comes
                    while len(data) < _MAX_CANCEL:
                        if not (chunk := await reader.read(_MAX_CANCEL - len(data))):
                            break
                        data += chunk
                messages = FrontendParser().feed_framed(data)
                if messages and isinstance(messages[0][0], fe.CancelRequest):
                    await cancel(messages[0][0])
            except Exception as exc:  # a malformed hand-over cancels nothing
                log.info("pg_cancel_handover_refused", error=type(exc).__name__)
            finally:
                writer.close()

        self._server = await asyncio.start_unix_server(handed, self._cleared(self.index))

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
