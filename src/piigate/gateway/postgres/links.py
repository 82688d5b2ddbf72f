"""A session's two connections, the client's and the server's, as asyncio protocols.

A :class:`Link` is what a session needs of a connection and no more: what arrives is read by the
session's task (:meth:`Link.read`), or, once :meth:`Link.receive_with` is called, handed to a
function as it arrives, in the event loop's own callback (the server's replies: no task switch,
buffer or coroutine per chunk, which asyncio's streams cost); what is written goes out at once,
and :meth:`Link.drain` waits while the peer does not keep up (the transport's flow control).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, Final, cast

__all__ = ["Link"]

# Reading stops while this much has arrived that the session has not read (a client that sends
# on while a statement waits for its approval).
_READ_LIMIT: Final = 256 * 1024


class Link(asyncio.Protocol):
    def __init__(self, on_connection: Callable[[Link], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self._on_connection = on_connection
        self._received: list[bytes] = []
        self._size = 0
        self._eof = False
        self._reading: asyncio.Future[None] | None = None
        self._receiver: Callable[[bytes], None] | None = None
        self._first_look: Callable[[bytes], bool] | None = None
        self._nudged = False
        self._on_end: Callable[[], None] | None = None
        self._paused = False  # the peer does not keep up: writes queue in the transport
        self._drained: list[asyncio.Future[None]] = []
        self._on_drained: list[Callable[[], None]] = []
        self.lost = False

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport's subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        if self._on_connection is not None:
            self._on_connection(self)

    def data_received(self, data: bytes) -> None:
        if self._receiver is not None:
            self._receiver(data)
            return
        reading = self._reading
        if (
            self._first_look is not None
            and reading is not None
            and not reading.done()
            and self._first_look(data)
        ):
            return
        self._received.append(data)
        self._size += len(data)
        if self._size > _READ_LIMIT and self.transport is not None:
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self.lost = True
        self._wake_reader()
        self._paused = False
        self._wake_drained()
        if self._on_end is not None:
            self._on_end()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drained()

    # -- for the session ----------------------------------------------------------------------
    async def read(self) -> bytes:
        """What arrived since the last read, waiting for something; ``b""`` at the end."""
        while not self._received and not self._eof and not self._nudged:
            self._reading = asyncio.get_running_loop().create_future()
            try:
                await self._reading
            finally:
                self._reading = None
        self._nudged = False
        data = b"".join(self._received)
        if self._size > _READ_LIMIT and self.transport is not None and not self.lost:
            self.transport.resume_reading()
        self._received.clear()
        self._size = 0
        return data

    def at_eof(self) -> bool:
        """The peer has finished sending, and all it sent was read."""
        return self._eof and not self._received

    def first_look(self, look: Callable[[bytes], bool]) -> None:
        """Offer what arrives while a :meth:`read` waits to ``look`` first, in the event
        loop's callback; it returns True when it took the data (the read then waits on,
        unless :meth:`nudge` ends it)."""
        self._first_look = look

    def nudge(self) -> None:
        """End the :meth:`read` that waits, or the next one, even with nothing read (``b""``
        then, which is the end only when :meth:`at_eof` says so)."""
        self._nudged = True
        self._wake_reader()

    def receive_with(self, receiver: Callable[[bytes], None], on_end: Callable[[], None]) -> None:
        """Hand everything that arrives from now on to ``receiver``, as it arrives (first what
        arrived and was not read), and call ``on_end`` when the connection is gone."""
        self._receiver, self._on_end = receiver, on_end
        if self.lost:
            on_end()
            return
        if self._received:
            data = b"".join(self._received)
            self._received.clear()
            self._size = 0
            receiver(data)

    def write(self, data: bytes) -> None:
        """Send ``data`` (nothing once the connection is gone: there is no one to send to)."""
        assert self.transport is not None
        if not self.lost:
            self.transport.write(data)

    @property
    def writing_paused(self) -> bool:
        return self._paused

    async def drain(self) -> None:
        """Wait while the peer does not keep up; ``ConnectionResetError`` once it is gone."""
        if self.lost:
            raise ConnectionResetError("the connection is closed")
        if self._paused:
            waiter = asyncio.get_running_loop().create_future()
            self._drained.append(waiter)
            await waiter
            if self.lost:
                raise ConnectionResetError("the connection is closed")

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the peer keeps up again (or the connection is gone)."""
        if not self._paused:
            callback()
        else:
            self._on_drained.append(callback)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.resume_reading()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Go on over TLS as its server (the client asked with an ``SSLRequest``)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(self.transport, self, context, server_side=True)
        self.transport = cast(asyncio.Transport, transport)

    def get_extra_info(self, name: str) -> Any:
        return None if self.transport is None else self.transport.get_extra_info(name)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- waking -------------------------------------------------------------------------------
    def _wake_reader(self) -> None:
        if self._reading is not None and not self._reading.done():
            self._reading.set_result(None)

    def _wake_drained(self) -> None:
        waiters, self._drained = self._drained, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        callbacks, self._on_drained = self._on_drained, []
        for callback in callbacks:
            callback()
