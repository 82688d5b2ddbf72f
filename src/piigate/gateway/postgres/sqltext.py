"""PostgreSQL's lexical rules, enough to split a query string and key a cache on its shape.

The gateway must cut a simple-query string into statements exactly where the server does, and
it must see comments, strings and quoted identifiers as the server does (``SELECT/**/ssn``,
``'a\\'`` with standard strings, nested ``/* /* */ */``, ``$tag$…$tag$``, ``E'\\''``). This lexer
follows scan.l for those rules; it does not parse. ``shape`` and ``literal_key`` key the cache of
analyses: they run on every statement before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "Chunk",
    "Token",
    "lex",
    "literal_key",
    "plain_identifiers",
    "shape",
    "split",
    "words",
]

# Each alternative is one token kind; the order matters (a prefixed string before a word).
_PATTERN: Final = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<line>--[^\n]*)
  | (?P<block>/\*)
  | (?P<dollar>\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$)
  | (?P<estring>[eE]'(?:[^'\\]|\\.|'')*')
  | (?P<ustring>[uU]&'(?:[^']|'')*')
  | (?P<uident>[uU]&"(?:[^"]|"")*")
  | (?P<pstring>[bBxXnN]'(?:[^']|'')*')
  | (?P<string>'(?:[^']|'')*')
  | (?P<ident>"(?:[^"]|"")*")
  | (?P<param>\$[0-9]+)
  | (?P<number>0[xXoObB][0-9a-fA-F_]+
      |(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?)
  | (?P<word>[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*)
  | (?P<punct>::|[;(),\[\].])
  | (?P<op>(?:[+*<>=~!@\#%^&|`?:]|-(?!-)|/(?!\*))+)
    """,
    re.VERBOSE | re.DOTALL,
)
_LITERALS: Final = frozenset({"dollar", "estring", "ustring", "pstring", "string", "number"})
_BLOCK: Final = re.compile(r"/\*|\*/")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # a group of _PATTERN, or "broken" (an unterminated string or comment to the end)
    start: int
    end: int
    value: str  # words folded to lower case, quoted identifiers unquoted, others as written


def lex(sql: str) -> list[Token]:
    """The tokens of ``sql`` without white space and comments."""
    out: list[Token] = []
    pos, size = 0, len(sql)
    while pos < size:
        m = _PATTERN.match(sql, pos)
        if m is None:
            # Either an unterminated quote or a character the server rejects: the rest cannot
            # be read with certainty.
            out.append(Token("broken", pos, size, sql[pos:]))
            return out
        kind = m.lastgroup or "broken"
        end = m.end()
        if kind == "block":
            end = _comment_end(sql, end)
            if end < 0:
                out.append(Token("broken", pos, size, sql[pos:]))
                return out
        elif kind == "dollar":
            tag = m.group()
            close = sql.find(tag, end)
            if close < 0:
                out.append(Token("broken", pos, size, sql[pos:]))
                return out
            end = close + len(tag)
        if kind not in ("ws", "line", "block"):
            text = sql[pos:end]
            if kind == "word":
                value = text.lower()
            elif kind == "ident":
                value = text[1:-1].replace('""', '"')
            else:
                value = text
            out.append(Token(kind, pos, end, value))
        pos = end
    return out


def _comment_end(sql: str, pos: int) -> int:
    """The end of a block comment opened before ``pos``: they nest in PostgreSQL."""
    depth = 1
    for m in _BLOCK.finditer(sql, pos):
        depth += 1 if m.group() == "/*" else -1
        if depth == 0:
            return m.end()
    return -1


@dataclass(frozen=True, slots=True)
class Chunk:
    """One statement of a query string: its text and its tokens (offsets in ``text``)."""

    text: str
    tokens: tuple[Token, ...]


def split(sql: str) -> list[Chunk]:
    """The statements of ``sql`` in order, cut at top-level semicolons; empty ones dropped.

    A semicolon inside parentheses does not end a statement for the server either (a syntax
    error there fails the whole string), and ``CREATE RULE … DO (a; b)`` keeps its body.
    """
    tokens = lex(sql)
    chunks: list[Chunk] = []
    start, depth = 0, 0
    current: list[Token] = []
    for tok in tokens:
        if tok.kind == "punct" and tok.value == ";" and depth == 0:
            if current:
                chunks.append(_chunk(sql, start, tok.start, current))
            start, current = tok.end, []
            continue
        if tok.kind == "punct" and tok.value in "([":
            depth += 1
        elif tok.kind == "punct" and tok.value in ")]":
            depth = max(0, depth - 1)
        current.append(tok)
    if current:
        chunks.append(_chunk(sql, start, len(sql), current))
    return chunks


def _chunk(sql: str, start: int, end: int, tokens: list[Token]) -> Chunk:
    begin = tokens[0].start
    text = sql[begin:end].rstrip()
    return Chunk(
        text,
        tuple(Token(t.kind, t.start - begin, t.end - begin, t.value) for t in tokens),
    )


def words(chunk: Chunk, count: int) -> tuple[str, ...]:
    """The first ``count`` tokens' values (words folded), for classifying a statement."""
    return tuple(t.value for t in chunk.tokens[:count])


_BY_ENDS: Final = frozenset({"select", "from", "where", "having", "window", "union", "except"})


def shape(sql: str) -> str:
    """``sql`` with its constants replaced by ``?``: a cache key for the statement's analysis.

    Statements differing only in constants share a shape, so they must share an analysis: the
    analysis therefore reads no constant, but for the two places where a constant changes what is
    read, which stay as written: an integer after ``ORDER BY``/``GROUP BY`` (an output column's
    position) and the setting named by ``set_config``'s first argument.
    """
    tokens = lex(sql)
    parts: list[str] = []
    by_depth: set[int] = set()
    depth = 0
    prev = prev2 = ""
    for tok in tokens:
        value = tok.value
        if tok.kind == "punct":
            if value in "([":
                depth += 1
            elif value in ")]":
                by_depth.discard(depth)
                depth -= 1
        elif tok.kind == "word":
            if value == "by":
                by_depth.add(depth)
            elif value in _BY_ENDS or value == "limit" or value == "offset":
                by_depth.discard(depth)
        if tok.kind in _LITERALS:
            keep = (tok.kind == "number" and depth in by_depth) or (
                prev == "(" and prev2 == "set_config"
            )
            parts.append(tok.value if keep else "?")
        elif tok.kind == "ident":
            parts.append('"' + value.replace('"', '""') + '"')
        else:
            parts.append(value)
        prev2, prev = prev, value
    return " ".join(parts)


# What ``literal_key`` reads: printable ASCII and the usual white space, but for what only the
# lexer reads right (a quoted identifier, a dollar quote or parameter, a backslash, braces).
_PLAIN: Final = re.compile(r"[A-Za-z0-9_ \t\n\r'.,;()\[\]+*<>=~!@#%^&|`?:/-]*")
# Where a constant changes what is read (``shape``), and comments: ``by``, ``set_config``,
# ``--`` and ``/*``, tested one by one in the lowered text (faster than a search, case-blind or
# not, or a generator over them).
_STRING: Final = re.compile(r"'(?:[^']|'')*'")
# The lexer's number that starts with a digit, where a token may start: not inside a word.
_NUMBER: Final = re.compile(
    r"[0-9](?<![A-Za-z0-9_.][0-9])"
    r"(?:(?<=0)[xXoObB][0-9a-fA-F_]+|[0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9]+)?)"
)
# A number that starts with a dot (``.5``, ``t.5``, ``1..5``), left: the lexer's may run on
# past where ``_NUMBER`` would start one (``.5e+1e5`` is ``.5e+1``, then ``e5``).
_DOT_DIGIT: Final = re.compile(r"\.[0-9]")


def literal_key(sql: str) -> str | None:
    """A cache key for a plainly written ``sql``, without lexing it: the text as it came, its
    strings replaced by NUL and its numbers by SOH (``\\x00``, ``\\x01``, prefixed with a NUL,
    so it cannot be any ``shape``: no protocol string holds a NUL). None when the text is not
    plain enough for that to be safe.

    Texts with the same key are the same statement but for their constants, exactly as the
    lexer reads them, so they have the same ``shape``: what is not a constant is kept byte for
    byte, and a text is keyed only when every constant in it is a plain string or number
    found where the lexer finds it (ASCII, no comment, quoted identifier, dollar quote,
    parameter or backslash, every quote closed, no number that starts with a dot: tested
    against the lexer in ``test_pg_literal_key``) and no constant in it is one ``shape`` keeps
    (no ``by`` and no ``set_config`` anywhere). A simple query sent again with other values is
    then keyed in a few regular-expression passes, where ``shape`` lexes it."""
    if not sql.isascii() or _PLAIN.fullmatch(sql) is None:
        return None
    low = sql.lower()
    if "by" in low or "set_config" in low or "--" in low or "/*" in low:
        return None
    key = _STRING.sub("\x00", sql) if "'" in sql else sql
    if "'" in key:  # a quote left open: the lexer reads the rest differently
        return None
    key = _NUMBER.sub("\x01", key)
    return None if _DOT_DIGIT.search(key) else "\x00" + key


_UESCAPE: Final = re.compile(r"\\(?:\\|([0-9a-fA-F]{4})|\+([0-9a-fA-F]{6}))")


def plain_identifiers(chunk: Chunk) -> Chunk:
    """``chunk`` with its ``U&"…"`` identifiers spelled as plain quoted ones (``\\XXXX`` and
    ``\\+XXXXXX`` escapes), so the parser reads the name the server will. With a ``UESCAPE``
    clause, or an escape that is not one, it is left as it is (and read as unparsable)."""
    if not any(t.kind == "uident" for t in chunk.tokens):
        return chunk
    if any(t.kind == "word" and t.value == "uescape" for t in chunk.tokens):
        return chunk
    text, out, last = chunk.text, [], 0
    for token in chunk.tokens:
        if token.kind != "uident":
            continue
        body = text[token.start + 3 : token.end - 1].replace('""', '"')
        try:
            name = _UESCAPE.sub(_unescape, body)
        except ValueError:
            return chunk
        if "\\" in _UESCAPE.sub("", body) or "\x00" in name:
            return chunk
        out.append(text[last : token.start] + '"' + name.replace('"', '""') + '"')
        last = token.end
    rewritten = "".join(out) + text[last:]
    chunks = split(rewritten)
    return chunks[0] if len(chunks) == 1 else chunk


def _unescape(found: re.Match[str]) -> str:
    code = found.group(1) or found.group(2)
    return "\\" if code is None else chr(int(code, 16))
