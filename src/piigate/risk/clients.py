"""A user agent parsed into the :class:`~piigate.risk.observation.Client` the risk engine
compares: browser family and major version, OS family and major version, and a device type
(``desktop``, ``mobile``, ``tablet``, ``bot`` or ``other``).

``ua-parser`` 1.x with its native accelerator (``ua-parser-rs``, the ``[regex]`` extra) does the
parsing against uap-core's rules; without the accelerator it falls back to its pure-Python
resolver (correct, slower). Results are cached per user-agent string (LRU): a deployment sees
few distinct strings, and a parse costs tens of microseconds. The raw string is never kept
anywhere else.
"""

from __future__ import annotations

import functools
from typing import Final

from ua_parser import BestAvailableResolver, Domain, Resolver, load_builtins, load_lazy_builtins
from ua_parser import RegexResolver as _RegexResolver

from piigate.risk.observation import Client

__all__ = ["CACHE_SIZE", "UNKNOWN_CLIENT", "ClientParser"]

CACHE_SIZE: Final = 16_384
# Longer strings are cut before parsing (the rules only need the start; a huge header must not
# cost a long regex run, nor fill the cache with megabytes).
MAX_LENGTH: Final = 1024
UNKNOWN_CLIENT: Final = Client()

_UNKNOWN_FAMILY: Final = "Other"
_MOBILE_OS: Final = frozenset(
    {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "HarmonyOS"}
)
_DESKTOP_OS: Final = frozenset(
    {
        "Windows",
        "Mac OS X",
        "macOS",
        "Linux",
        "Ubuntu",
        "Debian",
        "Fedora",
        "Chrome OS",
        "ChromeOS",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
        "Solaris",
    }
)


class ClientParser:
    """``parse(user_agent) -> Client``, cached."""

    def __init__(self, *, cache_size: int = CACHE_SIZE) -> None:
        self.parse = functools.lru_cache(maxsize=cache_size)(self._parse)

    @property
    def native(self) -> bool:
        """Whether the native accelerator is in use."""
        return _RegexResolver is not None

    def _parse(self, user_agent: str) -> Client:
        text = user_agent[:MAX_LENGTH]
        if not text.strip():
            return UNKNOWN_CLIENT
        result = _resolver()(text, Domain.ALL)
        browser = _known(result.user_agent.family if result.user_agent else None)
        os = _known(result.os.family if result.os else None)
        device = result.device.family if result.device else None
        return Client(
            browser=browser,
            browser_major=(result.user_agent.major if result.user_agent and browser else None),
            os=os,
            os_major=result.os.major if result.os and os else None,
            device_type=_device_type(text, os, device),
        )


@functools.cache
def _resolver() -> Resolver:
    """The rules, compiled once per process on first use (a quarter of a second natively), and
    shared: a resolver holds no state of its own."""
    # The lazy rules compile each regex on first use: the native resolver reads them once.
    matchers = load_lazy_builtins() if _RegexResolver is not None else load_builtins()
    return BestAvailableResolver(matchers)


def _known(family: str | None) -> str | None:
    return None if family is None or family == _UNKNOWN_FAMILY else family


def _device_type(text: str, os: str | None, device: str | None) -> str:
    """uap-core names devices, not their kind: the kind from the device and OS families."""
    if device == "Spider":
        return "bot"
    if device is not None and ("iPad" in device or "Tablet" in device or "Kindle" in device):
        return "tablet"
    if os in _MOBILE_OS:
        # Android tablets leave "Mobile" out of the string (Google's guidance to browsers).
        if os == "Android" and "Mobile" not in text:
            return "tablet"
        return "mobile"
    if os in _DESKTOP_OS:
        return "desktop"
    return "other"
