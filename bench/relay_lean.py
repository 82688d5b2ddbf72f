"""Two lean HTTP relays, for bench/gateway_http.py's ``--reference`` runs: where a Python relay's
time goes, part by part.

Run: ``python bench/relay_lean.py --port P --upstream http://host:port --server MODE``.

Both call the upstream through the same small client: pooled keep-alive connections, each an
asyncio ``Protocol`` whose answers httptools (llhttp, the parser uvicorn uses) reads, the
status and headers handed on as they are parsed and the body chunk by chunk. The two modes
differ on the client side:

- ``uvicorn``: the gateway's server as ``bench/relay.py`` runs it (uvicorn on uvloop with
  httptools, an ASGI app). Against ``bench/relay.py`` (the same server with aiohttp's client),
  it is the cost of the upstream client;
- ``raw``: an asyncio ``Protocol`` per client connection, its requests read by httptools and
  answered by writing the upstream's bytes straight to the socket (no ASGI, no task a request).
  It is about as little Python as a relay can run on an event loop.

What the bench sends and nothing more: ``GET`` requests without a body, answers with a
``Content-Length`` or chunked. No timeouts, no retries, no header rewriting beyond the framing:
a measurement, not a proxy to run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from typing import Any

import httptools

from relay import NOT_FORWARDED, NOT_RETURNED


class Sink:
    """Where an upstream answer goes as it is parsed."""

    def head(self, status: int, headers: list[tuple[bytes, bytes]], length: bytes | None) -> None:
        raise NotImplementedError

    def body(self, chunk: bytes) -> None:
        raise NotImplementedError

    def done(self) -> None:
        raise NotImplementedError

    def failed(self) -> None:
        raise NotImplementedError


class _Parsed(asyncio.Protocol):
    """A connection whose bytes an httptools parser reads (``self.parser``, set by the
    subclass); a parse error closes it."""

    parser: httptools.HttpRequestParser | httptools.HttpResponseParser
    transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a socket's: uvloop's own class

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()


class UpstreamConnection(_Parsed):
    """One keep-alive connection to the upstream; one request at a time, its answer parsed by
    httptools and handed to the request's :class:`Sink`."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.sink: Sink | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.length: bytes | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        if self.sink is not None:
            sink, self.sink = self.sink, None
            sink.failed()

    def send(self, request: bytes, sink: Sink) -> None:
        assert self.transport is not None
        self.sink = sink
        self.transport.write(request)

    # httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        low = name.lower()
        if low == b"content-length":
            self.length = value
        elif low not in NOT_RETURNED:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.sink is not None
        self.sink.head(self.parser.get_status_code(), self.headers, self.length)
        self.headers, self.length = [], None

    def on_body(self, body: bytes) -> None:
        assert self.sink is not None
        self.sink.body(body)

    def on_message_complete(self) -> None:
        sink, self.sink = self.sink, None
        assert sink is not None
        if self.parser.should_keep_alive():
            self.pool.idle.append(self)
        elif self.transport is not None:
            self.transport.close()
        sink.done()


class Pool:
    """Idle upstream connections, newest first out."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[UpstreamConnection] = []

    async def connection(self) -> UpstreamConnection:
        if self.idle:
            return self.idle.pop()
        loop = asyncio.get_running_loop()
        _, made = await loop.create_connection(
            lambda: UpstreamConnection(self), self.host, self.port
        )
        return made


def request_bytes(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1\r\nhost: upstream\r\n"]
    lines += [k + b": " + v + b"\r\n" for k, v in headers if k.lower() not in NOT_FORWARDED]
    lines.append(b"\r\n")
    return b"".join(lines)


# -- uvicorn + the lean client ------------------------------------------------------------------


class _Queued(Sink):
    """An answer handed to an ASGI app: the head as a future, the body through a queue."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = loop.create_future()
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    def head(self, status: int, headers: list[tuple[bytes, bytes]], length: bytes | None) -> None:
        if length is not None:
            headers = [*headers, (b"content-length", length)]
        self.started.set_result((status, headers))

    def body(self, chunk: bytes) -> None:
        self.chunks.put_nowait(chunk)

    def done(self) -> None:
        self.chunks.put_nowait(None)

    def failed(self) -> None:
        if not self.started.done():
            self.started.set_exception(ConnectionError("the upstream closed the connection"))
        self.chunks.put_nowait(None)


def asgi_relay(pool: Pool) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        target = scope["raw_path"]
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        sink = _Queued()
        connection = await pool.connection()
        connection.send(request_bytes(scope["method"].encode(), target, scope["headers"]), sink)
        status, headers = await sink.started
        await send({"type": "http.response.start", "status": status, "headers": headers})
        while (chunk := await sink.chunks.get()) is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


# -- raw: a protocol per client connection ----------------------------------------------------


class ClientConnection(_Parsed, Sink):
    """A client's keep-alive connection: requests parsed by httptools, answered in order, each
    upstream answer written to the socket as it is parsed (chunked when it has no length)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpRequestParser(self)
        self.waiting: list[bytes] = []  # requests read, not yet sent upstream
        self.busy = False
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunked = False
        self.connecting: asyncio.Future[None] | None = None

    def on_message_begin(self) -> None:
        self.url, self.headers = b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.waiting.append(request_bytes(self.parser.get_method(), self.url, self.headers))
        if not self.busy:
            self._next()

    def _next(self) -> None:
        if not self.waiting:
            self.busy = False
            return
        self.busy = True
        request = self.waiting.pop(0)
        if self.pool.idle:
            self.pool.idle.pop().send(request, self)
        else:
            self.connecting = asyncio.ensure_future(self._connect_and_send(request))

    async def _connect_and_send(self, request: bytes) -> None:
        (await self.pool.connection()).send(request, self)

    # the upstream's answer (Sink)
    def head(self, status: int, headers: list[tuple[bytes, bytes]], length: bytes | None) -> None:
        assert self.transport is not None
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, b"OK" if status == 200 else b"-")]
        lines += [k + b": " + v + b"\r\n" for k, v in headers]
        self.chunked = length is None
        if length is None:
            lines.append(b"transfer-encoding: chunked\r\n\r\n")
        else:
            lines.append(b"content-length: " + length + b"\r\n\r\n")
        self.transport.write(b"".join(lines))

    def body(self, chunk: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self.chunked else chunk)

    def done(self) -> None:
        if self.chunked and self.transport is not None:
            self.transport.write(b"0\r\n\r\n")
        self._next()

    def failed(self) -> None:
        if self.transport is not None:
            self.transport.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="http://host:port")
    parser.add_argument("--server", choices=("uvicorn", "raw"), required=True)
    args = parser.parse_args(argv)
    import uvloop

    host, _, port = args.upstream.removeprefix("http://").rstrip("/").partition(":")
    pool = Pool(host, int(port))

    async def serve_raw() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: ClientConnection(pool), "127.0.0.1", args.port, backlog=1024
        )
        await server.serve_forever()

    if args.server == "uvicorn":
        from piigate.gateway.http.server import gateway_server

        serving = gateway_server(asgi_relay(pool), "127.0.0.1", args.port).serve()
    else:
        serving = serve_raw()
    gc.collect()
    gc.freeze()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serving)
    return 0


if __name__ == "__main__":
    sys.exit(main())
