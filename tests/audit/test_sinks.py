"""The alert sinks against real local receivers: an aiohttp server on the loopback interface
for the webhook, a file for JSON lines, UDP, TCP and local datagram sockets for syslog."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from piigate.audit.alerts import Alert, AlertKind, Severity, alert_json
from piigate.audit.sink_settings import JsonLinesSettings, SyslogSettings, WebhookSettings
from piigate.audit.sinks import JsonLinesSink, SyslogSink
from piigate.audit.webhook import SIGNATURE_HEADER, WebhookSink, backoff, verify_signature
from piigate.crypto.secret import Secret

AT = datetime(2026, 5, 4, 10, 0, 1, 250000, tzinfo=UTC)
SECRET = Secret("a-webhook-secret-of-some-length")


def alert(n: int = 1, kind: AlertKind = AlertKind.PUSH_DENIED) -> Alert:
    return Alert(f"alt_{n}", kind, Severity.HIGH, "alice", AT, 100 + n, f"summary {n}")


# -- webhook ------------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook receiver: answers each request with the next status of ``statuses`` (then
    200), records what came, and may hold its answers until ``release`` is set."""

    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)
    release: asyncio.Event | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.signatures.append(request.headers.get(SIGNATURE_HEADER, ""))
        self.arrived.set()
        if self.release is not None:
            await self.release.wait()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield found
    finally:
        await runner.cleanup()


def webhook(url: str, *, delays: list[float] | None = None, **settings: int) -> WebhookSink:
    async def sleep(seconds: float) -> None:  # records each wait, then waits a token time
        if delays is not None:
            delays.append(seconds)
        await asyncio.sleep(0.001)

    return WebhookSink(
        WebhookSettings(url=url, secret=SECRET, timeout=5, **settings),
        base_delay=0.5,
        max_delay=8.0,
        sleep=sleep,
    )


async def test_the_webhook_posts_signed_json(receiver: Receiver) -> None:
    sink = webhook(receiver.url)
    try:
        sink.offer(alert())
        await sink.drained()
    finally:
        await sink.aclose()
    (body,) = receiver.bodies
    assert json.loads(body) == alert_json(alert())
    assert receiver.signatures[0].startswith("sha256=")
    assert verify_signature(SECRET, body, receiver.signatures[0])
    assert not verify_signature(Secret("another-secret-of-length"), body, receiver.signatures[0])
    assert not verify_signature(SECRET, body + b" ", receiver.signatures[0])
    assert (sink.counts.delivered, sink.counts.failed, sink.counts.dropped) == (1, 0, 0)


async def test_the_webhook_retries_after_500s_with_growing_back_off(receiver: Receiver) -> None:
    receiver.statuses = [500, 503, 502, 500]
    delays: list[float] = []
    sink = webhook(receiver.url, delays=delays, max_attempts=8)
    try:
        sink.offer(alert())
        await sink.drained()
    finally:
        await sink.aclose()
    assert len(receiver.bodies) == 5 and len(set(receiver.bodies)) == 1  # the same body
    assert sink.counts.delivered == 1
    assert len(delays) == 4
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    for retry, seconds in enumerate(delays):  # half to all of 0.5 s * 2^retry
        assert 0.25 * 2**retry <= seconds <= 0.5 * 2**retry


async def test_the_webhook_gives_up_after_its_attempts_and_on_a_refusal(
    receiver: Receiver,
) -> None:
    receiver.statuses = [500] * 3 + [400]
    sink = webhook(receiver.url, delays=[], max_attempts=3)
    try:
        sink.offer(alert(1))  # three 500s: given up
        sink.offer(alert(2))  # a 400: the receiver refuses it, no retry
        sink.offer(alert(3))  # delivered
        await sink.drained()
    finally:
        await sink.aclose()
    ids = [json.loads(body)["id"] for body in receiver.bodies]
    assert ids == ["alt_1"] * 3 + ["alt_2", "alt_3"]
    assert (sink.counts.delivered, sink.counts.failed) == (1, 2)


async def test_an_unreachable_webhook_is_retried_then_given_up() -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    delays: list[float] = []
    sink = webhook(f"http://127.0.0.1:{port}/hook", delays=delays, max_attempts=3)
    try:
        sink.offer(alert())
        await sink.drained()
    finally:
        await sink.aclose()
    assert (len(delays), sink.counts.failed) == (2, 1)


async def test_a_full_queue_drops_the_oldest_and_counts_it(receiver: Receiver) -> None:
    receiver.release = asyncio.Event()
    sink = webhook(receiver.url, queue=3)
    try:
        sink.offer(alert(1))
        await asyncio.wait_for(receiver.arrived.wait(), 10)  # alert 1 held by the receiver
        for n in range(2, 8):  # 6 more into a queue of 3: 2, 3 and 4 are pushed out
            sink.offer(alert(n))
        assert (sink.waiting, sink.counts.dropped) == (3, 3)
        receiver.release.set()
        await sink.drained()
    finally:
        await sink.aclose()
    assert [json.loads(b)["id"] for b in receiver.bodies] == ["alt_1", "alt_5", "alt_6", "alt_7"]
    assert (sink.counts.delivered, sink.counts.dropped) == (4, 3)


def test_back_off_is_jittered_within_its_bounds_and_capped() -> None:
    import random

    rng = random.Random(7)
    waits = [backoff(n, base=1.0, cap=10.0, rng=rng) for n in range(8)]
    assert len(set(waits)) == 8  # jittered
    for n, seconds in enumerate(waits):
        ceiling = min(10.0, 2.0**n)
        assert ceiling / 2 <= seconds <= ceiling


# -- JSON lines ---------------------------------------------------------------------------------


async def test_json_lines_are_appended_to_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    path.write_text('{"earlier": true}\n')
    path.chmod(0o600)
    sink = JsonLinesSink(JsonLinesSettings(str(path)))
    try:
        for n in (1, 2):
            sink.offer(alert(n))
        await sink.drained()
    finally:
        await sink.aclose()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"earlier": True}, alert_json(alert(1)), alert_json(alert(2))]


async def test_a_new_json_lines_file_is_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new.jsonl"
    sink = JsonLinesSink(JsonLinesSettings(str(path)))
    try:
        sink.offer(alert())
        await sink.drained()
    finally:
        await sink.aclose()
    assert path.stat().st_mode & 0o777 == 0o600


async def test_json_lines_to_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    sink = JsonLinesSink(JsonLinesSettings("-"))
    try:
        sink.offer(alert())
        await sink.drained()
    finally:
        await sink.aclose()
    assert json.loads(capsys.readouterr().out) == alert_json(alert())


# -- syslog -------------------------------------------------------------------------------------

RFC5424 = re.compile(
    rb"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) piigate (?P<pid>\d+) (?P<msgid>\S+) "
    rb"\[piigate@32473 (?P<sd>[^\]]*)\] (?P<msg>.*)",
    re.DOTALL,
)


def check_syslog(message: bytes, *, facility: int) -> None:
    found = RFC5424.fullmatch(message)
    assert found is not None, message
    assert int(found["pri"]) == facility * 8 + 2  # high: critical
    assert found["ts"] == b"2026-05-04T10:00:01.250000Z"
    assert found["msgid"] == b"push_denied"
    assert found["sd"] == (
        b'id="alt_1" kind="push_denied" severity="high" seq="101" subject="alice"'
    )
    assert found["msg"] == b"summary 1"


async def test_syslog_over_udp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(10)
        port = server.getsockname()[1]
        sink = SyslogSink(SyslogSettings(f"udp://127.0.0.1:{port}", facility="local4"))
        try:
            sink.offer(alert())
            await sink.drained()
            message = await asyncio.to_thread(server.recv, 65535)
        finally:
            await sink.aclose()
    check_syslog(message, facility=20)


async def test_syslog_over_tcp_with_octet_counting() -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def collect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length = int((await reader.readuntil(b" "))[:-1])
        await received.put(await reader.readexactly(length))
        writer.close()

    server = await asyncio.start_server(collect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = SyslogSink(SyslogSettings(f"tcp://127.0.0.1:{port}", facility="auth"))
    try:
        sink.offer(alert())
        message = await asyncio.wait_for(received.get(), 10)
    finally:
        await sink.aclose()
        server.close()
        await server.wait_closed()
    check_syslog(message, facility=4)


async def test_syslog_to_a_local_datagram_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(10)
        sink = SyslogSink(SyslogSettings(path, facility="authpriv"))
        try:
            sink.offer(alert())
            await sink.drained()
            message = await asyncio.to_thread(server.recv, 65535)
        finally:
            await sink.aclose()
    check_syslog(message, facility=10)


def test_structured_data_values_are_escaped() -> None:
    from piigate.audit.sinks import syslog_message

    odd = Alert("alt_1", AlertKind.OTHER, Severity.LOW, 'a"b]c\\d', AT, 1, "x")
    message = syslog_message(odd, facility="user", hostname="h ost", procid=1)
    assert b'subject="a\\"b\\]c\\\\d"' in message
    assert message.startswith(b"<13>1 2026-05-04T10:00:01.250000Z host piigate 1 other ")
