"""The audit group commit in a child process: the audit writer outside the server's GIL.

The group-commit transaction is driver work plus Python work (binding, hashing). In a thread of
the server it shares the GIL with the event loop: every statement the driver steps releases the
GIL and must win it back from a busy loop, and the thread's Python work stops the loop
meanwhile. In a child process the same transaction (``piigate.store.audit.AuditStore``, through
the synchronous driver: the stdlib's ``sqlite3`` or psycopg) runs on its own interpreter and
core, and the server only ships each batch down a pipe and reads the links back
(docs/BENCHMARKS.md measures both).

Protocol: length-prefixed pickle frames over the child's stdin/stdout (a private pipe between
a parent and the child it started, running the same code). The store's URL comes first, on
the pipe rather than the command line (a password would show in process listings). The child
answers every batch, in order, with ``("ok", links)`` or ``("unavailable" | "error", exception
class name)``, and first sends ``("ready", pid)`` once the store answers. It exits at end of
input, so it never outlives its parent, and it ignores SIGINT/SIGTERM: a Ctrl-C or a service
manager's TERM to the process group must not cut off the parent's final flush.

Durability: the child commits durably (SQLite: ``synchronous=FULL``;
``Database.run_durable_blocking``) before answering, and the parent acknowledges nothing
before the answer. A child that dies mid-batch fails that batch with ``StoreUnavailable`` (its
events may or may not be in the chain; they were not acknowledged); the next batch starts a new
child. A child that cannot be started at all (``WriterUnavailable``: the interpreter will not
run, or it dies before it can report) has seen nothing of the batch, so the log writes that
batch and the rest from a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any

from piigate.audit.chain import event_hash_text
from piigate.model import AuditEvent
from piigate.store.audit import AuditStore, BatchItem, Written
from piigate.store.db import Database, StoreUnavailable

__all__ = ["ProcessWriter", "WriterUnavailable", "child_command", "main"]

_logger = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
# What crosses the pipe for one item: (type, at, subject_id) or None, the canonical text, the
# rows as (table name, row), and its condition (challenge id, at). The event's data crosses
# only as its text; the two times as naive UTC (``_naive``).
_Wire = tuple[
    tuple[str, Any, str | None] | None,
    str,
    tuple[tuple[str, Any], ...],
    tuple[str, Any] | None,
]


class WriterUnavailable(StoreUnavailable):
    """The child could not be started (not a store failure); nothing of the batch was sent."""


class ProcessWriter:
    """The parent's end: start the child, ship batches, read their links; one batch at a time."""

    def __init__(self, url: str, *, start_timeout: float = 60.0) -> None:
        self.url = url
        self.start_timeout = start_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._shipped = False  # a batch sent by ship, its answer not read yet

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        """Start the child and wait until it has opened the store; StoreUnavailable if not."""
        async with self._lock:
            await self._ensure()

    def ship(self, items: Sequence[BatchItem]) -> bool:
        """Send ``items`` to the running child at once, from the caller's turn of the event
        loop, when no batch is in flight: True if sent, and the next :meth:`write` must then be
        of these items (it reads their answer only). False, nothing sent: the child is not
        running, or a batch is in flight."""
        proc = self._proc
        if self._shipped or self._lock.locked() or proc is None or proc.returncode is not None:
            return False
        assert proc.stdin is not None
        if proc.stdin.is_closing():
            return False
        proc.stdin.write(_frame([_to_wire(item) for item in items]))
        self._shipped = True
        return True

    async def write(self, items: Sequence[BatchItem]) -> list[Written]:
        """Commit ``items`` in one transaction in the child; what became of each, in order.
        After :meth:`ship` they are on their way: only their answer is read."""
        shipped = self._shipped
        frame = b"" if shipped else _frame([_to_wire(item) for item in items])
        async with self._lock:
            self._shipped = False
            proc = self._proc if shipped else await self._ensure()
            try:
                assert proc is not None and proc.stdin is not None
                if not shipped:
                    proc.stdin.write(frame)
                await proc.stdin.drain()
                status, value = await _read_frame(proc)
            except BaseException as error:
                # Lost or cancelled mid-batch: the pipe is out of step, so this child is done.
                await self._discard()
                if isinstance(error, Exception):
                    raise StoreUnavailable("the audit writer process stopped") from error
                raise
        if status == "ok":
            return list(value)
        if status != "unavailable":
            _logger.error("audit writer process: batch failed (%s)", value)
        raise StoreUnavailable("the audit event could not be stored")

    def abandon(self) -> None:
        """A batch was shipped whose answer will not be read: the child is killed (its pipe is
        out of step); the next batch starts another."""
        proc, self._proc, self._shipped = self._proc, None, False
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):  # it exited already
                proc.kill()

    async def stop(self) -> None:
        """End the child's input and wait for it to exit (it has nothing in flight)."""
        async with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            if proc.stdin is not None:
                with contextlib.suppress(ConnectionError):
                    proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                await _kill(proc)

    async def _ensure(self) -> asyncio.subprocess.Process:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            return proc
        self._proc = None
        try:
            proc = await asyncio.create_subprocess_exec(
                *child_command(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            raise WriterUnavailable("the audit writer process could not be started") from error
        try:
            # The store's URL goes down the private pipe, never on the command line, where a
            # password would show in every process listing.
            assert proc.stdin is not None
            proc.stdin.write(_frame(self.url))
            await proc.stdin.drain()
            status, value = await asyncio.wait_for(_read_frame(proc), self.start_timeout)
        except (asyncio.IncompleteReadError, ConnectionError) as error:  # it exited at once
            await _kill(proc)
            raise WriterUnavailable("the audit writer process did not start") from error
        except BaseException as error:
            await _kill(proc)
            if isinstance(error, Exception):
                raise StoreUnavailable("the audit writer process did not start") from error
            raise
        if status != "ready":
            await _kill(proc)
            raise StoreUnavailable(f"the audit writer process did not start ({value})")
        self._proc = proc
        return proc

    async def _discard(self) -> None:
        proc, self._proc, self._shipped = self._proc, None, False
        if proc is not None:
            await _kill(proc)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited already
        proc.kill()
    await proc.wait()


def child_command() -> list[str]:
    """The child's command line: this interpreter, this package (the store's URL follows on
    its standard input)."""
    code = "import sys; from piigate.audit.writer import main; sys.exit(main())"
    return [sys.executable, "-c", code]


def _frame(message: object) -> bytes:
    payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


async def _read_frame(proc: asyncio.subprocess.Process) -> tuple[str, Any]:
    assert proc.stdout is not None
    (length,) = _LENGTH.unpack(await proc.stdout.readexactly(_LENGTH.size))
    # Trusted: the private pipe of a child this process started, running this code.
    status, value = pickle.loads(await proc.stdout.readexactly(length))  # noqa: S301
    return str(status), value


def _to_wire(item: BatchItem) -> _Wire:
    event = item.event
    head = None if event is None else (event.type, _naive(event.at), event.subject_id)
    if_open = item.if_open
    if if_open is not None:
        if_open = (if_open[0], _naive(if_open[1]))
    return head, item.text, item.rows, if_open


def _from_wire(wire: _Wire) -> BatchItem:
    head, text, rows, if_open = wire
    event = None if head is None else AuditEvent(head[0], _aware(head[1]), head[2], {})
    if if_open is not None:
        if_open = (if_open[0], _aware(if_open[1]))
    return BatchItem(event, text, rows, if_open)


def _naive(at: datetime) -> datetime:
    """A UTC time without its ``tzinfo``: pickled in a third of the time an aware one takes
    (whose time zone pickles as an object of its own). The child puts UTC back."""
    return (at if at.tzinfo is UTC else at.astimezone(UTC)).replace(tzinfo=None)


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC)


# -- the child --------------------------------------------------------------------------------


def main() -> int:
    """The child: reads the store's URL from stdin, then serves batches until stdin closes
    (or the parent is gone: its pipes broken)."""
    try:
        return _serve()
    except BrokenPipeError:  # the parent ended before reading an answer
        return 0


def _serve() -> int:
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    # The frames own the real stdout; anything printed by accident goes to stderr instead.
    out = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    inp = sys.stdin.buffer
    url = _receive(inp)
    if not isinstance(url, str):
        return 2  # not started by ProcessWriter
    try:
        store = AuditStore(Database.open(url), event_hash_text)
        store.commit_blocking([])  # an empty transaction: the store answers
    except Exception as error:  # the class only: a message could hold a path or a value
        _send(out, ("error", type(error).__name__))
        return 1
    _send(out, ("ready", os.getpid()))
    while (wires := _receive(inp)) is not None:
        items = [_from_wire(wire) for wire in wires]
        try:
            reply: tuple[str, Any] = ("ok", store.commit_blocking(items))
        except StoreUnavailable:
            reply = ("unavailable", "StoreUnavailable")
        except Exception as error:  # the parent logs the class; values never leave here
            reply = ("error", type(error).__name__)
        _send(out, reply)
    return 0


def _receive(stream: IO[bytes]) -> Any:
    """The next frame's message; None at end of input."""
    head = _read_exactly(stream, _LENGTH.size)
    if head is None:
        return None
    (length,) = _LENGTH.unpack(head)
    body = _read_exactly(stream, length)
    if body is None:
        return None
    # Trusted: the private pipe from the parent that started this process.
    return pickle.loads(body)  # noqa: S301


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = stream.read(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _send(out: int, message: tuple[str, Any]) -> None:
    """Write one frame to the file descriptor ``out`` (unbuffered: once the parent is gone,
    ``BrokenPipeError`` here, and nothing left to flush at exit)."""
    frame = memoryview(_frame(message))
    while frame:
        frame = frame[os.write(out, frame) :]
