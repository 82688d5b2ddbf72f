"""PostgreSQL's lexical rules, enough to split a query string and key a cache on its shape.

The gateway must cut a simple-query string into statements exactly where the server does, and
it must see comments, strings and quoted identifiers as the server does (``SELECT/**/ssn``,
``'a\\'`` with standard strings, nested ``/* /* */ */``, ``$tag$…$tag$``, ``E'\\''``). This lexer
follows scan.l for those rules; it does not parse. It is also fast (one compiled pattern), which
``shape`` needs: it runs on every statement before the cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["Chunk", "Token", "lex", "plain_identifiers", "shape", "split", "words"]

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
