"""Web origins (RFC 6454): the ``scheme://host[:port]`` a browser names a page by.

Pure: WebAuthn's relying party and the API's cross-site check both compare origins in the
serialisation browsers send (``Origin`` header, ``clientDataJSON.origin``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["web_origin"]

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
