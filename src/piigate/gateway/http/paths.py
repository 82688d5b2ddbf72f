"""Request paths and the path templates routes match them with (``/customers/{id}``).

A template is ``/`` followed by segments separated by ``/``; a segment is either literal text
or one parameter ``{name}`` (a letter or ``_``, then letters, digits, ``_``), which matches any
one non-empty segment. Nothing is a regular expression, so nothing in a template can widen
what it matches. ``/`` alone matches the root.

A request path is read so that whatever an upstream makes of it, it takes the route it would
take there (fail closed: a path that could be read two ways is refused):

- the query (``?...``) is not part of it;
- it is split at ``/`` first, then each segment is percent-decoded as UTF-8;
- one trailing ``/`` is ignored (``/customers/42/`` is ``/customers/42``);
- refused with 400: an empty segment (``//``), a ``.`` or ``..`` segment (also encoded), a
  segment that decodes to text containing ``/`` or ``\\`` (upstreams differ on whether
  ``%2F`` separates segments), ``;`` (servlet containers strip ``;name=value`` path
  parameters before routing, others keep them) or a control character, a malformed ``%``
  escape, and bytes that are not UTF-8;
- literal segments match without regard to case (``/Customers/42`` is protected like
  ``/customers/42``, whatever the upstream does with case), and a segment that is not ASCII
  is compared in its NFKC form (``customers`` in fullwidth letters, which a server's "best
  fit" mapping may read as ``customers``); parameter values keep their case;
- a template whose last segment is literal matches that segment with an extension too
  (``/customers`` matches ``/customers.json`` and ``/customers.tar.gz``): Rails routes a
  format suffix to the same action (``/customers(.:format)``), as Spring did with suffix
  pattern matching. Routes are tried in order, so a route for ``/customers.csv`` of its own
  goes before the one for ``/customers``.

Errors name the rule broken, never the path (it may carry PII).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote_to_bytes

from piigate.errors import BadRequest

__all__ = ["PARAM", "Param", "PathTemplate", "TemplateError", "split_path"]

# A parameter: ``{name}``, the name as a Python identifier in ASCII (group 1).
PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_LITERAL_REFUSED: Final = frozenset("{}?#%\\;")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# In a segment: what some upstreams read as separating segments, or as starting parameters a
# servlet container strips before routing (``/customers;x/42`` is ``/customers/42`` there).
_SEPARATORS: Final = frozenset("/\\;")


class TemplateError(ValueError):
    """A template that cannot be read; ``offset`` is the 0-based index of the problem."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Param:
    name: str


Segment = str | Param


@dataclass(frozen=True, slots=True)
class PathTemplate:
    text: str
    # Literal segments case-folded, as request segments are compared.
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, text: str) -> PathTemplate:
        if not text.startswith("/"):
            raise TemplateError("a path template starts with /", 0)
        if text == "/":
            return cls(text, ())
        if text.endswith("/"):
            raise TemplateError("no trailing / (a request's trailing / is ignored)", len(text) - 1)
        segments: list[Segment] = []
        seen: set[str] = set()
        at = 1
        for part in text[1:].split("/"):
            segments.append(_segment(part, at, seen))
            at += len(part) + 1
        return cls(text, tuple(segments))

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments if isinstance(s, Param))

    def match(self, segments: tuple[str, ...], *, suffixed: bool = False) -> dict[str, str] | None:
        """The parameters, when the (decoded) request ``segments`` match. ``suffixed``: the
        request's last segment matches a literal last segment it extends with ``.ext``."""
        if len(segments) != len(self.segments):
            return None
        params: dict[str, str] = {}
        last = len(segments) - 1
        for at, (mine, theirs) in enumerate(zip(self.segments, segments, strict=True)):
            if isinstance(mine, Param):
                params[mine.name] = theirs
                continue
            folded = _folded(theirs)
            if suffixed and at == last:
                if not folded.startswith(mine + "."):
                    return None
            elif mine != folded:
                return None
        return params

    @property
    def ends_literal(self) -> bool:
        """Whether the last segment is literal text (what a format suffix can extend)."""
        return bool(self.segments) and isinstance(self.segments[-1], str)

    def covers(self, other: PathTemplate) -> bool:
        """Every path ``other`` matches, this template matches too (a literal last segment
        with an extension included: ``/customers`` covers ``/customers.csv``)."""
        if len(self.segments) != len(other.segments):
            return False
        last = len(self.segments) - 1
        for at, (mine, theirs) in enumerate(zip(self.segments, other.segments, strict=True)):
            if isinstance(mine, Param) or mine == theirs:
                continue
            if not (at == last and isinstance(theirs, str) and theirs.startswith(mine + ".")):
                return False
        return True

    def overlap(self, other: PathTemplate) -> str | None:
        """A path both templates match (parameters shown as ``{name}``), or None."""
        if len(self.segments) != len(other.segments):
            return None
        shown: list[str] = []
        for mine, theirs in zip(self.segments, other.segments, strict=True):
            if isinstance(mine, str) and isinstance(theirs, str) and mine != theirs:
                return None
            literal = mine if isinstance(mine, str) else theirs
            shown.append(literal if isinstance(literal, str) else "{" + literal.name + "}")
        return "/" + "/".join(shown)

    def __str__(self) -> str:
        return self.text


def _segment(part: str, at: int, seen: set[str]) -> Segment:
    if not part:
        raise TemplateError("empty segment (//)", at)
    match = PARAM.fullmatch(part)
    if match is not None:
        name = match.group(1)
        if name in seen:
            raise TemplateError(f"parameter {{{name}}} appears twice", at)
        seen.add(name)
        return Param(name)
    if "{" in part or "}" in part:
        raise TemplateError("a parameter is a whole segment: {name}", at)
    bad = next((i for i, char in enumerate(part) if char in _LITERAL_REFUSED), None)
    if bad is not None:
        raise TemplateError(f"{part[bad]!r} is not allowed in a path template", at + bad)
    if part in (".", "..") or _CONTROL.search(part) or part != part.strip():
        raise TemplateError("not a path segment a request can have", at)
    return part.casefold()


def _folded(segment: str) -> str:
    """A request segment as literals are compared: case-folded, in NFKC form when not ASCII."""
    if segment.isascii():
        return segment.casefold()
    return unicodedata.normalize("NFKC", segment).casefold()


def split_path(target: str) -> tuple[str, ...]:
    """The decoded segments of a request target's path; BadRequest when it is ambiguous."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        raise BadRequest("the request path must start with /", field="path")
    if path == "/":
        return ()
    parts = path[1:].split("/")
    if parts[-1] == "":
        parts.pop()
    return tuple(_decoded(part) for part in parts)


def _decoded(part: str) -> str:
    if not part:
        raise BadRequest("empty segment in the request path", field="path")
    text = part
    if "%" in part:
        if _BAD_ESCAPE.search(part):
            raise BadRequest("malformed percent-escape in the request path", field="path")
        try:
            text = unquote_to_bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the request path is not UTF-8", field="path") from None
    if text in (".", "..") or _SEPARATORS.intersection(text) or _CONTROL.search(text):
        raise BadRequest("ambiguous segment in the request path", field="path")
    return text
