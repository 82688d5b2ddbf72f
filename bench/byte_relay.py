"""A bare byte relay on uvloop: the least any relay written in Python costs (bench/gateway_pg.py).

Run: ``.venv/bin/python bench/byte_relay.py PORT UPSTREAM_HOST UPSTREAM_PORT``, or
``byte_relay(...)`` for a process of it. Each client's connection gets one to the upstream;
bytes are copied both ways as they arrive, in the event loop's callbacks (asyncio protocols,
no task, no parsing), with the transports' flow control. It never reads a message: it is the
floor under the gateway's relay, not a gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import uvloop

from api import free_port, listening


class _Side(asyncio.Protocol):
    """One end; ``peer`` is the other. Bytes that come before the peer is connected wait."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.peer is not None and self.peer.early:
            for data in self.peer.early:
                transport.write(data)  # type: ignore[attr-defined]
            self.peer.early.clear()

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.early.append(data)
        else:
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:  # the other end reads no faster than this one writes
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


async def serve(port: int, upstream_host: str, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[object]] = set()

    def client() -> _Side:
        near, far = _Side(), _Side()
        near.peer, far.peer = far, near
        task = loop.create_task(loop.create_connection(lambda: far, upstream_host, upstream_port))
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return near

    server = await loop.create_server(client, "127.0.0.1", port)
    await server.serve_forever()


@contextlib.contextmanager
def byte_relay(tmp: Path, upstream_host: str, upstream_port: int) -> Iterator[tuple[int, int]]:
    """This file as a process in front of the upstream: its ``(port, pid)``, stopped after."""
    port = free_port()
    command = [sys.executable, __file__, str(port), upstream_host, str(upstream_port)]
    with listening(command, port, tmp / "byte_relay.log") as started:
        yield started


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
