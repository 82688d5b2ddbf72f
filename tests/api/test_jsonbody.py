"""``api.jsonbody.loads``: JSON as ``json.loads`` reads it, but no object may repeat a key."""

from __future__ import annotations

import json

import pytest

from piigate.api.jsonbody import DuplicateKeyError, loads


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}]}',  # the same key in other objects
        "[]",
        '"x"',
        '{"": 1, " ": 2}',
        '{"\\u0041": 1, "B": 2}',
    ],
)
def test_what_has_no_duplicate_reads_as_json_loads_reads_it(text: str) -> None:
    assert loads(text) == json.loads(text)
    assert loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"a": 1, "a": 1}', "a"),
        ('{"a": {"b": {"c": 1, "c": 2}}}', "a.b.c"),
        ('{"a": [{"b": 1}, {"b": 1, "b": 2}]}', "a.1.b"),
        ('[[{"x": 1}], [{"y": 1, "y": 2}]]', "1.0.y"),
        ('{"\\u0041": 1, "A": 2}', "A"),  # the same key, however it is escaped
        ('{"a": {"x": 1, "x": 2}, "a": 3}', "a"),  # the outer object's first
    ],
)
def test_a_repeated_key_is_refused_with_its_path(text: str, path: str) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        loads(text)
    assert caught.value.path == path
    assert isinstance(caught.value, ValueError)  # what callers of json.loads already catch


def test_deep_nesting_is_walked_without_recursion() -> None:
    depth = 900
    text = '{"k":' * depth + '{"d": 1, "d": 2}' + "}" * depth
    with pytest.raises(DuplicateKeyError) as caught:
        loads(text)
    assert caught.value.path == ".".join(["k"] * depth + ["d"])


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-32"])
def test_bytes_are_read_as_json_loads_reads_them(encoding: str) -> None:
    text = '{"name": "Zoë", "n": [1, 2.5, null, true]}'
    assert loads(text.encode(encoding)) == json.loads(text.encode(encoding))
    with pytest.raises(json.JSONDecodeError):
        loads("\ufeff" + text)  # as json.loads: a BOM in a str is refused
    with pytest.raises(json.JSONDecodeError):
        loads(b'{"a": ')
