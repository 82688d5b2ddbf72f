"""``piigate demo`` as a real process, and its printed walkthrough run step by step in one
shell (imported by name: ``tests/demo`` is the test's directory)."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from piigate.demo.walkthrough import BEGIN, END
from serve_support import PIIGATE

__all__ = [
    "Demo",
    "Shell",
    "Step",
    "environment",
    "free_base_port",
    "parse_walkthrough",
    "running_demo",
]

_STEP = re.compile(r"^# step (\d+) \(([\w-]+)\): ")
_EXPECTED = re.compile(r"#\s*→\s*(\d{3})")
_READY_SECONDS = 60


@dataclass
class Step:
    number: int  # 0: the setup
    key: str
    text: str

    def expected_statuses(self) -> list[int]:
        """The ``# → NNN`` of each ``call`` line (not those inside a loop)."""
        found = []
        for line in self.text.splitlines():
            if line.startswith("call ") and (match := _EXPECTED.search(line)):
                found.append(int(match.group(1)))
        return found


def parse_walkthrough(printed: str) -> list[Step]:
    """The steps between the markers, the setup first."""
    block = printed.split(BEGIN, 1)[1].split(END, 1)[0]
    steps = [Step(0, "setup", "")]
    for line in block.strip("\n").splitlines():
        if match := _STEP.match(line):
            steps.append(Step(int(match.group(1)), match.group(2), ""))
        steps[-1].text += line + "\n"
    return steps


class Shell:
    """One bash process the steps run in, one after the other, so that variables carry on."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def run(self, script: str, timeout: float = 120) -> list[str]:
        """The output of ``script``, up to its end."""
        assert self.proc.stdin is not None
        marker = f"__done_{time.monotonic_ns()}__"
        self.proc.stdin.write(f"{script}\necho {marker}\n")
        self.proc.stdin.flush()
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line == marker:
                return out
            out.append(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    port: int
    printed: str
    rest: list[str] = field(default_factory=list)


def free_base_port() -> int:
    """P such that P to P+3 are free on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base > 65530:
            continue
        if all(_free(base + i) for i in range(4)):
            return int(base)
    raise AssertionError("no four free ports in a row")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def running_demo(env: dict[str, str], port: int, data_dir: Path, *more: str) -> Iterator[Demo]:
    """``piigate demo`` until it has printed its walkthrough; stopped with SIGINT (Ctrl-C)
    afterwards, which must end it cleanly and free its ports."""
    command = [*PIIGATE, "demo", "--port", str(port), "--data-dir", str(data_dir), *more]
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    printed: list[str] = []
    demo = Demo(proc, port, "")
    try:
        deadline = time.monotonic() + _READY_SECONDS
        while not printed or "Ctrl-C stops everything" not in printed[-1]:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "piigate demo ended:\n" + "".join(printed)
            printed.append(line)
        demo.printed = "".join(printed)
        yield demo
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError("piigate demo did not stop on SIGINT") from None
        while (line := lines.get(timeout=5)) is not None:
            demo.rest.append(line)


def environment(**more: str) -> dict[str, str]:
    """This process's environment (its PYTHONPATH reaches the sources under test) plus
    ``more``."""
    return {**os.environ, **more}
