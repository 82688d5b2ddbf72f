"""Identifiers piigate issues: ``<prefix>_`` and 128 random bits (decisions, challenges, grants,
factors, ceremonies, events)."""

from __future__ import annotations

import base64
import os
import threading

__all__ = ["MAX_ID_LENGTH", "new_id"]

# Ids piigate issues are far shorter; a longer one is refused before it reaches the store.
MAX_ID_LENGTH = 64


class _RandomPool:
    """Bytes from ``os.urandom``, drawn a few KiB at a time and handed out once each.

    Ids must stay unguessable (a challenge id names a step-up), so they are 128 bits from the
    OS CSPRNG. ``os.urandom`` is a system call that releases the GIL, and on the event loop every
    release lets another thread (the store's, the audit writer's) take the GIL for a while; one
    call per 256 ids makes that rare. A forked child starts with an empty pool, never with its
    parent's bytes.
    """

    _CHUNK = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0
        os.register_at_fork(after_in_child=self._discard)

    def take(self, size: int) -> bytes:
        with self._lock:
            start = self._offset
            if start + size > len(self._buffer):
                self._buffer = os.urandom(max(self._CHUNK, size))
                start = 0
            self._offset = start + size
            return self._buffer[start : start + size]

    def _discard(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0


_RANDOM = _RandomPool()


def new_id(prefix: str) -> str:
    """``<prefix>_`` and 128 random bits in base64url (22 characters)."""
    token = base64.urlsafe_b64encode(_RANDOM.take(16)).rstrip(b"=").decode("ascii")
    return f"{prefix}_{token}"
