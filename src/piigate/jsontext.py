"""JSON text as piigate reads it: every object's keys unique, and, for documents that pass
through (the gateway's bodies), every number kept exactly as sent.

RFC 8259 §4 leaves duplicate names to the parser: Python keeps the last, other parsers the first,
so a gateway or app that checked a body could have seen another request than the one decided.
:func:`loads` refuses a duplicate at any depth (:class:`DuplicateKeyError`, naming the key's
path, never a value). ``NaN`` and ``Infinity``, which Python's parser accepts but JSON does not
have, are refused too.

:func:`loads_exact` reads every number with a fraction or exponent, and every integer of 19
digits or more, as a ``Decimal`` (a float would round a large amount, ``1e400`` would become
infinity), and :func:`dumps_exact` writes it back digit for digit: a document the gateway masks
reaches the client with every other value as the upstream wrote it. The standard library reads
(orjson rounds, and cannot refuse duplicate keys); ``orjson`` writes, each ``Decimal`` as its
own text (a ``Fragment``), at half the standard library's cost (``bench/upstream_clients.py``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NoReturn

import orjson

__all__ = ["DuplicateKeyError", "dumps_exact", "loads", "loads_exact"]


class DuplicateKeyError(json.JSONDecodeError):
    """An object in the body has the key at ``path`` more than once.

    A ``JSONDecodeError``, so that callers answering malformed JSON answer it too.
    """

    def __init__(self, path: str) -> None:
        super().__init__(f"duplicate key {path}", "", 0)
        self.path = path


class _Duplicate(Exception):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Duplicate
    return obj


def _no_constant(name: str) -> NoReturn:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


# Built once: ``json.loads`` with a hook would build a decoder (and its scanner) per call,
# which costs more than the parse of a decision's body.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique, parse_constant=_no_constant)
# Integers beyond 64 bits, which orjson cannot write, are kept as Decimal (18 digits always fit).
_LONG_INT = 19


def _exact_int(text: str) -> int | Decimal:
    return Decimal(text) if len(text.lstrip("-")) >= _LONG_INT else int(text)


_EXACT = json.JSONDecoder(
    object_pairs_hook=_unique,
    parse_float=Decimal,
    parse_int=_exact_int,
    parse_constant=_no_constant,
)


def _fragment(value: object) -> orjson.Fragment:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON")


def loads(body: bytes | str) -> Any:
    """``json.loads(body)``, refusing an object with a key twice (:class:`DuplicateKeyError`)
    and the non-JSON constants and nesting deeper than the interpreter's stack
    (``JSONDecodeError``).

    The check is one length comparison per object while parsing; the path is looked for only
    when there is a duplicate.
    """
    return _decode(_DECODER, body)


def loads_exact(body: bytes | str) -> Any:
    """:func:`loads`, with numbers that have a fraction or an exponent read as ``Decimal``."""
    return _decode(_EXACT, body)


def dumps_exact(doc: object) -> bytes:
    """``doc`` (as :func:`loads_exact` reads documents) as compact UTF-8 JSON, numbers as
    they were read. ``TypeError`` for what JSON cannot hold (a lone surrogate, which the
    standard library reads from ``\\ud800``)."""
    try:
        return orjson.dumps(doc, default=_fragment)
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from None


def _decode(decoder: json.JSONDecoder, body: bytes | str) -> Any:
    text = _text(body)
    try:
        return decoder.decode(text)
    except _Duplicate:
        raise DuplicateKeyError(_duplicate_path(text)) from None
    except RecursionError:  # "[[[[..." deeper than the interpreter's stack: not JSON to us
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def _text(body: bytes | str) -> str:
    """``body`` as ``json.loads`` reads it: bytes in UTF-8, -16 or -32, a leading BOM refused."""
    if isinstance(body, str):
        text = body
    else:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return text


class _Pairs(list[tuple[str, Any]]):
    """An object's members in order, duplicates kept (to find where the duplicate is)."""


def _duplicate_path(text: str) -> str:
    """The dotted path of the first duplicate key (``subject.id``, ``grants.0.x``)."""
    pending: list[tuple[tuple[str, ...], Any]] = [((), json.loads(text, object_pairs_hook=_Pairs))]
    while pending:  # depth first, without recursion: the body may nest as deep as json allows
        path, node = pending.pop()
        if isinstance(node, _Pairs):
            seen: set[str] = set()
            for key, _ in node:
                if key in seen:
                    return ".".join((*path, key))
                seen.add(key)
            pending.extend(((*path, key), value) for key, value in reversed(node))
        elif isinstance(node, list):
            pending.extend(((*path, str(i)), v) for i, v in reversed(list(enumerate(node))))
    return "body"  # not reached: loads found a duplicate
