"""Which PII class a database column holds, from its name and a sample of its values.

``piigate scan postgres`` reads a few rows of each table and asks :func:`label_column` about each
column. Two independent sources are weighed: a **name rule** (``customer_ssn``, ``PhoneNumber``,
``iban``) and **value validators** (python-stdnum's checksums for SSNs and IBANs, phonenumbers
for phone numbers, patterns for e-mail and street addresses, the Luhn check for card numbers).
A column both sources agree on is labelled; one only a single source points at is labelled
``suspected`` for a human to confirm (the catalog treats suspected columns as PII until then,
failing closed). Free text that merely *contains* an identifier (a ``notes`` column quoting an
SSN) is suspected too, with a low confidence.

Each detector is named by the PII class it proposes (:class:`Detector`); the caller enables only
those whose class the policy defines. Passport numbers and birth dates have no checksum and look
like many other codes and dates, so their values only confirm a name, never label alone.

This module is pure: values come in as text, labels go out with a reason that counts values and
never quotes one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final

import phonenumbers
from stdnum import iban, luhn
from stdnum.us import ssn

__all__ = ["ColumnLabel", "Detector", "label_column", "name_matches"]

# Values agree with a class when at least this share of the non-empty sampled values is one.
AGREE: Final = 0.6
# Fewer non-empty values than this are too few to confirm a name: the label stays suspected.
MIN_VALUES: Final = 5


class Detector(StrEnum):
    """A detector, named by the PII class (of the policy) it proposes."""

    SSN = "ssn"
    PASSPORT = "passport"
    BANK_ACCOUNT = "bank_account"
    PHONE = "phone"
    MAILING_ADDRESS = "mailing_address"
    EMAIL = "email"
    CREDIT_CARD = "credit_card"
    DATE_OF_BIRTH = "date_of_birth"


@dataclass(frozen=True, slots=True)
class ColumnLabel:
    """The class proposed for a column, how sure, and why (counts, never values)."""

    column: str
    pii: str
    confidence: float
    suspected: bool
    reason: str


@dataclass(frozen=True, slots=True)
class _Context:
    region: str
    today: date


_Check = Callable[[str, _Context], bool]


@dataclass(frozen=True, slots=True)
class _Rule:
    name: re.Pattern[str]  # over the normalized name, ``_customer_ssn_``
    whole: _Check  # the value is one (lenient: used when the name agrees)
    noun: str  # "valid US SSNs": what the counted values are
    one: str = ""  # "a valid US SSN": what a free-text value was found to contain
    strict: _Check | None = None  # the value is one, sure enough to label without the name
    inside: _Check | None = None  # free text contains one
    exclude: re.Pattern[str] | None = None  # names the rule must not match (email_address)


# -- value checks ------------------------------------------------------------------------------

_SSN_FORMATTED = re.compile(r"\d{3}[- ]\d{2}[- ]\d{4}")
_SSN_INSIDE = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_IBAN_INSIDE = re.compile(
    r"\b[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)\b"
)
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
# A house number, up to five words, then a street word: "12 Main Street", "221b Baker St".
_STREET = re.compile(
    r"\b\d{1,6}[A-Za-z]?,?\s+(?:[^\W\d_][\w.'-]*\s+){1,5}?"
    r"(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|"
    r"terrace|ter|circle|cir|highway|hwy|parkway|pkwy|square|sq|trail|trl|alley|row)\b\.?"
    r"|\bp\.?\s?o\.?\s+box\s+\d+",
    re.IGNORECASE,
)
_CARD_INSIDE = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_PASSPORT = re.compile(r"(?=[A-Z]*\d)[A-Z0-9]{6,9}")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T].*)?")


def _ssn(text: str, _: _Context) -> bool:
    return bool(ssn.is_valid(text))


def _ssn_formatted(text: str, _: _Context) -> bool:
    # Any 9-digit number passes the SSN rules; only the dashed form says "SSN" without a name.
    return _SSN_FORMATTED.fullmatch(text) is not None and bool(ssn.is_valid(text))


def _ssn_inside(text: str, _: _Context) -> bool:
    return any(ssn.is_valid(m.group()) for m in _SSN_INSIDE.finditer(text))


def _iban(text: str, _: _Context) -> bool:
    return bool(iban.is_valid(text))


def _iban_inside(text: str, _: _Context) -> bool:
    return any(iban.is_valid(m.group()) for m in _IBAN_INSIDE.finditer(text))


def _phone(text: str, ctx: _Context) -> bool:
    try:
        number = phonenumbers.parse(text, ctx.region)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))


def _phone_inside(text: str, ctx: _Context) -> bool:
    matcher = phonenumbers.PhoneNumberMatcher(
        text, ctx.region, leniency=phonenumbers.Leniency.VALID, max_tries=20
    )
    return matcher.has_next()


def _email(text: str, _: _Context) -> bool:
    return _EMAIL.fullmatch(text) is not None


def _email_inside(text: str, _: _Context) -> bool:
    return _EMAIL.search(text) is not None


def _street(text: str, _: _Context) -> bool:
    return _STREET.search(text) is not None


def _card(text: str, _: _Context) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return 13 <= len(digits) <= 19 and digits.isdigit() and bool(luhn.is_valid(digits))


def _card_inside(text: str, ctx: _Context) -> bool:
    return any(_card(m.group(), ctx) for m in _CARD_INSIDE.finditer(text))


def _passport(text: str, _: _Context) -> bool:
    return _PASSPORT.fullmatch(text.replace(" ", "").upper()) is not None


def _birth_date(text: str, ctx: _Context) -> bool:
    found = _DATE.fullmatch(text)
    if found is None:
        return False
    try:
        day = date(int(found[1]), int(found[2]), int(found[3]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= day <= ctx.today


def _name(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# Name patterns run over ``_words_of_the_name_`` (see _normalized): ``_`` marks word edges.
_RULES: Final[Mapping[Detector, _Rule]] = {
    Detector.SSN: _Rule(
        _name(r"_ssn(?:_|\d)|social_?sec"),
        _ssn,
        "valid US SSNs",
        "a valid US SSN",
        strict=_ssn_formatted,
        inside=_ssn_inside,
    ),
    Detector.PASSPORT: _Rule(_name(r"passport"), _passport, "shaped like passport numbers"),
    Detector.BANK_ACCOUNT: _Rule(
        _name(r"_[ib]ban_|bank_?acc|_(?:account|acct)_?(?:no|num|number|nr)_"),
        _iban,
        "valid IBANs",
        "a valid IBAN",
        strict=_iban,
        inside=_iban_inside,
    ),
    Detector.PHONE: _Rule(
        _name(r"phone|_mobile_|_cell_|_tel_|telephone|_msisdn_|_fax_"),
        _phone,
        "valid phone numbers",
        "a valid phone number",
        strict=_phone,
        inside=_phone_inside,
    ),
    Detector.MAILING_ADDRESS: _Rule(
        _name(r"address|_addr(?:_|\d)|street|_mailing_"),
        _street,
        "shaped like street addresses",
        "something like a street address",
        strict=_street,
        inside=_street,
        exclude=_name(r"e_?mail|_ip_?|_mac_|_url_|_web|wallet|_host|_server"),
    ),
    Detector.EMAIL: _Rule(
        _name(r"e_?mail"),
        _email,
        "e-mail addresses",
        "an e-mail address",
        strict=_email,
        inside=_email_inside,
    ),
    Detector.CREDIT_CARD: _Rule(
        _name(r"credit_?card|_card_?(?:no|num|number)_|_cc_?(?:no|num|number)_|_pan_"),
        _card,
        "card numbers passing the Luhn check",
        "a card number passing the Luhn check",
        strict=_card,
        inside=_card_inside,
    ),
    Detector.DATE_OF_BIRTH: _Rule(
        _name(r"_dob_|birth|_born_"), _birth_date, "plausible birth dates"
    ),
}


def _normalized(column: str) -> str:
    """``CustomerSSN`` / ``customer-ssn`` → ``_customer_ssn_``: words split at case changes."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", column)
    return "_" + re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_") + "_"


def name_matches(column: str, detector: Detector) -> bool:
    """Whether ``column``'s name suggests ``detector``'s class."""
    rule = _RULES[detector]
    name = _normalized(column)
    if rule.exclude is not None and rule.exclude.search(name):
        return False
    return rule.name.search(name) is not None


@dataclass(frozen=True, slots=True)
class _Candidate:
    label: ColumnLabel
    both: bool  # name and values agree


def label_column(
    column: str,
    values: Sequence[str] | None,
    *,
    detectors: Iterable[Detector],
    region: str = "US",
    today: date,
) -> ColumnLabel | None:
    """The class ``column`` most likely holds, or None when nothing points at PII.

    ``values`` are its sampled values as text (NULLs and empty strings left out), or None when
    they could not be read (the name alone then decides, and the label is suspected). ``region``
    reads phone numbers written without a country code; ``today`` bounds birth dates.
    """
    ctx = _Context(region, today)
    found = [c for d in detectors if (c := _candidate(column, values, d, ctx)) is not None]
    if not found:
        return None
    best = max(found, key=lambda c: (c.both, not c.label.suspected, c.label.confidence))
    others = [c.label.pii for c in found if c is not best]
    if not others:
        return best.label
    # A second class that also has both sources behind it leaves the choice to the reviewer.
    suspected = best.label.suspected or any(c.both for c in found if c is not best)
    reason = f"{best.label.reason}; also points at {', '.join(sorted(others))}"
    return ColumnLabel(column, best.label.pii, best.label.confidence, suspected, reason)


def _candidate(
    column: str, values: Sequence[str] | None, detector: Detector, ctx: _Context
) -> _Candidate | None:
    rule = _RULES[detector]
    named = name_matches(column, detector)
    texts = [v.strip() for v in values or () if v.strip()]
    total = len(texts)

    def label(confidence: float, suspected: bool, reason: str, both: bool = False) -> _Candidate:
        clipped = round(min(max(confidence, 0.0), 1.0), 2)
        return _Candidate(ColumnLabel(column, str(detector), clipped, suspected, reason), both)

    name_says = f"name matches {detector}"
    if named:
        if values is None:
            return label(0.5, True, f"{name_says}; values not sampled")
        if not total:
            return label(
                0.5, True, f"{name_says}; no values sampled (no rows, or all NULL or empty)"
            )
        whole = sum(rule.whole(t, ctx) for t in texts)
        share = f"{whole}/{total} sampled values are {rule.noun}"
        if whole / total >= AGREE:
            few = total < MIN_VALUES
            reason = f"{name_says}; {share}" + ("; too few values to be sure" if few else "")
            return label(0.5 + 0.5 * whole / total, few, reason, both=not few)
        return label(0.2 + 0.3 * whole / total, True, f"{name_says}; but only {share}")
    if rule.strict is None or not total:
        return None
    strict = sum(rule.strict(t, ctx) for t in texts)
    if strict / total >= AGREE:
        reason = (
            f"name does not suggest {detector}; {strict}/{total} sampled values are {rule.noun}"
        )
        return label(0.3 + 0.5 * strict / total, True, reason)
    inside = sum(rule.inside(t, ctx) for t in texts) if rule.inside is not None else 0
    if inside:
        reason = f"{inside}/{total} sampled values contain {rule.one}"
        return label(0.1 + 0.4 * inside / total, True, reason)
    return None
