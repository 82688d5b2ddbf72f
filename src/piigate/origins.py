"""Web origins (RFC 6454), the ``scheme://host[:port]`` a browser names a page by, and the
``HOST:PORT`` addresses piigate listens on.

Pure: WebAuthn's relying party and the API's cross-site check both compare origins in the
serialisation browsers send (``Origin`` header, ``clientDataJSON.origin``); ``piigate serve``
and the gateways read their ``listen`` settings with :func:`parse_listen`. A client's address
is counted (login back-off, the gateway's rate limits) by its network, :func:`client_network`.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["client_network", "is_loopback", "parse_listen", "served_url", "web_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def web_origin(url: str, *, bare: bool = False) -> str:
    """The origin of the http(s) URL ``url``, serialised as browsers do (RFC 6454 §6.2): the
    scheme and host in lower case, an IPv6 host in brackets, the default port left out.

    ``bare``: ``url`` must be an origin itself (no user, path, query or fragment). Raises
    ``ValueError`` with a short reason for anything that has no web origin (``null`` included).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port or host") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("must be an http:// or https:// URL")
    host = parts.hostname
    if not host:
        raise ValueError("has no host")
    extra = parts.username is not None or parts.path not in ("", "/")
    if bare and (extra or parts.query or parts.fragment):
        raise ValueError("must be scheme://host[:port] only")
    shown = f"[{host}]" if ":" in host else host
    origin = f"{scheme}://{shown}"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        origin += f":{port}"
    return origin


def parse_listen(text: str, *, default_host: str | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (``[ADDRESS]:PORT`` for IPv6) → ``(host, port)``, the brackets removed. An
    empty host is ``default_host`` where one is given. ``ValueError`` says what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address needs brackets: [::1]:8081
    else:
        host = host or (default_host or "")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("listen must be HOST:PORT ([ADDRESS]:PORT for IPv6)")
    return host, int(port)


def served_url(host: str, port: int) -> str:
    """The ``http://`` URL of what listens on ``host:port``."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address; a host name is not known to be one."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whether clients reach it by that name is not known


def client_network(ip: str) -> str | None:
    """The network a client address is counted by: an IPv4 address itself (an IPv4-mapped IPv6
    address as its IPv4 one), an IPv6 address by its /64, since one subscriber usually holds a
    whole /64 and could otherwise rotate through it. None when ``ip`` is not an address."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)
