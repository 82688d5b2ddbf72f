"""The link to the protected API: pooled HTTP/1.1 connections (aiohttp), timeouts, and headers
as a proxy must rewrite them.

What goes upstream (:func:`upstream_headers`): the client's headers without the hop-by-hop ones
(RFC 9110 §7.6.1: ``Connection`` and every header it names, ``Keep-Alive``, ``TE``, ``Trailer``,
``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``), without piigate's own credentials (the
``PIIGate-Grant`` header, the ``piigate_*`` cookies) and without whatever the client sent under
the names that carry the verified subject and level, which only the gateway sets; with
``X-Forwarded-For``/``-Proto``/``-Host`` and ``Forwarded`` describing the client's request;
never the client's ``X-Original-URL``/``X-Rewrite-URL``, which some upstreams route by. Names
are compared with ``_`` as ``-``: CGI, WSGI, Rack and PHP put both spellings in one
``HTTP_X_Y`` variable, so a client's ``PIIGate_Subject`` is dropped like ``PIIGate-Subject``.
What comes back (:func:`downstream_headers`) loses its hop-by-hop headers too.

Failures are problems, never half answers: the upstream cannot be reached → 502
``upstream_unavailable``; it does not answer in time → 504 ``upstream_timeout``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Final

import aiohttp
import yarl
from multidict import CIMultiDict

from piigate.errors import BadRequest, PiigateError

__all__ = [
    "HOP_BY_HOP",
    "Upstream",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "downstream_headers",
    "upstream_headers",
]

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the gateway from the connection, never taken from the client.
_FORWARDED: Final = frozenset(
    {"forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip"}
)
# Host: the upstream's own (set from its URL); the client's is in X-Forwarded-Host.
# What some upstreams route by instead of the request line (IIS, Symfony, Zend): a client's
# would send the request to another path than the one the gate ruled on.
_REWRITES: Final = frozenset({"x-original-url", "x-rewrite-url"})
_NOT_FORWARDED: Final = HOP_BY_HOP | _FORWARDED | _REWRITES | {"host"}
# The server frames the answer and dates it (one Date header, its own).
_NOT_RETURNED: Final = HOP_BY_HOP | {"content-length", "date"}
_PIIGATE_COOKIE_PREFIX: Final = "piigate_"
KEEPALIVE: Final = 4.0  # seconds


class UpstreamUnavailable(PiigateError):
    status = 502
    code = "upstream_unavailable"
    title = "Bad gateway"


class UpstreamTimeout(PiigateError):
    status = 504
    code = "upstream_timeout"
    title = "Gateway timeout"


def _connection_named(headers: Iterable[tuple[str, str]]) -> set[str]:
    named: set[str] = set()
    for key, value in headers:
        if key == "connection":
            named.update(token.strip().lower() for token in value.split(",") if token.strip())
    return named


def upstream_headers(
    headers: Sequence[tuple[str, str]],
    *,
    drop: frozenset[str],
    client_ip: str | None,
    scheme: str,
) -> list[tuple[str, str]]:
    """The client's ``headers`` (lower-case names) as the upstream gets them. ``drop``: more
    names to remove (piigate's grant header, the subject and level headers)."""
    named = _connection_named(headers)
    removed = _dashed(_NOT_FORWARDED | drop | named if named else _not_forwarded_but(drop))
    out: list[tuple[str, str]] = []
    host = None
    for key, value in headers:
        if key == "host":
            host = value
            continue
        if key.replace("_", "-") in removed:  # CGI, WSGI, Rack, PHP: X_Y is X-Y
            continue
        if key == "cookie":
            value = _without_piigate_cookies(value)
            if not value:
                continue
        out.append((key, value))
    if client_ip is not None:
        out.append(("x-forwarded-for", client_ip))
        node = f'"[{client_ip}]"' if ":" in client_ip else client_ip
        forwarded = f"for={node};proto={scheme}"
        if host:  # a quoted-string: a quote in the client's Host cannot end it
            quoted = host.replace("\\", "\\\\").replace('"', '\\"')
            forwarded += f';host="{quoted}"'
        out.append(("forwarded", forwarded))
    out.append(("x-forwarded-proto", scheme))
    if host:
        out.append(("x-forwarded-host", host))
    return out


@functools.lru_cache(maxsize=64)
def _not_forwarded_but(drop: frozenset[str]) -> frozenset[str]:
    """What never goes upstream, with ``drop`` (the same few sets, request after request)."""
    return _NOT_FORWARDED | drop


@functools.lru_cache(maxsize=64)
def _dashed(names: frozenset[str]) -> frozenset[str]:
    """``names`` with ``_`` read as ``-``, as servers that map headers to ``HTTP_X_Y``
    variables read them: a client's ``PIIGate_Subject`` is the gateway's ``PIIGate-Subject``
    there."""
    return frozenset(name.replace("_", "-") for name in names)


def _without_piigate_cookies(value: str) -> str:
    kept = [
        pair.strip()
        for pair in value.split(";")
        if pair.strip() and not pair.strip().lower().startswith(_PIIGATE_COOKIE_PREFIX)
    ]
    return "; ".join(kept)


def downstream_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream's answer headers as the client gets them (no hop-by-hop headers; the
    server sets the framing)."""
    pairs = list(headers)
    named = _connection_named(pairs)
    removed = _NOT_RETURNED | named if named else _NOT_RETURNED
    return [(k, v) for k, v in pairs if k not in removed]


def _as_sent(value: str) -> str:
    """A header value, held as the latin-1 reading of the bytes received, as aiohttp must be
    given it to write those same bytes (it writes headers as UTF-8). A value that is not UTF-8
    cannot be written as it came: refused (400) rather than altered."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("a header value is not UTF-8: it cannot be forwarded as sent") from None


class UpstreamAnswer:
    """The upstream's answer, its body still to be read (then :meth:`aclose` it)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.headers = [
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.raw_headers
        ]
        self._response = response

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def chunk(self) -> bytes:
        """The next part of the body as it arrives, ``b""`` once all of it has (undecoded: a
        compressed body stays compressed)."""
        try:
            return await self._response.content.readany()
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise UpstreamTimeout("the upstream API stopped answering") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable("the upstream API's answer broke off") from exc

    @property
    def complete(self) -> bool:
        """All of the body has been read."""
        return self._response.content.at_eof()

    async def read(self, limit: int) -> bytes | None:
        """The whole body, or None when it is over ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        while chunk := await self.chunk():
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
        return b"".join(parts)

    async def aclose(self) -> None:
        self._response.release()


class Upstream:
    """Pooled connections to the upstream API at ``base_url`` (``http(s)://host[:port][/prefix]``).

    aiohttp, chosen by measurement (``bench/upstream_clients.py``: a 28th of httpx's CPU per
    request), with what a proxy must not do turned off: no redirects followed, no cookie jar
    (one client's cookies would reach the next), no decompression, none of its own headers,
    no proxy from the environment. Idle connections are dropped before a typical upstream's
    own keep-alive timeout (uvicorn's 5 s) would close them under a request.
    """

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_connections: int = 256,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._limits = (connect_timeout, read_timeout, max_connections)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Opened on first use, inside the server's event loop.
        connect, read, limit = self._limits
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=limit, limit_per_host=limit, keepalive_timeout=KEEPALIVE
            ),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=connect, sock_connect=connect, sock_read=read
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            raise_for_status=False,
            trust_env=False,
        )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
    ) -> UpstreamAnswer:
        """Send the request (the target as sent, not re-encoded); its answer with the body
        still to be read."""
        session = self._session or self._open()
        url = yarl.URL(self.base_url + target, encoded=True)
        try:
            response = await session.request(
                method,
                url,
                headers=CIMultiDict((k, _as_sent(v)) for k, v in headers),
                data=body,
                allow_redirects=False,
            )
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise UpstreamTimeout("the upstream API did not answer in time") from exc
        except aiohttp.ClientError as exc:
            if isinstance(exc.__cause__, PiigateError):  # the body refused as it streamed
                raise exc.__cause__ from None
            raise UpstreamUnavailable("the upstream API cannot be reached") from exc
        return UpstreamAnswer(response)
