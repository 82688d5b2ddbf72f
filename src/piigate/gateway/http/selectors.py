"""Field selectors: the subset of JSONPath (RFC 9535) that gateway routes name JSON fields with.

A selector is ``$`` followed by steps:

- ``.name``: an object member (RFC 9535 member-name shorthand: a letter, ``_`` or a non-ASCII
  character, then also digits);
- ``['name']`` or ``["name"]``: an object member by any name (RFC 9535 string escapes:
  ``\\b \\f \\n \\r \\t \\/ \\\\ \\' \\" \\uXXXX``);
- ``[N]``: an array element (``-1`` is the last);
- ``[*]`` or ``.*``: every array element, or every member value of an object;
- ``..name``, ``..['name']``, ``..[N]``, ``..*`` or ``..[*]``: that step applied at the value
  and at every value below it, at any depth (RFC 9535's descendant segment): ``$..ssn`` is
  every member named ``ssn`` anywhere in the document.

Filters, slices and unions are refused when the selector is compiled.

Semantics are RFC 9535's for this subset: a step that meets a value of another shape (a member
of a string, an index into an object) selects nothing, and that is not an error: the field is
absent. Which value a present field holds is the caller's concern (masking hides an object found
where a string was expected whole, see ``masking.py``).

Selectors are compiled once, when the configuration is read. A :class:`FieldMap` (selector →
label, e.g. a PII class; ``fieldmap.py``) walks a document once for all its selectors,
following only the members its selectors name, so its cost is the number of selected fields,
not the size of the document. Replacing never changes the document given: the result is new
where it differs and shares the untouched parts.

Why not a library: measured on this project's machine (docs/BENCHMARKS.md, 2026-12-03),
``jsonpath-ng`` 1.16 took 33 to 56 µs to update five fields of a customer document (a deep copy
first, since its ``update`` changes the document in place), over twice ``json.loads`` +
``json.dumps`` of that document; ``jsonpath-rfc9535`` 1.0 has no replace, and finding the five
took it 14 to 25 µs. This walk replaces them in 2 to 4 µs, and the subset is all routes need.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from piigate.gateway.http.fieldmap import WILDCARD, Descendant, FieldMap, Found, Step, Wildcard

__all__ = [
    "WILDCARD",
    "Descendant",
    "FieldMap",
    "Found",
    "Selector",
    "SelectorError",
    "Step",
    "compile_selector",
]

# RFC 9535 §2.5.1.1 member-name-shorthand (surrogates cannot occur in a decoded str).
_NAME = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*")
_INT = re.compile(r"0|-?[1-9][0-9]*")
_MAX_INDEX = 2**53 - 1  # RFC 9535 §2.1: the I-JSON integer range
_ESCAPES: Final = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "/": "/", "\\": "\\"}


class SelectorError(ValueError):
    """A selector that cannot be compiled; ``offset`` is the 0-based index of the problem."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    steps: tuple[Step, ...]
    # This selector alone, walked by the code that walks many (built once, here).
    _alone: FieldMap[None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_alone", FieldMap([(self, None)]))

    @property
    def normalized(self) -> str:
        """In the style of RFC 9535 §2.7 normalized paths (``$['a'][0][*]``): two spellings of one
        selector have the same normalized form."""
        parts = ["$"]
        for step in self.steps:
            if isinstance(step, Descendant):
                parts.append("..")
                step = step.step
            if isinstance(step, Wildcard):
                parts.append("[*]")
            elif isinstance(step, int):
                parts.append(f"[{step}]")
            else:
                escaped = step.replace("\\", "\\\\").replace("'", "\\'")
                parts.append(f"['{escaped}']")
        return "".join(parts)

    @property
    def single(self) -> bool:
        """Selects at most one value (no wildcard, no descendant)."""
        return not any(isinstance(step, Wildcard | Descendant) for step in self.steps)

    def find(self, doc: object) -> list[Found]:
        return [found for found, _ in self._alone.find(doc)]

    def replace(self, doc: object, fn: Callable[[object], object]) -> object:
        """A new document with each selected value replaced by ``fn(value)``."""
        return self._alone.replace(doc, lambda value, _labels: fn(value))

    def __str__(self) -> str:
        return self.text


def compile_selector(text: str) -> Selector:
    """The selector ``text``; :class:`SelectorError` saying what is wrong and where."""
    if not text.startswith("$"):
        raise SelectorError("a selector starts with $", 0)
    steps: list[Step] = []
    at = 1
    while at < len(text):
        char = text[at]
        if char == ".":
            step, at = _dot_step(text, at + 1)
        elif char == "[":
            step, at = _bracket_step(text, at + 1)
        else:
            raise SelectorError(f"expected '.' or '[', found {char!r}", at)
        steps.append(step)
    return Selector(text, tuple(steps))


def _dot_step(text: str, at: int) -> tuple[Step, int]:
    if text.startswith(".", at):  # ..name, ..*, ..[...]
        if text.startswith("[", at + 1):
            inner, end = _bracket_step(text, at + 2)
        else:
            inner, end = _dot_step(text, at + 1)
        if isinstance(inner, Descendant):
            raise SelectorError("expected a member name, [ ] or * after '..'", at + 1)
        return Descendant(inner), end
    if text.startswith("*", at):
        return WILDCARD, at + 1
    match = _NAME.match(text, at)
    if match is None:
        raise SelectorError("expected a member name after '.' (quote other names: ['a b'])", at)
    return match.group(), match.end()


def _bracket_step(text: str, at: int) -> tuple[Step, int]:
    at = _skip_blank(text, at)
    char = text[at : at + 1]
    step: Step
    if char == "*":
        step, at = WILDCARD, at + 1
    elif char in ("'", '"'):
        step, at = _quoted(text, at + 1, char)
    elif (match := _INT.match(text, at)) is not None:
        step, at = int(match.group()), match.end()
        if abs(step) > _MAX_INDEX:
            raise SelectorError("index out of range", match.start())
    elif char in ("?", ":"):
        raise SelectorError("filters and slices are not supported", at)
    else:
        raise SelectorError("expected a quoted name, an index or * inside [ ]", at)
    at = _skip_blank(text, at)
    if text.startswith(",", at):
        raise SelectorError("unions ([a, b]) are not supported: use one selector each", at)
    if not text.startswith("]", at):
        raise SelectorError("expected ']'", at)
    return step, at + 1


def _skip_blank(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\n\r":
        at += 1
    return at


def _quoted(text: str, at: int, quote: str) -> tuple[str, int]:
    """The string literal starting after its opening ``quote`` and the index after its end."""
    out: list[str] = []
    while at < len(text):
        char = text[at]
        if char == quote:
            return "".join(out), at + 1
        if char != "\\":
            if ord(char) < 0x20:
                raise SelectorError("control characters must be escaped in a quoted name", at)
            out.append(char)
            at += 1
            continue
        escape = text[at + 1 : at + 2]
        if escape in _ESCAPES or escape == quote:
            out.append(_ESCAPES.get(escape, quote))
            at += 2
        elif escape == "u":
            char, at = _unicode_escape(text, at)
            out.append(char)
        else:
            raise SelectorError("unknown escape in a quoted name", at)
    raise SelectorError(f"unterminated quoted name (missing {quote})", at)


def _unicode_escape(text: str, at: int) -> tuple[str, int]:
    r"""``\uXXXX`` at ``at`` (a surrogate pair as two escapes) and the index after it."""
    high = _hex4(text, at)
    if 0xD800 <= high <= 0xDBFF:
        low = _hex4(text, at + 6) if text.startswith("\\u", at + 6) else -1
        if not 0xDC00 <= low <= 0xDFFF:
            raise SelectorError("a high surrogate must be followed by a low one", at)
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)), at + 12
    if 0xDC00 <= high <= 0xDFFF:
        raise SelectorError("a lone low surrogate", at)
    return chr(high), at + 6


def _hex4(text: str, at: int) -> int:
    digits = text[at + 2 : at + 6]
    if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise SelectorError("\\u needs four hexadecimal digits", at)
    return int(digits, 16)
