"""``piigate`` as a real process, for the tests that run it (imported by name: ``tests/`` is on
``sys.path``): the command, a checked CLI run, and ``piigate serve`` until it is ready."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

__all__ = ["EXAMPLE_POLICY", "PIIGATE", "run_piigate", "running", "serving", "stop"]

EXAMPLE_POLICY = Path(__file__).resolve().parents[1] / "examples" / "policy.yaml"
_CONSOLE_SCRIPT = Path(sys.executable).with_name("piigate")
PIIGATE = (
    [str(_CONSOLE_SCRIPT)]
    if _CONSOLE_SCRIPT.exists()
    else [sys.executable, "-c", "from piigate.cli import main; main()"]
)
# Generous: start-up (imports, migrations, keys) is slow on a loaded machine.
_READY_SECONDS = 30


def run_piigate(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """A CLI command that must succeed; its standard output."""
    done = subprocess.run(
        [*PIIGATE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextlib.contextmanager
def serving(
    env: dict[str, str], port: int, log: Path, *options: str, config: Path = EXAMPLE_POLICY
) -> Iterator[subprocess.Popen[bytes]]:
    """``piigate serve`` on 127.0.0.1:``port`` (with more ``options``), its output in ``log``,
    until it answers ``/readyz``; stopped with SIGTERM (SIGKILL if it lingers) afterwards."""
    command = [*PIIGATE, "serve", "--config", str(config), "--host", "127.0.0.1"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port), *options],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + _READY_SECONDS
        while True:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "piigate serve did not become ready"
            time.sleep(0.05)
        yield proc
    finally:
        stop(proc)


def stop(*procs: subprocess.Popen[bytes]) -> None:
    """SIGTERM to each process still running, then SIGKILL to any that lingers 15 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + _READY_SECONDS
    while True:
        assert proc.poll() is None, log.read_text()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        assert time.monotonic() < deadline, f"nothing listens on {port}: {log.read_text()}"
        time.sleep(0.05)


@contextlib.contextmanager
def running(commands: Sequence[tuple[list[str], int, Path]], env: dict[str, str]) -> Iterator[None]:
    """Processes started together, each ``(command, port, log)``, until each listens on its
    port; stopped (:func:`stop`) afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for command, _, log in commands:
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
                )
        for proc, (_, port, log) in zip(procs, commands, strict=True):
            _wait_listening(proc, port, log)
        yield
    finally:
        stop(*procs)
