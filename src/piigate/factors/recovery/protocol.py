"""One-time recovery codes: generated once, shown once, stored only as argon2id hashes.

A code is 12 characters of Crockford's base32 (``0-9a-z`` without ``i l o u``), 60 bits, written
``xxxx-xxxx-xxxx``. Matching forgives what people do when they retype a code from paper: case,
dashes, spaces, and Crockford's look-alikes (``o`` for ``0``, ``i``/``l`` for ``1``).

Hashing costs ~0.1 s of CPU and 64 MiB per hash (see :mod:`piigate.identity.passwords`), and
:func:`match_recovery_code` checks every stored hash: run it in a worker thread and bound the
concurrency. Spending a code is the caller's: replace the matched hash by ``None`` (keeping the
positions) or drop it, with a compare-and-set (``Store.replace_factor_data``).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from piigate.crypto.secret import Secret
from piigate.identity.passwords import dummy_hash, hash_password, verify_password

__all__ = [
    "RECOVERY_ALPHABET",
    "generate_recovery_codes",
    "hash_recovery_code",
    "match_recovery_code",
    "normalize_recovery_code",
    "spend_recovery_code",
]

# Crockford's base32 (https://www.crockford.com/base32.html): 32 symbols, 5 bits each.
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_GROUPS = 3
_GROUP_LENGTH = 4  # 3 x 4 x 5 = 60 bits per code
_CODE_LENGTH = _GROUPS * _GROUP_LENGTH
_SEPARATORS = frozenset("- \t\r\n\u00a0")
_LOOKALIKES = str.maketrans({"o": "0", "i": "1", "l": "1"})


def generate_recovery_codes(n: int = 10) -> list[Secret[str]]:
    """``n`` distinct random codes, ``xxxx-xxxx-xxxx``, 60 bits each."""
    if n < 1:
        raise ValueError("n must be at least 1")
    codes: list[str] = []
    while len(codes) < n:
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(_CODE_LENGTH))
        code = "-".join(raw[i : i + _GROUP_LENGTH] for i in range(0, _CODE_LENGTH, _GROUP_LENGTH))
        if code not in codes:  # a 2^-60 event, but the n codes are promised distinct
            codes.append(code)
    return [Secret(code) for code in codes]


def normalize_recovery_code(code: Secret[str]) -> Secret[str] | None:
    """The canonical form (12 lowercase symbols, no dashes); None if it cannot be a code."""
    text = "".join(ch for ch in code.reveal() if ch not in _SEPARATORS)
    text = text.lower().translate(_LOOKALIKES)
    if len(text) != _CODE_LENGTH or any(ch not in RECOVERY_ALPHABET for ch in text):
        return None
    return Secret(text)


def hash_recovery_code(code: Secret[str]) -> str:
    """An argon2id PHC string of the normalised code, for storage."""
    canonical = normalize_recovery_code(code)
    if canonical is None:
        raise ValueError("not a recovery code")
    return hash_password(canonical)


def match_recovery_code(code: Secret[str], hashes: Sequence[str | None]) -> int | None:
    """The index of the hash ``code`` matches, or None.

    ``None`` entries are spent codes: they never match. Every entry costs one argon2 verification
    (a dummy one for spent entries) and there is no early exit, so the time taken tells neither
    whether nor where the code matched.
    """
    canonical = normalize_recovery_code(code)
    if canonical is None:
        # Not even the shape of a code: nothing secret to hide, and no reason to burn CPU.
        return None
    found: int | None = None
    for index, stored in enumerate(hashes):
        if stored is None:
            verify_password(dummy_hash(), canonical)
            continue
        if verify_password(stored, canonical) and found is None:
            found = index
    return found


def spend_recovery_code(hashes: Sequence[str | None], index: int) -> list[str | None]:
    """The hash list with entry ``index`` marked spent (``None``); positions are kept."""
    if not 0 <= index < len(hashes) or hashes[index] is None:
        raise ValueError("no unspent recovery code at that index")
    spent = list(hashes)
    spent[index] = None
    return spent
