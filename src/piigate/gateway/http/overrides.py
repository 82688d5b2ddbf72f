"""Method overrides: what makes a framework run a request as another method than its own.

Rails (``Rack::MethodOverride``), Laravel, Symfony, ASP.NET Core and Express's
method-override run a request as the method named by a header (``X-HTTP-Method-Override`` and
its variants) or by a ``_method`` parameter: in the query, in a posted form
(``application/x-www-form-urlencoded``, and for Rack a ``POST`` with no ``Content-Type`` at
all), in a posted ``multipart/form-data`` body, or as a member of a posted JSON object
(Laravel). The gate rules on the request line's method, so any of these is refused before the
upstream (a GET ruled on as a masked read would otherwise run as a DELETE).

Names are read as the upstream reads them: a ``;`` separates parameters too (Rack before
version 3); PHP drops a leading run of spaces, and makes ``.``, a space and an unmatched ``[``
a ``_`` (``.method`` is ``_method`` there); ``_method[...]`` is the same parameter as an array;
the comparison ignores case.

A multipart body is scanned as it streams (:class:`MultipartScan`): each part's headers are
read before the chunk that holds them goes on, so a part named ``_method`` stops the body
before the upstream has all of it, and it never runs the request. A POST without a
``Content-Type`` (which may be any upload) streams the same way, read as a form
(:class:`FormScan`); a form or JSON body that says so is read whole before the decision.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from typing import Final, Literal
from urllib.parse import parse_qsl, unquote, unquote_to_bytes

from piigate.errors import BadRequest

__all__ = [
    "METHOD_OVERRIDE_HEADERS",
    "OVERRIDE_DETAIL",
    "READ_WHOLE",
    "BodyKind",
    "FormScan",
    "MultipartScan",
    "body_kind",
    "body_names_method",
    "boundaries_of",
    "names_method",
    "scanned",
]

METHOD_OVERRIDE_HEADERS: Final = frozenset(
    {"x-http-method-override", "x-http-method", "x-method-override"}
)
OVERRIDE_DETAIL: Final = "the request asks for another method than its own (method override)"
_PARAMETER: Final = "_method"
# A part's headers longer than this are refused: no form field needs them, and the scan
# holds them until they end.
MAX_PART_HEADERS: Final = 16 * 1024

# What a POST's body is to the frameworks that read a _method from it. "bare": no Content-Type
# at all, which Rack parses as a form (and may be any upload: it is scanned as it streams).
BodyKind = Literal["form", "json", "multipart", "bare"]
# The kinds the edges read whole (up to max_body) before deciding; the others are scanned as
# they stream on.
READ_WHOLE: Final = frozenset({"form", "json"})


def body_kind(method: str, headers: Sequence[tuple[str, str]]) -> BodyKind | None:
    """What a framework would read a ``_method`` from in this request's body: ``"form"``,
    ``"json"``, ``"multipart"`` or ``"bare"`` (no ``Content-Type``: a form for Rack) for a
    POST; None for any other request."""
    if method != "POST":
        return None
    kind = next((v for k, v in headers if k == "content-type"), None)
    if kind is None:
        return "bare"
    low = kind.lower()
    media = re.split(r"[;,]", low, maxsplit=1)[0].strip()  # Rack and PHP cut at either
    if media.startswith("multipart/"):
        return "multipart"
    if media == "application/x-www-form-urlencoded":
        return "form"
    if "/json" in low or "+json" in low:  # Laravel's test, anywhere in the header
        return "json"
    return None


def names_method(encoded: str) -> bool:
    """Whether the ``application/x-www-form-urlencoded`` text ``encoded`` (a query, a form)
    has a ``_method`` parameter, as any of the frameworks reads its names."""
    low = encoded.lower()
    if "method" not in low and "%" not in low:
        return False
    # Rack before 3 splits at ";" too (``a=1;_method=DELETE``): so does this reading.
    pairs = parse_qsl(encoded.replace(";", "&"), keep_blank_values=True, separator="&")
    return any(_is_method_name(key) for key, _ in pairs)


def body_names_method(
    kind: BodyKind, raw: bytes, headers: Sequence[tuple[str, str]], parsed: object = None
) -> bool:
    """Whether the whole body ``raw`` of ``kind`` has a ``_method``. ``parsed``: the JSON
    document the gate already read from it, when it read one (no key given twice), so that a
    JSON object is not parsed again."""
    if kind in ("form", "bare"):
        return names_method(raw.decode("latin-1"))
    if kind == "json":
        if isinstance(parsed, dict):
            return any(key.lower() == _PARAMETER for key in parsed)
        return _json_names_method(raw)
    scan = MultipartScan.for_headers(headers)
    scan.feed(raw)
    return scan.found


def _is_method_name(name: str) -> bool:
    """``name`` read as PHP reads a parameter's name (leading spaces dropped; ``.``, a space
    and an unmatched ``[`` made ``_``; cut at a NUL), in any case: ``_method``, or an array
    of that name."""
    key = name.partition("\0")[0].lstrip(" ").lower()
    if "method" not in key:
        return False
    key = key.replace(".", "_").replace(" ", "_")
    bracket = key.find("[")
    if bracket >= 0 and "]" not in key[bracket:]:
        key = key[:bracket] + "_" + key[bracket + 1 :]
    return key == _PARAMETER or key.startswith(_PARAMETER + "[")


class _Members(list[tuple[str, object]]):
    """A JSON object's members in order, repeated names kept."""


def _json_names_method(raw: bytes) -> bool:
    """Whether the JSON text ``raw`` is an object with a ``_method`` member (any case)."""
    try:
        doc = json.loads(raw, object_pairs_hook=_Members)
    except (ValueError, RecursionError):  # not JSON: nothing reads a member from it
        return False
    return isinstance(doc, _Members) and any(k.lower() == _PARAMETER for k, _ in doc)


# A Content-Disposition (or Content-Type) parameter: name, then a quoted string or a token.
_PARAM: Final = re.compile(
    rb'([!#$%&\'*+.^_`|~0-9a-zA-Z-]+\*?)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)', re.S
)
_FOLD: Final = re.compile(rb"\r?\n[ \t]+")
# Any ``name=`` in a header, quoting ignored (a lenient parser's regex can find one inside
# another parameter's quoted value).
_ANY_NAME: Final = re.compile(rb'name(\*?)\s*=\s*"?((?:[^"\\;\s]|\\.)*)', re.I)


def _parameters(value: bytes) -> list[tuple[str, bytes]]:
    """A header value's parameters (lower-case names), quoted strings unquoted; an RFC 2231
    ``name*=charset'lang'value`` decoded to its bytes."""
    found: list[tuple[str, bytes]] = []
    for key, raw in _PARAM.findall(value):
        name = key.decode("latin-1").lower()
        text = re.sub(rb"\\(.)", rb"\1", raw[1:-1]) if raw.startswith(b'"') else raw
        if name.endswith("*"):
            name = name[:-1]
            text = unquote_to_bytes(text.split(b"'", 2)[-1])
        found.append((name, text))
    return found


# ``boundary=`` wherever it is in a Content-Type, and its value, quoted or not: parsers differ
# on which one they take (PHP the first match, even inside ``xboundary=``; Rack the last) and
# on where an unquoted one ends (PHP and Rack cut it at a comma).
_BOUNDARY: Final = re.compile(rb'boundary\s*=\s*(?:"([^"]*)"|([^\s;"]*))', re.I)
_MAX_BOUNDARIES: Final = 8


def boundaries_of(headers: Sequence[tuple[str, str]]) -> tuple[bytes, ...]:
    """Every boundary a parser could read in a multipart body's ``Content-Type``;
    ``BadRequest`` without one (or with more readings than a body's scan should follow)."""
    kind = next((v for k, v in headers if k == "content-type"), "")
    found: set[bytes] = set()
    for match in _BOUNDARY.finditer(kind.encode("latin-1")):
        value = match.group(1) if match.group(1) is not None else match.group(2)
        found.update(v for v in (value, re.split(rb"[,;]", value)[0]) if v)
    if not found:
        raise BadRequest("the multipart body has no boundary")
    if len(found) > _MAX_BOUNDARIES:
        raise BadRequest("the multipart body's boundary can be read too many ways")
    return tuple(sorted(found))


class MultipartScan:
    """A multipart body's part headers read as the body streams: :meth:`feed` each chunk
    before it goes on; ``found`` once a part is named ``_method``. With several boundaries
    (every reading of the ``Content-Type``, :func:`boundaries_of`), the body is read along
    each of them.

    A part begins after a line ``--boundary`` (a CRLF or a bare LF before it: lenient parsers
    take either; a line that only begins so counts too); its headers end at the first empty
    line. Every ``name`` parameter of its headers (unfolded, quoted or not, RFC 2231 encoded or
    not) and its ``Content-ID`` are read as :func:`_is_method_name` reads them. Headers over
    ``MAX_PART_HEADERS`` are refused. The close delimiter (``--boundary--``) does not end the
    scan: a lenient parser may read on.
    """

    __slots__ = ("_parts", "found")

    def __init__(self, *boundaries: bytes) -> None:
        self._parts = [_Parts(b) for b in boundaries]
        self.found = False

    @classmethod
    def for_headers(cls, headers: Sequence[tuple[str, str]]) -> MultipartScan:
        return cls(*boundaries_of(headers))

    def feed(self, chunk: bytes) -> None:
        if not self.found:
            self.found = any(parts.feed(chunk) for parts in self._parts)


class _Parts:
    """The scan along one boundary. Each byte is searched once (``_from``: where the search
    for a header block's end goes on), however small the chunks."""

    __slots__ = ("_buffer", "_delimiter", "_found", "_from", "_in_headers")

    def __init__(self, boundary: bytes) -> None:
        self._delimiter = b"\n--" + boundary
        self._buffer = bytearray(b"\n")  # the body's start counts as a line's start
        self._from = 0
        self._in_headers = False
        self._found = False

    def feed(self, chunk: bytes) -> bool:
        """Whether a part named ``_method`` has been seen, this chunk included."""
        if self._found:
            return True
        buffer = self._buffer
        buffer += chunk
        while True:
            if not self._in_headers:
                at = buffer.find(self._delimiter)
                if at < 0:  # keep what could be the start of a delimiter
                    del buffer[: max(0, len(buffer) - len(self._delimiter) + 1)]
                    break
                del buffer[: at + len(self._delimiter)]
                self._in_headers, self._from = True, 0
                continue
            end = _blank_line(buffer, self._from)
            if end < 0:
                if len(buffer) > MAX_PART_HEADERS:
                    raise BadRequest("a part of the multipart body has headers too long")
                self._from = max(0, len(buffer) - 2)  # an empty line is at most 3 bytes
                break
            if _part_named_method(bytes(buffer[:end])):
                self._found = True
                buffer.clear()
                break
            del buffer[:end]
            self._in_headers = False
        return self._found


def _blank_line(block: bytearray, start: int) -> int:
    """Where the header block ``block`` ends (its empty line), searched from ``start``; -1
    when it has not ended yet."""
    ends = [i for i in (block.find(b"\n\r\n", start), block.find(b"\n\n", start)) if i >= 0]
    return min(ends) if ends else -1


def _part_named_method(block: bytes) -> bool:
    """Whether a part's header block names it ``_method``: a ``name`` parameter of any of its
    headers (``Content-Disposition``'s, or an old ``Content-Type``'s), or its ``Content-ID``,
    which Rack takes as the name when there is none."""
    for line in _FOLD.sub(b" ", block).splitlines():
        field, colon, value = line.partition(b":")
        if not colon:
            continue
        names = [text for name, text in _parameters(value) if name == "name"]
        for star, text in _ANY_NAME.findall(value):
            text = re.sub(rb"\\(.)", rb"\1", text)
            names.append(unquote_to_bytes(text.split(b"'", 2)[-1]) if star else text)
        if field.strip().lower() == b"content-id":
            names.append(value.strip().strip(b"<>\"'"))
        if any(_is_method_name(unquote(text.decode("latin-1"))) for text in names):
            return True
    return False


class FormScan:
    """A form's body (``a=1&b=2``, ``;`` separating too) read as it streams for a parameter
    named ``_method``: ``found`` once such a name is followed by its ``=``, in the chunk that
    holds the ``=``, so the upstream never gets a value for it. Names longer than
    ``MAX_PART_HEADERS`` (leading spaces aside) are not followed further: no reading takes
    them for ``_method``."""

    __slots__ = ("_name", "_naming", "found")

    def __init__(self) -> None:
        self._name = bytearray()
        self._naming = True  # reading a name (else its value, up to the next separator)
        self.found = False

    def feed(self, chunk: bytes) -> None:
        if self.found:
            return
        at = 0
        for match in _FORM_MARK.finditer(chunk):
            self._add(chunk[at : match.start()])
            at = match.end()
            if match.group() == b"=":
                if self._naming and _is_method_name(_form_name(self._name)):
                    self.found = True
                    return
                self._naming = False
            else:  # a separator: the next name starts
                self._naming = True
            self._name.clear()
        self._add(chunk[at:])

    def _add(self, piece: bytes) -> None:
        """More of the name being read. Spaces that start it do not count towards the cap
        (Rack drops any number of them after a separator)."""
        if not self._naming or len(self._name) > MAX_PART_HEADERS:
            return
        self._name += piece.lstrip(b" ") if not self._name else piece


_FORM_MARK: Final = re.compile(rb"[=&;]")


def _form_name(raw: bytearray) -> str:
    return unquote(bytes(raw).decode("latin-1").replace("+", " "), encoding="latin-1")


async def scanned(
    chunks: AsyncIterator[bytes], scan: MultipartScan | FormScan
) -> AsyncIterator[bytes]:
    """``chunks`` passed on, each once ``scan`` has read it; ``BadRequest`` (a method
    override) instead of the chunk that names a ``_method``."""
    async for chunk in chunks:
        scan.feed(chunk)
        if scan.found:
            raise BadRequest(OVERRIDE_DETAIL)
        yield chunk
