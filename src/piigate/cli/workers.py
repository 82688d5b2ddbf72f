"""Several processes of one gateway (``workers: N``): a supervisor and its workers.

A gateway process runs one event loop, which one core serves. With ``workers: N`` (N > 1) the
command that was started becomes a supervisor: it starts N worker processes of the same
command, each a whole gateway (its own event loop, engine, audit writer and upstream
connections), listening on the same address with ``SO_REUSEPORT`` so that the kernel spreads
new connections across them. The supervisor keeps the address bound (not listening) while it
runs: an address in use is reported once, at start, and ``listen: HOST:0`` picks the one port
all the workers take.

The supervisor passes ``SIGHUP`` (reload) on to every worker and stops them all on ``SIGTERM``
or ``SIGINT``. A worker that ends by itself is started again; one that ends within
``START_GRACE`` seconds of its start has failed to start, and after ``MAX_FAILED_STARTS`` such
failures in a row the supervisor stops the others and exits with status 1 (the worker's own
messages, on the standard error they share, say why). Each worker's standard input is a pipe
from the supervisor: when the supervisor is gone, however it ended, the worker reads the end
of it and stops, so no worker outlives it.

A worker knows its place from ``PIIGATE_WORKER`` (``I/N``, I counted from 0), the port from
``PIIGATE_WORKER_PORT`` and, from ``PIIGATE_WORKER_DIR``, a directory the supervisor made for
them (mode 0700, removed when it ends: the PostgreSQL gateway's workers hand cancel requests to
each other through sockets there, ``gateway/postgres/peers.py``). :func:`worker_slot` reads
them, :func:`reuse_port_socket` makes a worker's listening socket and
:func:`stop_with_supervisor` ties its life to the supervisor's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

__all__ = [
    "MAX_FAILED_STARTS",
    "START_GRACE",
    "Slot",
    "Supervisor",
    "reuse_port_socket",
    "stop_with_supervisor",
    "worker_slot",
]

log = structlog.get_logger("piigate.workers")

WORKER_ENV: Final = "PIIGATE_WORKER"
PORT_ENV: Final = "PIIGATE_WORKER_PORT"
DIR_ENV: Final = "PIIGATE_WORKER_DIR"
START_GRACE: Final = 5.0  # seconds: a worker that ends sooner failed to start
MAX_FAILED_STARTS: Final = 3
_RESTART_DELAY: Final = 1.0  # seconds before a worker that ended is started again
_STOP_WAIT: Final = 30.0  # seconds the workers have to finish after SIGTERM
_BACKLOG: Final = 2048


@dataclass(frozen=True, slots=True)
class Slot:
    """A worker's place: ``index`` of ``count`` (from 0), the port all of them take, and the
    supervisor's directory for them."""

    index: int
    count: int
    port: int
    directory: Path

    def __str__(self) -> str:
        return f"worker {self.index + 1} of {self.count}"

    def own(self, address: tuple[str, int]) -> tuple[str, int]:
        """This worker's address of a kind each worker needs its own of (``--metrics``): the
        given port + its index."""
        return address[0], address[1] + self.index


def worker_slot() -> Slot | None:
    """This process's place among a supervisor's workers, or None when it is no worker."""
    place, port = os.environ.get(WORKER_ENV), os.environ.get(PORT_ENV)
    directory = os.environ.get(DIR_ENV)
    if not place or not port or not directory:
        return None
    index, _, count = place.partition("/")
    return Slot(int(index), int(count), int(port), Path(directory))


def reuse_port_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (listening unless ``listen``
    is False: the supervisor's, which holds the address without taking connections)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def stop_with_supervisor() -> None:
    """In a worker's running event loop: SIGTERM this process (its own orderly stop) when the
    supervisor's pipe on standard input ends."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            os.kill(os.getpid(), signal.SIGTERM)

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    started: float


class Supervisor:
    """Starts ``count`` workers of ``command`` (this process's own command line by default)
    sharing ``host:port``, and keeps them running until it is told to stop (:meth:`run`)."""

    def __init__(
        self,
        count: int,
        host: str,
        port: int,
        *,
        command: list[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.count = count
        self.command = command or [sys.executable, *sys.orig_argv[1:]]
        self._held = reuse_port_socket(host, port, listen=False)  # OSError: the address is taken
        self.port = int(self._held.getsockname()[1])
        self.directory = Path(tempfile.mkdtemp(prefix="piigate-workers-"))  # mode 0700
        self._clock = clock
        self._workers: dict[int, _Worker] = {}
        self._restart_at: dict[int, float] = {}
        self._stopping = False
        self._failed_starts = 0

    def run(self) -> int:
        """Run the workers until SIGTERM or SIGINT (status 0), or until they keep failing to
        start (status 1)."""
        previous = {n: signal.signal(n, self._on_signal) for n in _SIGNALS}
        status = 0
        try:
            for index in range(self.count):
                self._start(index)
            while not self._stopping:
                if not self._reap():
                    status = 1
                    break
                time.sleep(0.2)  # a signal cuts it short
        finally:
            self._stop_all()
            self._held.close()
            shutil.rmtree(self.directory, ignore_errors=True)
            for number, handler in previous.items():
                signal.signal(number, handler)
        return status

    # -- the workers ---------------------------------------------------------------------------
    def _start(self, index: int) -> None:
        env = {
            **os.environ,
            WORKER_ENV: f"{index}/{self.count}",
            PORT_ENV: str(self.port),
            DIR_ENV: str(self.directory),
        }
        # This same program, run again: the command line it was started with.
        proc = subprocess.Popen(self.command, env=env, stdin=subprocess.PIPE)  # noqa: S603
        self._workers[index] = _Worker(index, proc, self._clock())

    def _reap(self) -> bool:
        """Start again the workers that ended and whose delay is over; False when they keep
        failing to start."""
        now = self._clock()
        for index, worker in list(self._workers.items()):
            status = worker.proc.poll()
            if status is None or self._stopping:
                continue
            del self._workers[index]
            early = now - worker.started < START_GRACE
            self._failed_starts = self._failed_starts + 1 if early else 0
            log.warning("gateway_worker_ended", worker=index + 1, status=status, at_start=early)
            if self._failed_starts >= MAX_FAILED_STARTS:
                log.error("gateway_workers_fail_to_start", failures=self._failed_starts)
                return False
            self._restart_at[index] = now + _RESTART_DELAY
        for index, at in list(self._restart_at.items()):
            if at <= now and not self._stopping:
                del self._restart_at[index]
                self._start(index)
        return True

    def _stop_all(self) -> None:
        workers = list(self._workers.values())
        for worker in workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
            if worker.proc.stdin is not None:
                worker.proc.stdin.close()
        deadline = self._clock() + _STOP_WAIT
        for worker in workers:
            try:
                worker.proc.wait(max(deadline - self._clock(), 0.1))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        self._workers.clear()

    def _on_signal(self, number: int, frame: object) -> None:
        if number == signal.SIGHUP:
            for worker in self._workers.values():
                if worker.proc.poll() is None:
                    worker.proc.send_signal(signal.SIGHUP)
        else:
            self._stopping = True


_SIGNALS: Final = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
