"""Masking: how the gateway hides a PII value it may not release.

Two rules, chosen per PII class (``gateway.http.masking``, else the class's default):

- :class:`KeepLast` keeps at most the last ``last`` significant characters, and never more than
  half of them, so a short value stays mostly hidden (``1234`` with ``last: 4`` → ``**34``).
  Significant characters are everything but the separators `` -./()+``; the separators stay in
  place, so the value keeps its shape: ``123-45-6789`` → ``***-**-6789``,
  ``+1 (555) 123-4567`` with ``last: 2`` → ``+* (***) ***-**67``. With ``fixed_width: W`` the
  mask is ``W`` asterisks then the kept characters, whatever the value's length or shape
  (``******6789``): the length never shows, except that a value shorter than ``2 * last``
  significant characters keeps fewer of them.
- :class:`Replace` replaces the value whole by a fixed text (``***`` unless configured).

A number is masked as the string of its digits by the same rule (``123456789`` → ``"*****6789"``);
``null`` stays ``null``; a boolean, object or array found where a PII value is expected is
masked whole (the fixed text of a ``Replace``, ``***`` or the fixed-width asterisks), never
passed through. Where several classes select one value, the strictest of their rules applies.

A route's answer is masked whole by :func:`mask_json_answer` (the reverse proxy's and the app
middleware's one way to do it): read exactly (``jsontext.loads_exact``: numbers as written),
masked, written back digit for digit; an answer that is compressed or not JSON cannot be masked
(:class:`NotMaskable`), and the caller refuses it rather than pass it on. :func:`answer_mask`
says which classes to hide in it, and refuses (403) a mask for a class the route cannot locate.

Defaults: the identity numbers (``ssn``, ``passport``, ``bank_account``, ``tax_id``, ``iban``,
national and document ids, card numbers) keep the last 4 characters; phones keep the last 2;
every other class, addresses included, is replaced whole. A class's sensitivity never loosens
its default: a class the gateway does not recognise by name reveals nothing, whatever its
sensitivity.
"""

from __future__ import annotations

import math
import string
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from piigate.errors import Forbidden
from piigate.gateway.http.selectors import FieldMap
from piigate.jsontext import dumps_exact, loads_exact
from piigate.policy.model import Policy

__all__ = [
    "IDENTITY_NUMBERS",
    "PHONES",
    "SEPARATORS",
    "WHOLE",
    "KeepLast",
    "MaskRule",
    "NotMaskable",
    "Replace",
    "answer_mask",
    "default_masks",
    "default_rule",
    "mask_document",
    "mask_json_answer",
    "mask_value",
    "masked_answer_headers",
    "masked_request_headers",
    "strictest",
]

SEPARATORS: Final = frozenset(" -./()+")
# str.translate tables (C speed): drop separators; ASCII letters and digits to the mask.
_DROP_SEPARATORS: Final = str.maketrans("", "", "".join(SEPARATORS))
_DROP_SEPARATORS_AND_MASK: Final = str.maketrans("", "", "".join(SEPARATORS) + "*")
_HIDE_ASCII: Final = str.maketrans(dict.fromkeys(string.ascii_letters + string.digits, "*"))
MASK: Final = "*"
WHOLE: Final = "***"
IDENTITY_NUMBERS: Final = frozenset(
    {
        "ssn",
        "passport",
        "bank_account",
        "iban",
        "tax_id",
        "national_id",
        "id_number",
        "driver_license",
        "drivers_license",
        "card_number",
    }
)
PHONES: Final = frozenset({"phone", "phone_number", "mobile"})


@dataclass(frozen=True, slots=True)
class KeepLast:
    """Keep at most ``last`` significant characters (never more than half of them); with
    ``fixed_width``, the mask is that many asterisks and the length does not show."""

    last: int
    fixed_width: int | None = None

    def __post_init__(self) -> None:
        if self.last < 0 or (self.fixed_width is not None and self.fixed_width < 1):
            raise ValueError("last must be >= 0 and fixed_width >= 1")

    def mask(self, value: object) -> object:
        """``value`` masked (see the module's doc); None stays None."""
        if isinstance(value, str):
            return _keep_last(value, self)
        if value is None:
            return None
        number = _number_text(value)
        if number is not None:
            return _keep_last(number, self)
        # A boolean, an object or array, or a number that is not finite: nothing of it is kept.
        return WHOLE if self.fixed_width is None else MASK * self.fixed_width


@dataclass(frozen=True, slots=True)
class Replace:
    """Replace the value whole by ``text``."""

    text: str = WHOLE

    def mask(self, value: object) -> object:
        return None if value is None else self.text


MaskRule = KeepLast | Replace
_REPLACE_WHOLE: Final = Replace()


def default_rule(name: str) -> MaskRule:
    """The mask of the PII class ``name`` when the configuration sets none."""
    if name in IDENTITY_NUMBERS:
        return KeepLast(4)
    if name in PHONES:
        return KeepLast(2)
    return _REPLACE_WHOLE


def default_masks(policy: Policy) -> dict[str, MaskRule]:
    """The default mask of every PII class of ``policy``."""
    return {name: default_rule(name) for name in policy.pii}


def strictest(rules: Iterable[MaskRule]) -> MaskRule:
    """The rule that shows least: a replacement, then a fixed width, then fewest characters."""
    return min(rules, key=_strictness, default=_REPLACE_WHOLE)


def _strictness(rule: MaskRule) -> tuple[int, int]:
    if isinstance(rule, Replace):
        return (0, 0)
    return (1 if rule.fixed_width is not None else 2, rule.last)


def mask_value(value: object, rule: MaskRule) -> object:
    """``value`` masked by ``rule``: a string, or None for a JSON null."""
    return rule.mask(value)


def _number_text(value: object) -> str | None:
    """A finite number's text (a float's shortest text that reads back as the same number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    return None


def _keep_last(text: str, rule: KeepLast) -> str:
    width = rule.fixed_width
    if text.isalnum():  # no separator: a common case, and only the count matters
        size = len(text)
        keep = min(rule.last, size // 2)
        tail = text[size - keep :] if keep else ""
        return (MASK * (size - keep) if width is None else MASK * width) + tail
    significant = text.translate(_DROP_SEPARATORS)
    keep = min(rule.last, len(significant) // 2)
    if width is not None:
        return MASK * width + (significant[len(significant) - keep :] if keep else "")
    cut = len(text)  # where the kept tail starts
    while keep:
        cut -= 1
        if text[cut] not in SEPARATORS:
            keep -= 1
    head = text[:cut].translate(_HIDE_ASCII)
    if head.translate(_DROP_SEPARATORS_AND_MASK):  # something else (not ASCII) is left
        head = "".join(char if char in SEPARATORS else MASK for char in head)
    return head + text[cut:]


def mask_document(
    doc: object,
    fields: FieldMap[str],
    masked: Collection[str],
    rules: Mapping[str, MaskRule] | None = None,
) -> tuple[object, frozenset[str]]:
    """``doc`` with every field of a ``masked`` class masked, and the classes that had a
    value (not null) masked. ``fields`` maps selectors to PII classes; ``rules`` gives each
    class its mask (the configuration's ``masks``), else :func:`default_rule`; a class
    missing from ``rules`` is replaced whole. ``doc`` itself is never changed."""
    if not masked or fields.labels.isdisjoint(masked):
        return doc, frozenset()
    if rules is None:
        rules = {name: default_rule(name) for name in fields.labels}
    present: set[str] = set()

    def mask(value: object, classes: tuple[str, ...]) -> object:
        if value is None:
            return None
        if len(classes) == 1:
            present.add(classes[0])
            return rules.get(classes[0], _REPLACE_WHOLE).mask(value)
        present.update(classes)
        return strictest(rules.get(c, _REPLACE_WHOLE) for c in classes).mask(value)

    return fields.replace(doc, mask, only=masked), frozenset(present)


def answer_mask(mask: Collection[str], fields: FieldMap[str]) -> frozenset[str]:
    """The classes of a verdict's ``mask`` to hide in an answer whose PII ``fields`` are known;
    ``Forbidden`` when the verdict masks a class ``fields`` cannot locate: that value could be
    anywhere in the answer, so the answer is refused rather than sent unmasked."""
    unlocated = frozenset(mask) - fields.labels
    if unlocated:
        names = ", ".join(sorted(unlocated))
        raise Forbidden(f"this route's answer cannot be masked for: {names}")
    return frozenset(mask)


class NotMaskable(ValueError):
    """An answer that cannot be masked; ``reason`` completes "the answer ..." for a problem."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def mask_json_answer(
    raw: bytes,
    content_encoding: str | None,
    fields: FieldMap[str],
    masked: Collection[str],
    rules: Mapping[str, MaskRule] | None = None,
) -> bytes:
    """The JSON answer ``raw`` with every field of a ``masked`` class masked, every other value
    as written (an empty answer stays empty); :class:`NotMaskable` when it is compressed
    (``content_encoding`` other than ``identity``), not JSON, or cannot be written back as JSON
    (a lone surrogate)."""
    if not raw:
        return raw
    if (content_encoding or "identity").strip().lower() != "identity":
        raise NotMaskable("is compressed and cannot be masked")
    try:
        doc = loads_exact(raw)
    except ValueError:
        raise NotMaskable("is not the JSON this route promises") from None
    try:
        return dumps_exact(mask_document(doc, fields, masked, rules)[0])
    except TypeError:  # a lone surrogate: not JSON that can be written back
        raise NotMaskable("cannot be masked") from None


# Request headers that would make an answer to be masked partial, compressed or empty (a 304):
# such an answer must come whole, as plain JSON, to be read and masked.
_ANSWER_SHAPING: Final = frozenset(
    {"accept-encoding", "range", "if-range", "if-none-match", "if-modified-since"}
)
# Answer headers that describe the unmasked representation.
_REPRESENTATION: Final = frozenset({"etag", "last-modified", "content-md5", "digest"})


def masked_request_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` (lower-case names) for a request whose answer will be masked: asked whole
    and uncompressed (``Accept-Encoding: identity``), never conditional or partial."""
    kept = [(k, v) for k, v in headers if k not in _ANSWER_SHAPING]
    kept.append(("accept-encoding", "identity"))
    return kept


def masked_answer_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` (lower-case names) of an answer that was masked: without the validators and
    digests of the unmasked representation, and kept out of shared caches (another caller may
    be allowed to see more, or less)."""
    kept = [(k, v) for k, v in headers if k not in _REPRESENTATION and k != "cache-control"]
    kept.append(("cache-control", "private, no-store"))
    return kept
