"""A real HTTP server on loopback that records what it is sent (imported by name: test
directories are on ``sys.path``). It stands in for an SMS provider: Twilio, or a webhook."""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingServer:
    """Answers every request with ``status`` and ``reply`` after ``delay`` seconds."""

    status: int = 200
    reply: bytes = b"{}"
    delay: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                owner.requests.append(
                    Recorded(
                        "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                    )
                )
                if owner.delay:
                    time.sleep(owner.delay)
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.reply)))
                self.end_headers()
                self.wfile.write(owner.reply)

            def log_message(self, format: str, *args: object) -> None:
                return None  # keep the test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def recording_server() -> Iterator[RecordingServer]:
    """Body of a ``server`` fixture: a started server, stopped afterwards."""
    server = RecordingServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def run_cli(*args: str) -> tuple[int, str, str]:
    """``piigate.cli.main`` in this process, with its own error handling."""
    from piigate.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = ["piigate", *args]
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exit:
        code = exit.code
    finally:
        sys.argv = saved
    return int(code or 0), out.getvalue(), err.getvalue()
