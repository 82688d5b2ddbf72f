"""Alert sinks: where a raised alert goes besides the console (``service.alerts``).

Every sink is a :class:`QueuedSink`: :meth:`~QueuedSink.offer` puts the alert on a bounded
queue and returns at once (when the queue is full the oldest alert waiting is dropped and
counted), and the sink's own task delivers what is queued, so neither a decision nor the alert
desk ever waits for a receiver. Each sink counts what it delivered, dropped and gave up on
(``api/metrics.py`` exports the counts).

- :class:`JsonLinesSink`: one JSON object a line, appended to a file (created owner-only) or
  written to standard output, for a SIEM's file collector.
- :class:`SyslogSink`: RFC 5424 messages over UDP (RFC 5426: one message a datagram), TCP
  (RFC 6587 octet counting) or a local datagram socket (``/dev/log``).
- ``audit/webhook.py``: a signed JSON POST, retried with back-off.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
from collections import deque
from dataclasses import dataclass
from typing import IO, Final
from urllib.parse import urlsplit

from piigate.audit.alerts import Alert, Severity, alert_json
from piigate.audit.sink_settings import FACILITIES, JsonLinesSettings, SyslogSettings

__all__ = ["JsonLinesSink", "QueuedSink", "SinkCounts", "SyslogSink", "syslog_message"]

_logger = logging.getLogger(__name__)


@dataclass(slots=True)
class SinkCounts:
    """What one sink did with the alerts offered to it."""

    delivered: int = 0
    dropped: int = 0  # pushed out of a full queue
    failed: int = 0  # given up on after the sink's own retries


class QueuedSink(abc.ABC):
    """A bounded queue of alerts and the task that delivers them, one at a time, in order."""

    name = "sink"

    def __init__(self, *, queue: int = 1000) -> None:
        if queue < 1:
            raise ValueError("queue must hold at least one alert")
        self.counts = SinkCounts()
        self._queue: deque[Alert] = deque()
        self._limit = queue
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def offer(self, alert: Alert) -> None:
        """Queue ``alert`` for delivery; never waits. A full queue drops its oldest alert."""
        if len(self._queue) >= self._limit:
            self._queue.popleft()
            self.counts.dropped += 1
        self._queue.append(alert)
        self._idle.clear()
        self._ready.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"piigate-alerts-{self.name}")

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def drained(self) -> None:
        """Wait until every alert offered so far was delivered, dropped or given up."""
        await self._idle.wait()

    async def aclose(self) -> None:
        """Stop delivering (what is still queued is not sent) and release the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.release()

    @abc.abstractmethod
    async def deliver(self, alert: Alert) -> bool:
        """Send one alert; True when the receiver has it (False: give it up)."""

    async def release(self) -> None:  # noqa: B027 - most sinks hold nothing open
        """Close what the sink holds open. Subclasses that hold something."""

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._ready.clear()
                await self._ready.wait()
                continue
            alert = self._queue.popleft()
            try:
                delivered = await self.deliver(alert)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a sink's fault must not end its task
                _logger.warning("alert sink %s failed: %s", self.name, type(exc).__name__)
                delivered = False
            if delivered:
                self.counts.delivered += 1
            else:
                self.counts.failed += 1


class JsonLinesSink(QueuedSink):
    """Alerts as JSON lines, appended to a file or written to standard output (``-``)."""

    name = "jsonl"

    def __init__(self, settings: JsonLinesSettings, *, queue: int = 1000) -> None:
        super().__init__(queue=queue)
        self.path = settings.path
        self._file: IO[str] | None = None

    async def deliver(self, alert: Alert) -> bool:
        line = json.dumps(alert_json(alert), separators=(",", ":"), ensure_ascii=False) + "\n"
        if self.path == "-":
            sys.stdout.write(line)
            sys.stdout.flush()
            return True
        await asyncio.to_thread(self._append, line)
        return True

    def _append(self, line: str) -> None:
        if self._file is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = open(fd, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        self._file.write(line)
        self._file.flush()

    async def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# RFC 5424 §6.2.1 severities for an alert's.
_SYSLOG_SEVERITY: Final = {Severity.LOW: 5, Severity.MEDIUM: 4, Severity.HIGH: 2}
# RFC 5424 §7.2.2: an SD-ID with "@" and a private enterprise number; 32473 is the number
# RFC 5612 reserves for documentation and examples.
_SD_ID: Final = "piigate@32473"
_MAX_DATAGRAM = 2048  # RFC 5426 §3.2: receivers should take at least 2048 octets


def syslog_message(alert: Alert, *, facility: str, hostname: str, procid: int) -> bytes:
    """``alert`` as one RFC 5424 message: the ids in structured data, the summary as MSG."""
    pri = FACILITIES[facility] * 8 + _SYSLOG_SEVERITY[alert.severity]
    stamp = alert.at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    params = {
        "id": alert.id,
        "kind": alert.kind.value,
        "severity": alert.severity.value,
        "seq": str(alert.event_seq),
        "subject": alert.subject_id or "-",
    }
    structured = " ".join(f'{k}="{_sd_escape(v)}"' for k, v in params.items())
    header = f"<{pri}>1 {stamp} {_header_field(hostname, 255)} piigate {procid}"
    msgid = _header_field(alert.kind.value, 32)
    return f"{header} {msgid} [{_SD_ID} {structured}] {alert.summary}".encode()


def _host_port(address: str) -> tuple[str, int]:
    """HOST and PORT of ``udp://HOST:PORT`` or ``tcp://HOST:PORT`` (checked by the settings)."""
    parts = urlsplit(address)
    if parts.hostname is None or parts.port is None:
        raise ValueError("the syslog address needs a host and a port")
    return parts.hostname, parts.port


def _sd_escape(value: str) -> str:
    # RFC 5424 §6.3.3: '"', '\' and ']' are escaped with a backslash inside PARAM-VALUE.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str, limit: int) -> str:
    # Header fields are PRINTUSASCII (33..126); anything else would break the frame.
    text = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


class SyslogSink(QueuedSink):
    """Alerts as RFC 5424 syslog messages to a collector or the local syslog socket."""

    name = "syslog"

    def __init__(self, settings: SyslogSettings, *, queue: int = 1000) -> None:
        super().__init__(queue=queue)
        self.settings = settings
        self._datagram: asyncio.DatagramTransport | None = None
        self._stream: asyncio.StreamWriter | None = None
        self._hostname = socket.gethostname() or "-"

    async def deliver(self, alert: Alert) -> bool:
        message = syslog_message(
            alert,
            facility=self.settings.facility,
            hostname=self._hostname,
            procid=os.getpid(),
        )
        address = self.settings.address
        if address.startswith("tcp://"):
            return await self._send_stream(message)
        datagram = await self._open_datagram()
        datagram.sendto(message[:_MAX_DATAGRAM])
        return True

    async def _open_datagram(self) -> asyncio.DatagramTransport:
        if self._datagram is None or self._datagram.is_closing():
            loop = asyncio.get_running_loop()
            address = self.settings.address
            if address.startswith("/"):
                transport, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=address, family=socket.AF_UNIX
                )
            else:
                host, port = _host_port(address)
                transport, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=(host, port)
                )
            self._datagram = transport
        return self._datagram

    async def _send_stream(self, message: bytes) -> bool:
        """RFC 6587 §3.4.1 octet counting: ``LENGTH SP MESSAGE``; one reconnect on failure."""
        frame = str(len(message)).encode() + b" " + message
        for _ in range(2):
            try:
                stream = await self._open_stream()
                stream.write(frame)
                await asyncio.wait_for(stream.drain(), 10)
                return True
            except (OSError, TimeoutError):
                await self._close_stream()
        return False

    async def _open_stream(self) -> asyncio.StreamWriter:
        if self._stream is not None and not self._stream.is_closing():
            return self._stream
        host, port = _host_port(self.settings.address)
        _, stream = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        self._stream = stream
        return stream

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(stream.wait_closed(), 1)

    async def release(self) -> None:
        if self._datagram is not None:
            self._datagram.close()
            self._datagram = None
        await self._close_stream()
