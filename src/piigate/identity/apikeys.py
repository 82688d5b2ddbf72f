"""API keys: ``pgk_<id>_<secret>`` bearer credentials for services, apps and database clients.

A key is 256 bits from ``secrets`` behind a public 48-bit id. Only its SHA-256 digest is stored.
A slow password hash (argon2, bcrypt) exists to make guessing *low-entropy* secrets expensive;
a 256-bit random key cannot be guessed at any speed, so SHA-256 is enough and checking a key
costs microseconds instead of ~0.1 s of CPU and 64 MiB per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from piigate.crypto.secret import Secret
from piigate.model import Subject

__all__ = [
    "API_KEY_PREFIX",
    "ApiKeyCache",
    "ApiKeyLoader",
    "ApiKeyPrincipal",
    "api_key_id",
    "generate_api_key",
    "hash_api_key",
    "looks_like_api_key",
]

API_KEY_PREFIX = "pgk_"
# 12 lowercase hex id characters, then secrets.token_urlsafe(32): 43 base64url characters
# (256 bits). Longer secrets are accepted in case a future version issues them; the upper bound
# keeps a hostile "key" from costing more than a regex over a few dozen characters.
_KEY_RE = re.compile(r"pgk_([0-9a-f]{12})_[A-Za-z0-9_-]{43,86}")


@dataclass(frozen=True, slots=True)
class ApiKeyPrincipal:
    """Who an API key stands for: what the store returns for a digest, and what is cached."""

    id: str
    name: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()

    def as_subject(self) -> Subject:
        return Subject(id=self.id, roles=self.roles, scopes=self.scopes, kind="service")


ApiKeyLoader = Callable[[bytes], Awaitable[ApiKeyPrincipal | None]]


def generate_api_key() -> tuple[str, Secret[str], bytes]:
    """A new key: ``(key id, full secret shown once, SHA-256 digest to store)``."""
    id_part = secrets.token_hex(6)
    full = f"{API_KEY_PREFIX}{id_part}_{secrets.token_urlsafe(32)}"
    return f"key_{id_part}", Secret(full), hash_api_key(full)


def hash_api_key(presented: str) -> bytes:
    """SHA-256 of the presented key, the value stored and looked up (see the module docstring)."""
    return hashlib.sha256(presented.encode("utf-8")).digest()


def looks_like_api_key(s: str) -> bool:
    """True if ``s`` has the shape of a piigate API key (says nothing about its validity)."""
    return _KEY_RE.fullmatch(s) is not None


def api_key_id(presented: str) -> str | None:
    """The public ``key_<id>`` part of a presented key, safe to log; None if it is not one."""
    m = _KEY_RE.fullmatch(presented)
    return f"key_{m.group(1)}" if m else None


@dataclass(slots=True)
class _Entry:
    principal: ApiKeyPrincipal | None
    expires: float


class ApiKeyCache:
    """A per-node TTL + LRU cache in front of the store's ``digest → principal`` lookup.

    Found keys are kept ``ttl`` seconds, unknown digests only ``negative_ttl`` seconds (a key
    created on another node must start working almost at once) and in their own, smaller LRU,
    so a flood of random keys cannot evict the real ones. Concurrent lookups of one digest
    share one load. A revoked key keeps working here for up to ``ttl`` seconds unless
    :meth:`invalidate` is called; keep ``ttl`` short.

    Lookups are by digest, so dictionary timing reveals nothing usable about a secret.
    """

    def __init__(
        self,
        loader: ApiKeyLoader,
        *,
        ttl: float = 30.0,
        negative_ttl: float = 1.0,
        max_entries: int = 1024,
        max_negative_entries: int = 256,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0 or negative_ttl < 0 or max_entries < 1 or max_negative_entries < 1:
            raise ValueError("cache TTLs must be >= 0 and sizes >= 1")
        self._loader = loader
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._timer = timer
        self._found: OrderedDict[bytes, _Entry] = OrderedDict()
        self._missing: OrderedDict[bytes, _Entry] = OrderedDict()
        self._max_found = max_entries
        self._max_missing = max_negative_entries
        # Bumped by invalidate(): a load that started before it must not re-cache its answer.
        self._epoch = 0
        self._inflight: dict[bytes, asyncio.Future[ApiKeyPrincipal | None]] = {}

    def __len__(self) -> int:
        return len(self._found) + len(self._missing)

    async def authenticate(self, presented: str) -> ApiKeyPrincipal | None:
        """The principal behind a presented key, or None (malformed, unknown or revoked)."""
        if not looks_like_api_key(presented):
            return None
        return await self.lookup(hash_api_key(presented))

    async def lookup(self, digest: bytes) -> ApiKeyPrincipal | None:
        now = self._timer()
        for table in (self._found, self._missing):
            entry = table.get(digest)
            if entry is None:
                continue
            if entry.expires > now:
                table.move_to_end(digest)
                return entry.principal
            del table[digest]

        pending = self._inflight.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._load(digest))
            pending.add_done_callback(_retrieve)
            self._inflight[digest] = pending
        # Shielded: one caller giving up (a client disconnect) must not cancel the shared load.
        return await asyncio.shield(pending)

    async def _load(self, digest: bytes) -> ApiKeyPrincipal | None:
        epoch = self._epoch
        try:
            principal = await self._loader(digest)
        finally:
            # A failed load is not cached: the next request asks the store again.
            self._inflight.pop(digest, None)
        if epoch != self._epoch:
            return principal
        now = self._timer()
        if principal is None:
            _put(self._missing, digest, _Entry(None, now + self._negative_ttl), self._max_missing)
        else:
            self._missing.pop(digest, None)
            _put(self._found, digest, _Entry(principal, now + self._ttl), self._max_found)
        return principal

    def invalidate(self, digest: bytes | None = None) -> None:
        """Forget one digest (after revoking that key on this node), or everything."""
        self._epoch += 1
        if digest is None:
            self._found.clear()
            self._missing.clear()
        else:
            self._found.pop(digest, None)
            self._missing.pop(digest, None)


def _put(table: OrderedDict[bytes, _Entry], digest: bytes, entry: _Entry, limit: int) -> None:
    table[digest] = entry
    table.move_to_end(digest)
    while len(table) > limit:
        table.popitem(last=False)


def _retrieve(future: asyncio.Future[ApiKeyPrincipal | None]) -> None:
    # Mark a failed load's exception as seen even when every waiter was cancelled, so asyncio
    # does not log "exception was never retrieved" (each live waiter still gets it raised).
    if not future.cancelled():
        future.exception()
