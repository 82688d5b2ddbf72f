"""The deparsed expressions of a PostgreSQL plan, read as text: the references they make.

``EXPLAIN (VERBOSE)`` prints each expression as SQL, with ``alias.column`` references, function
calls, parameters (``$1``), subplans and operators. :func:`tokens` lists those references (None
when the text cannot be tokenised: the plan reader then counts every column), and the helpers
compare expressions as the plan prints them. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["PLAIN_REFERENCE", "Ref", "contains_expression", "identifier", "strip_parens", "tokens"]

# Words followed by "(" in deparsed SQL that are syntax, not function calls.
_SYNTAX: Final = frozenset(
    {
        "any", "all", "array", "row", "exists", "coalesce", "nullif", "greatest", "least",
        "cast", "case", "when", "then", "else", "and", "or", "not", "in", "is", "over", "filter",
        "within", "values", "xmlelement", "xmlforest", "xmlparse", "xmlpi", "xmlroot",
        "xmlserialize", "xmlexists", "xmlattributes", "collate", "operator", "subplan",
    }
)  # fmt: skip
# Bare words in deparsed SQL that are never columns.
_WORDS: Final = frozenset(
    {
        "null", "true", "false", "default", "and", "or", "not", "is", "in", "like", "ilike",
        "similar", "escape", "case", "when", "then", "else", "end", "asc", "desc", "nulls",
        "first", "last", "using", "distinct", "order", "by", "over", "partition", "hashed",
        "any", "all", "some", "current_date", "current_time", "current_timestamp", "localtime",
        "localtimestamp", "current_user", "session_user", "current_role", "current_catalog",
        "current_schema", "collate", "filter", "where", "within", "group", "variadic", "unknown",
    }
)  # fmt: skip
_TOKEN: Final = re.compile(
    r"""(?P<estr>[Ee]'(?:[^'\\]|''|\\.)*')|(?P<str>'(?:[^']|'')*')|(?P<cast>::)
    |(?P<qid>"(?:[^"]|"")*")|(?P<id>[^\W\d][\w$]*)|(?P<param>\$\d+)|(?P<num>\d[\w.]*)
    |(?P<ws>\s+)|(?P<bad>['"])|(?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)
PLAIN_REFERENCE: Final = re.compile(
    r'(?:[^\W\d][\w$]*|"(?:[^"]|"")*")(?:\.(?:[^\W\d][\w$]*|"(?:[^"]|"")*"|\*))?'
)


@dataclass(frozen=True, slots=True)
class Ref:
    kind: str  # "ref" (alias may be None: bare), "func", "param", "subplan", "op"
    alias: str | None
    name: str


def identifier(token: str) -> str:
    return token[1:-1].replace('""', '"') if token.startswith('"') else token


def tokens(expr: str) -> list[Ref] | None:
    """The references in one deparsed expression; None if it cannot be tokenised."""
    parts: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(expr):
        kind = match.lastgroup or "other"
        if kind == "bad":
            return None
        if kind not in ("ws", "str", "estr"):
            parts.append((kind, match.group()))
    refs: list[Ref] = []
    i, n = 0, len(parts)

    def at(k: int) -> tuple[str, str]:
        return parts[k] if k < n else ("end", "")

    while i < n:
        kind, text = parts[i]
        if kind == "cast":  # a type name follows: skip its dotted words
            i += 1
            while at(i)[0] in ("id", "qid") or at(i)[1] == ".":
                i += 1
            continue
        if kind == "param":
            refs.append(Ref("param", None, text))
        elif kind in ("id", "qid"):
            name = identifier(text)
            if kind == "id" and name.lower() == "subplan" and at(i + 1)[0] == "num":
                refs.append(Ref("subplan", None, f"SubPlan {at(i + 1)[1]}"))
                i += 2
                continue
            if kind == "id" and name.lower() == "operator" and at(i + 1)[1] == "(":
                j = i + 2
                while at(j)[1] != ")" and j < n:
                    j += 1
                refs.append(Ref("op", None, "".join(p[1] for p in parts[i + 2 : j])))
                i = j + 1
                continue
            if at(i + 1)[1] == "." and (at(i + 2)[0] in ("id", "qid") or at(i + 2)[1] == "*"):
                second = at(i + 2)
                if second[1] != "*" and at(i + 3)[1] == "(":
                    refs.append(Ref("func", name, identifier(second[1])))
                else:
                    refs.append(
                        Ref("ref", name, "*" if second[1] == "*" else identifier(second[1]))
                    )
                i += 3
                continue
            if at(i + 1)[1] == "(":
                if kind == "qid" or name.lower() not in _SYNTAX:
                    refs.append(Ref("func", None, name))
            elif kind == "qid" or name.lower() not in _WORDS:
                refs.append(Ref("ref", None, name))
        i += 1
    return refs


def strip_parens(text: str) -> str:
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1]
    return text


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def contains_expression(expr: str, part: str) -> bool:
    """``part`` occurs in ``expr`` as a whole expression (not inside a longer name)."""
    start = expr.find(part)
    while start >= 0:
        before = expr[start - 1] if start else " "
        end = start + len(part)
        after = expr[end] if end < len(expr) else " "
        if not (before.isalnum() or before in '_.$"') and not (after.isalnum() or after in "_$"):
            return True
        start = expr.find(part, start + 1)
    return False
