"""TOTP (RFC 6238) over HOTP (RFC 4226): enrollment material and one verification step.

Pure: no I/O and no clock. The caller passes the time (``at``) and the last accepted time step,
and saves the step it gets back with a compare-and-set (``AdvanceTotpStep`` at a challenge,
``Store.advance_totp_step`` at enrollment), so a code cannot be used twice even when two nodes
verify it at the same moment. The HOTP value (RFC 4226 §5.3: HMAC, dynamic truncation) is
computed here with the stdlib's one-shot ``hmac.digest``, from the key decoded once per
verification rather than once per code of the window; the tests hold it to the RFC's vectors
and to ``pyotp``, which builds the provisioning URI. The step, the window and the replay rule
live here too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import pyotp
import segno

from piigate.crypto.secret import Secret
from piigate.errors import FactorRejected

__all__ = [
    "TotpAlgorithm",
    "TotpFailure",
    "TotpMatch",
    "TotpRejected",
    "hotp_code",
    "new_totp_secret",
    "provisioning_uri",
    "qr_svg",
    "totp_step",
    "verify_totp",
]

# RFC 4226 §4 R6: at least 128 bits, 160 recommended; 160 bits = 32 base32 characters, unpadded.
SECRET_BYTES = 20
# RFC 6238 §4.1: T0 = 0, the Unix epoch.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TotpAlgorithm(StrEnum):
    """The HMAC hash (RFC 6238 §1.2 allows SHA-1, SHA-256 and SHA-512)."""

    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA512 = "sha512"


_DIGESTS: Mapping[TotpAlgorithm, Callable[..., Any]] = {
    TotpAlgorithm.SHA1: hashlib.sha1,
    TotpAlgorithm.SHA256: hashlib.sha256,
    TotpAlgorithm.SHA512: hashlib.sha512,
}
# RFC 4226 §5.3: the 8-byte big-endian counter.
_COUNTER = struct.Struct(">Q")


class TotpFailure(StrEnum):
    """Why a code was refused: for the audit log, never for the client (STYLE.md §9)."""

    WRONG_CODE = "wrong_code"
    REPLAYED = "replayed"
    MALFORMED = "malformed"


class TotpRejected(FactorRejected):
    """A TOTP code was refused.

    Renders as the vague ``factor_rejected`` 401 (STYLE.md §9); ``reason`` is exact, for the audit.
    """

    def __init__(self, reason: TotpFailure) -> None:
        super().__init__()
        self.reason = reason

    def __repr__(self) -> str:
        return f"TotpRejected({self.reason.value!r})"


@dataclass(frozen=True, slots=True)
class TotpMatch:
    """An accepted code: ``step`` is what to save as the new last step; ``drift`` is
    ``step`` minus the verifier's current step (negative: the authenticator's clock is slow)."""

    step: int
    drift: int


def new_totp_secret() -> Secret[str]:
    """A fresh 160-bit shared secret, base32 without padding (what authenticator apps expect)."""
    raw = secrets.token_bytes(SECRET_BYTES)
    return Secret(base64.b32encode(raw).decode("ascii").rstrip("="))


def totp_step(at: datetime, *, period: int = 30) -> int:
    """RFC 6238 §4.2: T = floor((unix time - T0) / X), in exact integer arithmetic."""
    if at.tzinfo is None:
        raise ValueError("at must be a timezone-aware datetime")
    if period <= 0:
        raise ValueError("period must be a positive number of seconds")
    return (at - _EPOCH) // timedelta(seconds=period)


def hotp_code(
    secret: Secret[str], counter: int, *, digits: int = 6, algorithm: str = "sha1"
) -> str:
    """The RFC 4226 value for ``counter`` (for a TOTP, the counter is the time step)."""
    return _Hotp(secret, digits=digits, algorithm=algorithm).code(counter)


def verify_totp(
    secret: Secret[str],
    code: str,
    *,
    at: datetime,
    last_step: int | None,
    digits: int = 6,
    period: int = 30,
    algorithm: str = "sha1",
    window: int = 1,
) -> TotpMatch:
    """Check ``code`` at time ``at``; return the matched step or raise :class:`TotpRejected`.

    ``last_step`` is the step of the last accepted code (None before the first). Save the
    returned ``step`` with a compare-and-set on ``last_step``; a lost race means a replay.
    """
    if window < 0:
        raise ValueError("window must not be negative")
    # Exactly `digits` ASCII digits: str.isdigit alone would also accept "²" or Arabic-Indic
    # digits, which no authenticator displays.
    if len(code) != digits or not (code.isascii() and code.isdigit()):
        raise TotpRejected(TotpFailure.MALFORMED)
    hotp = _Hotp(secret, digits=digits, algorithm=algorithm)
    current = totp_step(at, period=period)
    given = code.encode("ascii")

    # RFC 6238 §5.2 allows `window` steps of clock skew either way. Every candidate in the
    # window is computed and compared (hmac.compare_digest, no early exit), so the time taken
    # says nothing about which step matched, or whether one did.
    matched: list[int] = []
    for step in range(current - window, current + window + 1):
        if step < 0:  # RFC 4226 counters are unsigned; before T0 there is nothing to match
            continue
        if hmac.compare_digest(hotp.code(step).encode("ascii"), given):
            matched.append(step)
    # RFC 6238 §5.2: "the verifier MUST NOT accept the second attempt of the same OTP after the
    # successful validation has been issued for the first OTP". Anything at or before the last
    # accepted step is refused, so a shoulder-surfed code cannot be replayed in a later step,
    # and neither can an older code once a newer one went through.
    fresh = [step for step in matched if last_step is None or step > last_step]
    if not fresh:
        raise TotpRejected(TotpFailure.REPLAYED if matched else TotpFailure.WRONG_CODE)
    # Two steps yielding the same code is a ~1e-6 coincidence; prefer the smallest skew.
    step = min(fresh, key=lambda s: (abs(s - current), s))
    return TotpMatch(step=step, drift=step - current)


def provisioning_uri(
    secret: Secret[str],
    *,
    account: str,
    issuer: str,
    digits: int = 6,
    period: int = 30,
    algorithm: str = "sha1",
) -> str:
    """The ``otpauth://totp/Issuer:account?secret=...&issuer=...`` URI (Key URI Format).

    It contains the secret: show it to the enrolling user once, never log it.
    """
    totp = pyotp.TOTP(
        secret.reveal(),
        digits=digits,
        digest=_DIGESTS[TotpAlgorithm(algorithm.lower())],
        interval=period,
    )
    return totp.provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as a QR code: a standalone SVG document (with xmlns, without XML declaration),
    usable inline in HTML, as a file, or as a data URI."""
    qr = segno.make(uri, error="m", micro=False)
    out = io.BytesIO()
    qr.save(out, kind="svg", xmldecl=False, scale=4, border=4, title="TOTP enrollment")
    return out.getvalue().decode("utf-8")


class _Hotp:
    """RFC 4226 values of one shared secret, its base32 decoded once (as pyotp decodes it:
    padding added, any case)."""

    __slots__ = ("_digest", "_digits", "_key", "_modulus")

    def __init__(self, secret: Secret[str], *, digits: int, algorithm: str) -> None:
        # RFC 4226 §5.3 / R4: at least 6 digits; 10 digits hold any 31-bit value.
        if not 6 <= digits <= 10:
            raise ValueError("digits must be between 6 and 10")
        self._digest = TotpAlgorithm(algorithm.lower()).value
        self._digits = digits
        self._modulus = 10**digits
        text = secret.reveal()
        self._key = base64.b32decode(text + "=" * (-len(text) % 8), casefold=True)

    def code(self, counter: int) -> str:
        """The ``digits``-digit value for ``counter`` (RFC 4226 §5.3, dynamic truncation)."""
        if counter < 0:
            raise ValueError("an HOTP counter is unsigned")
        mac = hmac.digest(self._key, _COUNTER.pack(counter), self._digest)
        offset = mac[-1] & 0x0F
        value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
        return str(value % self._modulus).zfill(self._digits)
