"""Local passwords: argon2id hashes (RFC 9106), checked in constant work per attempt.

Parameters: argon2-cffi's defaults, which since 21.2 *are* RFC 9106 §4's second recommended
option ("low memory": argon2id, t=3, m=64 MiB, p=4, 16-byte salt, 32-byte tag). The first option
(m=2 GiB) would let a handful of concurrent logins exhaust a node's memory; the low-memory
profile still costs an attacker 64 MiB per guess, which is what makes GPU/ASIC cracking dear.
Changing them later is safe: :func:`needs_rehash` tells the login path to re-hash on the next
successful login.

Each hash or verify takes ~0.1 s of CPU and 64 MiB of memory: async callers should run them in
a worker thread (``asyncio.to_thread``) and bound how many run at once.
"""

from __future__ import annotations

import functools
import secrets
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

from piigate.crypto.secret import Secret

__all__ = [
    "DUMMY_HASH",
    "dummy_hash",
    "hash_password",
    "needs_rehash",
    "verify_password",
    "verify_password_or_dummy",
]

_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)

# Declared for type checkers and ``from ... import DUMMY_HASH``; computed on first access by the
# module ``__getattr__`` below (PEP 562), so importing this module costs no hashing.
DUMMY_HASH: str


def _normalize(password: Secret[str]) -> str:
    # NIST SP 800-63B §5.1.1.2: normalize Unicode (NFKC) before hashing, so the same password
    # typed on two keyboards that compose "é" differently is still the same password.
    return unicodedata.normalize("NFKC", password.reveal())


def hash_password(password: Secret[str]) -> str:
    """An argon2id PHC string (``$argon2id$v=19$m=65536,t=3,p=4$salt$tag``) for storage."""
    return _HASHER.hash(_normalize(password))


def verify_password(hash: str, password: Secret[str]) -> bool:
    """True if ``password`` matches ``hash``; False otherwise, never raising for a bad password.

    A stored hash that cannot be parsed also gives False: failing closed beats an exception
    that would turn a damaged row into a 500 (and a distinguishable, faster response).
    """
    try:
        return _HASHER.verify(hash, _normalize(password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(hash: str) -> bool:
    """True when ``hash`` was made with other parameters (or cannot be parsed at all).

    Re-hash the password the user just presented, after a successful :func:`verify_password`.
    """
    try:
        return _HASHER.check_needs_rehash(hash)
    except InvalidHashError:
        return True


@functools.cache
def dummy_hash() -> str:
    """A hash of a random password with the current parameters, computed once per process."""
    return _HASHER.hash(secrets.token_urlsafe(32))


def verify_password_or_dummy(hash: str | None, password: Secret[str]) -> bool:
    """Verify against ``hash``, or burn the same work on :func:`dummy_hash` and return False.

    Login for an unknown user must cost what it costs for a known one, or response times
    enumerate the user names (OWASP Authentication Cheat Sheet, "Authentication and Error
    Messages").
    """
    if hash is None:
        verify_password(dummy_hash(), password)
        return False
    return verify_password(hash, password)


def __getattr__(name: str) -> str:
    if name == "DUMMY_HASH":
        return dummy_hash()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
