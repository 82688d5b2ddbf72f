"""Phone numbers: parsed, validated and normalised to E.164 with ``phonenumbers`` (libphonenumber).

A :class:`PhoneNumber` is PII. It never shows itself in a ``repr`` (only its :attr:`hint`, the
country code and last two digits), and :class:`InvalidPhoneNumber` never repeats what it was
given: the input may be a real person's number.

Only numbers that can receive an SMS are accepted: mobile numbers, and the ranges where
libphonenumber cannot tell mobile from fixed line (the North American plan). Premium-rate,
toll-free, shared-cost and VoIP ranges are refused — premium ranges are how "SMS pumping" fraud
turns a verification form into revenue, and NIST SP 800-63B-4 §3.1.3.3 expects the number to be
tied to a physical device, which a VoIP number is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from piigate.errors import PiigateError

__all__ = ["MAX_PHONE_INPUT", "InvalidPhoneNumber", "PhoneNumber", "parse_phone"]

# Longer than any formatted number with an extension; libphonenumber itself stops at 250.
MAX_PHONE_INPUT = 64
# The digits a hint keeps: enough to tell one's own phones apart, too few to identify anyone.
_HINT_DIGITS = 2
_MASK = "•"
_SMS_CAPABLE = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


class InvalidPhoneNumber(PiigateError):
    """422: the text is not a number that can receive SMS codes. The message explains what is
    wrong in general terms and never echoes the input."""

    status: ClassVar[int] = 422
    code: ClassVar[str] = "invalid_phone"
    title: ClassVar[str] = "Invalid phone number"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, **extra)


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A valid, SMS-capable number in E.164 form (``+14155550100``)."""

    e164: str = field(repr=False)
    hint: str

    def __repr__(self) -> str:
        return f"PhoneNumber(hint={self.hint!r})"

    __str__ = __repr__


def parse_phone(text: str, *, region: str | None = None) -> PhoneNumber:
    """Parse ``text`` (international ``+`` form, or national form with ``region`` as an ISO 3166
    alpha-2 code) into a :class:`PhoneNumber`; raises :class:`InvalidPhoneNumber`."""
    if not text or len(text) > MAX_PHONE_INPUT:
        raise InvalidPhoneNumber(
            f"phone: give a number of at most {MAX_PHONE_INPUT} characters", field="phone"
        )
    if region is not None and (
        len(region) != 2 or region.upper() not in phonenumbers.SUPPORTED_REGIONS
    ):
        raise InvalidPhoneNumber("region: not a known ISO 3166 country code", field="region")
    try:
        parsed = phonenumbers.parse(text, region.upper() if region else None)
    except NumberParseException:
        raise InvalidPhoneNumber(
            "phone: not a phone number; use the international format (+ and the country code)"
            " or give the region",
            field="phone",
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber("phone: not a valid number for its country", field="phone")
    if phonenumbers.number_type(parsed) not in _SMS_CAPABLE:
        raise InvalidPhoneNumber(
            "phone: this number cannot receive SMS codes (give a mobile number)", field="phone"
        )
    e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    shown = phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL)
    return PhoneNumber(e164=e164, hint=_hint(shown, parsed.country_code))


def _hint(international: str, country_code: int | None) -> str:
    """``+1 •••-•••-••00``: the country code and the last digits, every other digit masked."""
    prefix = f"+{country_code}" if country_code else ""
    if not international.startswith(prefix):
        prefix = ""
    body = international[len(prefix) :]
    total = sum(ch.isdigit() for ch in body)
    seen = 0
    out: list[str] = []
    for ch in body:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > total - _HINT_DIGITS else _MASK)
        else:
            out.append(ch)
    return prefix + "".join(out)
