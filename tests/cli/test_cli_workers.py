"""The supervisor of a gateway's workers (``piigate.cli.workers``), with small real workers.

Each worker here is a few lines of Python on the module's own helpers: it takes its slot,
listens on the shared port with ``SO_REUSEPORT``, answers every connection with its index and
pid, writes a file when it gets SIGHUP, and stops on SIGTERM or when the supervisor's pipe
ends. The supervisor runs in a process of its own (it installs signal handlers and blocks),
which prints its port first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from piigate.cli.workers import Slot, reuse_port_socket, worker_slot

WORKER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from piigate.cli.workers import reuse_port_socket, stop_with_supervisor, worker_slot

    slot = worker_slot()
    marks = sys.argv[1]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(
            signal.SIGHUP,
            lambda: open(f"{marks}/hup-{slot.index}-{os.getpid()}", "w").close(),
        )
        stop_with_supervisor()

        async def answer(reader, writer):
            writer.write(f"{slot.index} {os.getpid()}\\n".encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, sock=reuse_port_socket("127.0.0.1", slot.port))
        with open(f"{marks}/up-{slot.index}-{os.getpid()}", "w") as up:
            up.write(str(slot.directory))
        await stop.wait()
        server.close()

    asyncio.run(main())
    """
)

SUPERVISOR = textwrap.dedent(
    """
    import sys
    from piigate.cli.workers import Supervisor

    supervisor = Supervisor(int(sys.argv[1]), "127.0.0.1", int(sys.argv[2]), command=sys.argv[3:])
    print(supervisor.port, flush=True)
    sys.exit(supervisor.run())
    """
)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def ask(port: int) -> tuple[int, int]:
    """The (index, pid) of the worker that took one new connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        index, pid = conn.makefile().readline().split()
    return int(index), int(pid)


def marks(tmp: Path, kind: str) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(f"{kind}-"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(FileNotFoundError):  # a zombie of another parent counts as gone
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


@contextlib.contextmanager
def supervisor(
    tmp: Path, count: int = 2, worker: list[str] | None = None, port: int = 0
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    command = worker or [sys.executable, "-c", WORKER, str(tmp)]
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(count), str(port), *command],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"the supervisor did not start: {line!r}"
        yield proc, int(line)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(40)


def up(tmp: Path, count: int) -> Callable[[], bool]:
    return lambda: len(marks(tmp, "up")) >= count


def test_slot_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIIGATE_WORKER", raising=False)
    assert worker_slot() is None
    monkeypatch.setenv("PIIGATE_WORKER", "1/3")
    monkeypatch.setenv("PIIGATE_WORKER_PORT", "8081")
    monkeypatch.setenv("PIIGATE_WORKER_DIR", "/run/x")
    slot = worker_slot()
    assert slot == Slot(1, 3, 8081, Path("/run/x"))
    assert str(slot) == "worker 2 of 3"
    assert slot.own(("127.0.0.1", 9464)) == ("127.0.0.1", 9465)


def test_reuse_port_sockets_share_an_address() -> None:
    held = reuse_port_socket("127.0.0.1", 0, listen=False)
    port = held.getsockname()[1]
    first = reuse_port_socket("127.0.0.1", port)
    second = reuse_port_socket("127.0.0.1", port)
    try:
        assert first.getsockname()[1] == second.getsockname()[1] == port
    finally:
        for sock in (held, first, second):
            sock.close()


def test_an_address_in_use_is_refused_at_start() -> None:
    from piigate.cli.workers import Supervisor

    with socket.socket() as taken:  # no SO_REUSEPORT: no one may share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            Supervisor(2, "127.0.0.1", taken.getsockname()[1], command=["true"])


@pytest.mark.slow
def test_workers_share_the_port_reload_restart_and_stop_together(tmp_path: Path) -> None:
    with supervisor(tmp_path, 2) as (proc, port):
        wait_for(up(tmp_path, 2), "two workers listening")
        shared = {(tmp_path / name).read_text() for name in marks(tmp_path, "up")}
        assert len(shared) == 1, "one directory for all the workers"
        directory = Path(shared.pop())
        assert directory.is_dir() and directory.stat().st_mode & 0o777 == 0o700
        seen = {ask(port) for _ in range(60)}
        assert {index for index, _ in seen} == {0, 1}, "the kernel spread the connections"
        pids = {index: pid for index, pid in seen}

        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(marks(tmp_path, "hup")) == 2, "SIGHUP passed on to both workers")
        assert {name.split("-")[1] for name in marks(tmp_path, "hup")} == {"0", "1"}

        os.kill(pids[0], signal.SIGKILL)  # a worker that dies is started again
        wait_for(up(tmp_path, 3), "the worker started again")
        wait_for(lambda: {i for i, _ in (ask(port) for _ in range(30))} == {0, 1}, "both serve")
        new_pid = next(p for i, p in (ask(port) for _ in range(60)) if i == 0)
        assert new_pid != pids[0]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
        workers = [int(name.split("-")[2]) for name in marks(tmp_path, "up")]
        wait_for(lambda: not any(alive(pid) for pid in workers), "every worker stopped")
        assert not directory.exists(), "the supervisor removed the workers' directory"


@pytest.mark.slow
def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    with supervisor(tmp_path, 2) as (proc, _):
        wait_for(up(tmp_path, 2), "two workers listening")
        workers = [int(name.split("-")[2]) for name in marks(tmp_path, "up")]
        proc.kill()  # no chance to stop them: they read the end of its pipe
        proc.wait(10)
        wait_for(lambda: not any(alive(pid) for pid in workers), "the orphaned workers stopped")


@pytest.mark.slow
def test_workers_that_keep_failing_to_start_stop_the_supervisor(tmp_path: Path) -> None:
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    with supervisor(tmp_path, 2, worker=failing) as (proc, _):
        assert proc.wait(40) == 1
