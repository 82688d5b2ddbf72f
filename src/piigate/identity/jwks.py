"""The identity provider's JSON Web Key Set (RFC 7517): fetched with httpx, cached, rate-limited.

Rules, in the order they bite:

- Keys are cached for ``cache_ttl`` seconds, then re-fetched on the next use.
- A token naming an unknown ``kid`` triggers a re-fetch (the IdP may have rotated), but at most
  one fetch per ``min_refresh_interval`` — failed ones included — so tokens with made-up ``kid``
  values cannot make us hammer the IdP.
- Concurrent refreshes coalesce into one fetch (an :class:`asyncio.Lock` plus a generation
  counter: whoever waited for the lock while another task fetched uses that result).
- When a fetch fails, the keys already held keep working (stale-if-error); only a token that no
  cached key can check gets :class:`~piigate.identity.errors.IdpUnavailable`.

Times here come from a monotonic ``timer`` (injected for tests): cache ages must not jump with
the wall clock. Token validity is checked elsewhere, against the caller's ``now``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc.jwk import JWKRegistry, Key, KeySet

from piigate.identity.errors import IdpUnavailable

__all__ = ["JwksCache", "JwksError", "parse_jwks"]

# Members that only private keys carry (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2). A key set fetched
# from the network is public by definition; we never keep private material from it.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth"})
# Asymmetric key types only. An "oct" key in a public key set would let anyone who can read the
# set forge HMAC-signed tokens (the classic RS256→HS256 confusion), so it is ignored.
_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


class JwksError(Exception):
    """A key set that cannot be fetched or used (never shown to clients)."""


def parse_jwks(document: bytes | str | Mapping[str, Any]) -> KeySet:
    """The usable verification keys of a JWK Set document.

    Keys this process cannot use are skipped, as RFC 7517 §5 asks: unknown or symmetric ``kty``,
    ``use`` other than ``sig``, malformed members. Private members are dropped.
    Raises :class:`JwksError` when nothing usable remains.
    """
    if isinstance(document, bytes | str):
        try:
            document = json.loads(document)
        except ValueError as error:
            raise JwksError("the key set is not JSON") from error
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise JwksError("the key set has no 'keys' array")
    keys: list[Key] = []
    for item in document["keys"]:
        if not isinstance(item, dict) or item.get("kty") not in _KEY_TYPES:
            continue
        if item.get("use", "sig") != "sig":
            continue
        public = {k: v for k, v in item.items() if k not in _PRIVATE_MEMBERS}
        try:
            keys.append(JWKRegistry.import_key(public))
        except Exception:  # noqa: S112 -- untrusted input: any malformed key is simply skipped
            continue
    if not keys:
        raise JwksError("the key set holds no usable signature keys")
    return KeySet(keys)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    keyset: KeySet
    fetched_at: float


class JwksCache:
    """Verification keys of one issuer, fetched from ``url`` on demand."""

    def __init__(
        self,
        url: str,
        *,
        http: httpx.AsyncClient | None = None,
        cache_ttl: float = 600.0,
        min_refresh_interval: float = 30.0,
        timeout: float = 5.0,
        max_bytes: int = 256 * 1024,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_url(url)
        if cache_ttl <= 0 or min_refresh_interval < 0 or timeout <= 0 or max_bytes < 1:
            raise ValueError("cache_ttl, timeout and max_bytes must be positive")
        self._url = url
        self._http = http
        self._owned: httpx.AsyncClient | None = None
        self._ttl = cache_ttl
        self._min_interval = min_refresh_interval
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._timer = timer
        self._snapshot: _Snapshot | None = None
        self._lock = asyncio.Lock()
        self._generation = 0
        self._last_attempt: float | None = None
        self._last_failed = False
        self._fetches = 0

    @property
    def url(self) -> str:
        """Where the key set is fetched from."""
        return self._url

    @property
    def fetch_count(self) -> int:
        """How many fetches were attempted (for metrics)."""
        return self._fetches

    @property
    def keyset(self) -> KeySet | None:
        """The keys currently held (possibly stale), or None before the first good fetch."""
        return self._snapshot.keyset if self._snapshot else None

    async def aclose(self) -> None:
        """Close the HTTP client this cache created itself (a client passed in is the caller's)."""
        if self._owned is not None:
            await self._owned.aclose()
            self._owned = None

    async def keys_for(self, kid: str | None) -> tuple[Key, ...]:
        """The held keys with this ``kid`` (every held key when ``kid`` is None).

        May fetch, per the module rules. An empty result means "no such key" (the token is
        invalid); :class:`IdpUnavailable` means "cannot tell, the IdP is unreachable".
        """
        snapshot = self._snapshot
        if snapshot is None or self._timer() - snapshot.fetched_at >= self._ttl:
            await self._refresh()
            snapshot = self._snapshot
            if snapshot is None:
                raise IdpUnavailable()
        found = _with_kid(snapshot.keyset, kid)
        if found or kid is None:
            return found

        await self._refresh()  # an unknown kid: the IdP may have rotated its keys
        snapshot = self._snapshot
        assert snapshot is not None  # only ever replaced by a newer snapshot
        found = _with_kid(snapshot.keyset, kid)
        if not found and self._last_failed:
            raise IdpUnavailable()
        return found

    async def _refresh(self) -> None:
        seen = self._generation
        async with self._lock:
            if self._generation != seen:
                return  # another task fetched while we waited for the lock: use its result
            started = self._timer()
            previous = self._last_attempt
            if previous is not None and started - previous < self._min_interval:
                return
            self._last_attempt = started
            try:
                keyset = await self._fetch()
            except asyncio.CancelledError:
                # Our caller went away mid-fetch; let the next caller try instead of waiting
                # out min_refresh_interval with nothing fetched.
                self._last_attempt = previous
                raise
            except (JwksError, httpx.HTTPError):
                self._last_failed = True
            else:
                self._snapshot = _Snapshot(keyset, self._timer())
                self._last_failed = False
            self._generation += 1

    async def _fetch(self) -> KeySet:
        self._fetches += 1
        client = self._client()
        headers = {"Accept": "application/jwk-set+json, application/json"}
        async with client.stream("GET", self._url, headers=headers) as response:
            if response.status_code != httpx.codes.OK:
                raise JwksError(f"key set fetch answered HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self._max_bytes:
                    raise JwksError("key set too large")
        return parse_jwks(bytes(body))

    def _client(self) -> httpx.AsyncClient:
        if self._http is not None:
            return self._http
        if self._owned is None:
            # Redirects are not followed: the key set URL is configuration, and a redirect
            # to somewhere else is more likely a mistake or an attack than a feature.
            self._owned = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        return self._owned


def _with_kid(keyset: KeySet, kid: str | None) -> tuple[Key, ...]:
    if kid is None:
        return tuple(keyset.keys)
    return tuple(key for key in keyset.keys if key.kid == kid)


def _check_url(url: str) -> None:
    # Whoever can alter the key set can mint tokens, so it must come over TLS; plain http is
    # accepted only from the loopback interface (tests, a sidecar IdP).
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        if parts.hostname == "localhost":
            return
        try:
            if ipaddress.ip_address(parts.hostname).is_loopback:
                return
        except ValueError:
            pass
    raise ValueError("the JWKS URL must be https:// (or http:// on a loopback address)")
