"""One-time recovery codes: generated once, shown once, stored only as argon2id hashes.

A code is 12 characters of Crockford's base32 (``0-9a-z`` without ``i l o u``), 60 bits, written
``xxxx-xxxx-xxxx``. Matching forgives what people do when they retype a code from paper: case,
dashes, spaces, and Crockford's look-alikes (``o`` for ``0``, ``i``/``l`` for ``1``).

Hashing costs ~0.1 s of CPU and 64 MiB per hash (see :mod:`piigate.identity.passwords`). Beside
each hash a set stores the code's tag (:func:`recovery_code_tag`: 16 bits of a SHA-256 of the
code), so that :func:`match_recovery_code` runs argon2 on the codes whose tag the typed code
shares, almost always one (the right code) or none (then one dummy verification, so a wrong code
costs what a right one does): one verification an attempt, not one per stored code. A tag gives
away 16 of a code's 60 bits to whoever reads the store; the other 44 stay behind argon2id
(2^44 verifications of ~0.1 s each). A set stored without tags (before they existed) is checked
hash by hash, as it always was. Run matching in a worker thread and bound the concurrency.
Spending a code is the caller's: replace the matched hash by ``None`` (keeping the positions) or
drop it, with a compare-and-set (``Store.replace_factor_data``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Final

from piigate.crypto.secret import Secret
from piigate.identity.passwords import dummy_hash, hash_password, verify_password

__all__ = [
    "RECOVERY_ALPHABET",
    "generate_recovery_codes",
    "hash_recovery_code",
    "match_recovery_code",
    "normalize_recovery_code",
    "recovery_code_tag",
    "spend_recovery_code",
]

# Crockford's base32 (https://www.crockford.com/base32.html): 32 symbols, 5 bits each.
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_GROUPS = 3
_GROUP_LENGTH = 4  # 3 x 4 x 5 = 60 bits per code
_CODE_LENGTH = _GROUPS * _GROUP_LENGTH
_SEPARATORS = frozenset("- \t\r\n\u00a0")
_LOOKALIKES = str.maketrans({"o": "0", "i": "1", "l": "1"})
_TAG_DOMAIN: Final = b"piigate recovery code tag\x00"
_TAG_HEX_DIGITS: Final = 4  # 16 bits


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


def recovery_code_tag(code: Secret[str]) -> str:
    """The code's tag (4 hex digits, 16 bits of a SHA-256 of its canonical form), stored
    beside its hash: see the module's doc."""
    canonical = normalize_recovery_code(code)
    if canonical is None:
        raise ValueError("not a recovery code")
    return _tag(canonical)


def _tag(canonical: Secret[str]) -> str:
    digest = hashlib.sha256(_TAG_DOMAIN + canonical.reveal().encode("ascii")).hexdigest()
    return digest[:_TAG_HEX_DIGITS]


def match_recovery_code(
    code: Secret[str],
    hashes: Sequence[str | None],
    tags: Sequence[str | None] | None = None,
) -> int | None:
    """The index of the hash ``code`` matches, or None.

    ``None`` entries are spent codes: they never match. With ``tags`` (one per hash, in the
    same order), only the entries whose tag is the code's are verified (a spent one against the
    dummy hash), and one dummy verification runs when there are none. Without them (or when
    they do not line up with the hashes), every entry costs one argon2 verification (a dummy
    one for spent entries). There is no early exit either way, so the time taken tells neither
    whether nor where the code matched, only (with tags) whether some code of the set shares
    its 16-bit tag.
    """
    canonical = normalize_recovery_code(code)
    if canonical is None:
        # Not even the shape of a code: nothing secret to hide, and no reason to burn CPU.
        return None
    if tags is not None and len(tags) == len(hashes):
        tag = _tag(canonical)
        entries = [(i, h) for i, (h, t) in enumerate(zip(hashes, tags, strict=True)) if t == tag]
        checked: Sequence[tuple[int, str | None]] = entries or [(-1, None)]
    else:
        checked = list(enumerate(hashes))
    found: int | None = None
    for index, stored in checked:
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
