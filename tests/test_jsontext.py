"""jsontext: duplicate keys refused, non-JSON constants refused, numbers kept exactly."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from piigate.jsontext import DuplicateKeyError, dumps_exact, loads, loads_exact


def test_exact_numbers_survive_a_round_trip() -> None:
    text = b'{"amount":12345678901234567890.10,"small":1e-7,"n":3,"big":1E400,"s":"\xc3\xa9"}'
    doc = loads_exact(text)
    assert doc["amount"] == Decimal("12345678901234567890.10")
    assert (
        dumps_exact(doc)
        == b'{"amount":12345678901234567890.10,"small":1E-7,"n":3,"big":1E+400,"s":"\xc3\xa9"}'
    )
    assert json.loads(dumps_exact(doc))["n"] == 3


def test_plain_loads_reads_floats() -> None:
    assert loads('{"a": 1.5}') == {"a": 1.5}


@pytest.mark.parametrize("reader", [loads, loads_exact])
def test_duplicate_keys_are_refused_with_their_path(reader) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        reader('{"a": {"b": 1, "b": 2}}')
    assert caught.value.path == "a.b"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("reader", [loads, loads_exact])
def test_non_json_constants_are_refused(reader, constant: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        reader(f'{{"a": {constant}}}')


@pytest.mark.parametrize("reader", [loads, loads_exact])
def test_nesting_deeper_than_the_stack_is_not_json(reader) -> None:
    """A 200 KB ``[[[...]]]`` is no RecursionError escaping to a 500, but JSON refused."""
    with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
        reader(b"[" * 100_000 + b"]" * 100_000)
    nested: list[object] = []
    for _ in range(49):
        nested = [nested]
    assert reader(b"[" * 50 + b"]" * 50) == nested


def test_a_bom_is_refused() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads_exact("\ufeff{}")


def test_integers_beyond_64_bits_are_written_back_as_read() -> None:
    text = b'{"id":123456789012345678901234567890,"n":-9223372036854775808,"m":42}'
    doc = loads_exact(text)
    assert doc["m"] == 42 and isinstance(doc["m"], int)
    assert dumps_exact(doc) == text


def test_what_json_cannot_hold_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        dumps_exact(loads_exact('{"a": "\\ud800"}'))
