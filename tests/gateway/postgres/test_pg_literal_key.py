"""``sqltext.literal_key``: the cheap cache key of a plainly written statement. Two texts with
the same key must have the same ``shape`` (they then share an analysis), whatever they hold;
texts the key cannot read as the lexer does get no key."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piigate.gateway.postgres.sqltext import literal_key, shape

# Pieces that make the lexer's hard cases: numbers that run on (1e5, 0x1f, 1_000, 1.), dots
# before digits, prefixed strings (e'', x'', b'', n'', U&''), quotes doubled, words that end in
# digits or prefix letters, operators.
_PIECES = [
    "1", "0", "5", "09", "1e5", "1.", ".5", "0x", "0X1F", "0b1", "0o7", "1_000", "12_3", "e",
    "E", "x", "b", "n", "o", "t", "a1", "_", "_1", "e'", "x'", "E'", "U&", "u&", "'", "''",
    "'a'", "'1'", " ", "\t", "\n", ".", "(", ")", "[", "]", ",", ";", "::", ":", "+", "-",
    "e+", "e-", "=", "<>", "*", "/", "?", "!", "|", "#", "%", "^", "~", "@", "`", "&",
    "select", "from", "where", "a.b", "1.e", "9.", "0e1", ".5e+1", "e+1", "1.5e", "$", '"',
    "\\",
]  # fmt: skip
_NUMBERS = ["7", "1e5", "0x1f", "12_3", "1.5", "3.", "0", "00", "0b1", "9e+3", "1_", "5.e3"]
_STRINGS = ["'s'", "''", "'a''b'", "'1'", "'x y'", "'--'", "'by'"]


def _refilled(key: str, draw: st.DrawFn) -> str:
    """A text with ``key``'s layout and other constants in its places."""
    parts = re.split("([\x00\x01])", key[1:])
    filled = [
        draw(st.sampled_from(_STRINGS))
        if p == "\x00"
        else draw(st.sampled_from(_NUMBERS))
        if p == "\x01"
        else p
        for p in parts
    ]
    return "".join(filled)


@settings(max_examples=2000)
@given(st.data())
def test_texts_with_the_same_key_have_the_same_shape(data: st.DataObject) -> None:
    text = "".join(data.draw(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=14)))
    key = literal_key(text)
    if key is None:
        return
    for _ in range(3):
        other = _refilled(key, data.draw)
        if literal_key(other) == key:
            assert shape(other) == shape(text), (text, other)


def test_the_same_statement_with_other_values_has_one_key() -> None:
    first = literal_key("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;")
    again = literal_key("SELECT abalance FROM pgbench_accounts WHERE aid = 7;")
    assert first is not None and first == again
    strings = literal_key("SELECT id FROM t WHERE name = 'a' AND n IN (1, 2.5, 0x1f)")
    assert strings == literal_key("SELECT id FROM t WHERE name = 'it''s' AND n IN (9, 3e2, 4)")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("SELECT a FROM t WHERE id = 1", "SELECT b FROM t WHERE id = 1"),
        ("SELECT t1 FROM t", "SELECT t2 FROM t"),  # digits in a name are the name
        ("SELECT a FROM t WHERE id = 1", "select a from t where id = 1"),  # as written
        ("SELECT 1", "SELECT '1'"),  # a number is not a string
    ],
)
def test_texts_that_differ_in_more_than_constants_have_other_keys(one: str, other: str) -> None:
    assert literal_key(one) is not None and literal_key(one) != literal_key(other)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT a, b FROM t ORDER BY 1",  # a position: shape keeps it
        "SELECT a FROM t GROUP BY 1",
        "SELECT set_config('search_path', 'x', false)",
        "SELECT a FROM t -- a comment",
        "SELECT a /* a comment */ FROM t",
        'SELECT "A" FROM t',
        "SELECT $1",
        "SELECT $$x$$",
        "SELECT E'\\''",
        "SELECT 'open",
        "SELECT .5",
        "SELECT t.5e+1e5",  # the lexer reads .5e+1, then e5
        "SELECT 'é'",
        "SELECT '\x0b'",
        "SELECT {1}",
    ],
)
def test_what_the_key_cannot_read_as_the_lexer_does_gets_none(text: str) -> None:
    assert literal_key(text) is None


def test_a_key_is_never_a_shape() -> None:
    key = literal_key("select ? from t")  # an operator, as a shape writes a constant
    assert key is not None and key != shape("select 1 from t") and key.startswith("\x00")
