"""How ``piigate gateway http`` writes to a connection (``gateway/http/server.py``): what one
turn of the event loop writes leaves in one write, and nothing is lost on close."""

from __future__ import annotations

import asyncio
from typing import Any

from piigate.gateway.http.server import _Coalesced


class Recording:
    """A transport that records its writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1234) if name == "peername" else default


async def test_what_one_turn_writes_leaves_in_one_write() -> None:
    socket = Recording()
    transport = _Coalesced(socket, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"")
    transport.write(b"{}")
    assert socket.writes == []
    await asyncio.sleep(0)
    assert socket.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert socket.writes[1:] == [b"next"]
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1234)  # the socket's own


async def test_closing_writes_what_is_pending_first() -> None:
    socket = Recording()
    transport = _Coalesced(socket, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"part of an answer")
    transport.close()
    assert socket.writes == [b"part of an answer"] and socket.closed
    await asyncio.sleep(0)  # the flush scheduled for the turn finds nothing left
    assert socket.writes == [b"part of an answer"]


async def test_nothing_is_written_to_a_connection_closed_meanwhile() -> None:
    socket = Recording()
    transport = _Coalesced(socket, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"late")
    socket.closed = True  # the peer went away
    await asyncio.sleep(0)
    assert socket.writes == []
