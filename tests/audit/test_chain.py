from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piigate.audit.chain import (
    GENESIS,
    ChainHead,
    ChainRow,
    canonical_json,
    event_hash,
    event_hash_text,
    format_time,
    verify_rows,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Colour(StrEnum):
    RED = "red"


def build(n: int) -> list[ChainRow]:
    rows: list[ChainRow] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        at = T0 + timedelta(seconds=seq)
        data = {"n": seq, "pii": ["ssn"]}
        digest = event_hash(prev, seq, at, "decision", "alice", data)
        rows.append(ChainRow(seq, at, "decision", "alice", canonical_json(data), prev, digest))
        prev = digest
    return rows


def head_of(rows: list[ChainRow]) -> ChainHead:
    return ChainHead(rows[-1].seq, rows[-1].hash) if rows else ChainHead(0, GENESIS)


def rehash(row: ChainRow, **changes: object) -> ChainRow:
    row = dataclasses.replace(row, **changes)  # type: ignore[arg-type]
    data = json.loads(row.data) if isinstance(row.data, str) else row.data
    return dataclasses.replace(
        row, hash=event_hash(row.prev_hash, row.seq, row.at, row.type, row.subject_id, data)
    )


def test_canonical_json() -> None:
    text = canonical_json(
        {
            "b": [1, 2.5, None, True],
            "a": {"z": "é", "y": (1, 2)},
            "at": datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))),
            "day": date(2026, 1, 2),
            "amount": Decimal("10.50"),
            "set": {"b", "a"},
            "colour": Colour.RED,
        }
    )
    assert text == (
        '{"a":{"y":[1,2],"z":"é"},"amount":"10.50","at":"2026-01-01T00:00:00.000000Z",'
        '"b":[1,2.5,null,true],"colour":"red","day":"2026-01-02","set":["a","b"]}'
    )
    assert canonical_json(json.loads(text)) == text


@pytest.mark.parametrize(
    ("bad", "error"),
    [({1: "x"}, TypeError), ({"k": b"secret"}, TypeError), ({"k": float("nan")}, ValueError)],
)
def test_canonical_json_refuses_what_it_cannot_keep(bad: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        canonical_json(bad)


def test_format_time_treats_naive_as_utc() -> None:
    assert format_time(datetime(2026, 1, 1)) == "2026-01-01T00:00:00.000000Z"


def test_event_hash_is_sha256_over_prev_hash_and_canonical_fields() -> None:
    import hashlib

    body = (
        '{"at":"2026-01-01T00:00:00.000000Z","data":{"k":1},"seq":1,"subject_id":null,"type":"t"}'
    )
    expected = hashlib.sha256((GENESIS + body).encode()).hexdigest()
    assert event_hash(GENESIS, 1, T0, "t", None, {"k": 1}) == expected


def test_intact_chain_verifies() -> None:
    rows = build(10)
    assert verify_rows(rows, head_of(rows)).ok
    report = verify_rows(rows, head_of(rows))
    assert (report.count, report.first_bad_seq, report.reason) == (10, None, None)
    assert verify_rows([], ChainHead(0, GENESIS)).ok


def test_edited_event_is_caught_at_itself() -> None:
    rows = build(10)
    rows[3] = dataclasses.replace(rows[3], data='{"n":4,"pii":["passport"]}')
    report = verify_rows(rows, head_of(rows))
    assert (report.ok, report.first_bad_seq, report.count) == (False, 4, 3)
    assert report.reason and "altered" in report.reason


def test_edited_and_rehashed_event_is_caught_by_the_next_link() -> None:
    rows = build(10)
    rows[3] = rehash(rows[3], subject_id="mallory")
    report = verify_rows(rows, head_of(rows))
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert report.reason and "event 4" in report.reason


def test_deleted_middle_event_is_a_gap() -> None:
    rows = build(10)
    del rows[3]
    report = verify_rows(rows, ChainHead(10, build(10)[-1].hash))
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert report.reason and "missing" in report.reason


def test_deleted_tail_is_caught_by_the_head() -> None:
    rows = build(10)
    head = head_of(rows)
    report = verify_rows(rows[:8], head)
    assert (report.ok, report.first_bad_seq, report.count) == (False, 9, 8)
    # Without the anchor a truncated chain looks whole: that is what the head is for.
    assert verify_rows(rows[:8]).ok


def test_event_appended_past_the_head_is_caught() -> None:
    rows = build(11)
    report = verify_rows(rows, head_of(rows[:10]))
    assert (report.ok, report.first_bad_seq, report.count) == (False, 11, 10)


def test_replaced_last_event_is_caught_by_the_head_hash() -> None:
    rows = build(10)
    head = head_of(rows)
    rows[9] = rehash(rows[9], type="nothing")
    report = verify_rows(rows, head)
    assert (report.ok, report.first_bad_seq) == (False, 10)


def test_inserted_event_is_caught() -> None:
    rows = build(10)
    forged = rehash(dataclasses.replace(rows[4], type="forged", prev_hash=rows[3].hash), seq=5)
    shifted = [dataclasses.replace(r, seq=r.seq + 1) for r in rows[4:]]
    tampered = [*rows[:4], forged, *shifted]
    report = verify_rows(tampered, head_of(rows))
    # The forged event links to event 4 and hashes correctly; the event after it does not.
    assert (report.ok, report.first_bad_seq) == (False, 6)


def test_swapped_events_are_caught() -> None:
    rows = build(10)
    a, b = rows[3], rows[4]
    rows[3] = dataclasses.replace(b, seq=4)
    rows[4] = dataclasses.replace(a, seq=5)
    report = verify_rows(rows, head_of(build(10)))
    assert (report.ok, report.first_bad_seq) == (False, 4)


def test_rows_out_of_order_are_caught() -> None:
    rows = build(5)
    rows[1], rows[2] = rows[2], rows[1]
    report = verify_rows(rows)
    assert (report.ok, report.first_bad_seq) == (False, 2)


def test_first_event_must_start_from_genesis() -> None:
    rows = build(3)
    rows[0] = rehash(rows[0], prev_hash="f" * 64)
    assert verify_rows(rows).first_bad_seq == 1


def test_unreadable_data_is_a_bad_event() -> None:
    rows = build(3)
    rows[1] = dataclasses.replace(rows[1], data="{not json")
    assert verify_rows(rows).first_bad_seq == 2


# Rewrites of event 4's stored data ('{"n":4,"pii":["ssn"]}') that parse back to the same value:
# re-canonicalising them would hide the edit, while SQL readers see the stored text.
NON_CANONICAL = {
    # Python's and PostgreSQL's JSON keep the last of two keys, SQLite's json_extract the first.
    "leading duplicate key": '{"n":0,"n":4,"pii":["ssn"]}',
    "extra whitespace": '{"n": 4, "pii": ["ssn"]}',
    "reordered keys": '{"pii":["ssn"],"n":4}',
}


@pytest.mark.parametrize("text", NON_CANONICAL.values(), ids=NON_CANONICAL.keys())
def test_stored_text_that_is_not_canonical_is_refused(text: str) -> None:
    rows = build(10)
    assert json.loads(text) == json.loads(str(rows[3].data))
    rows[3] = dataclasses.replace(rows[3], data=text)
    report = verify_rows(rows, head_of(rows))
    assert (report.ok, report.first_bad_seq, report.count) == (False, 4, 3)
    assert report.reason and "canonical" in report.reason


@pytest.mark.parametrize("text", NON_CANONICAL.values(), ids=NON_CANONICAL.keys())
def test_the_hash_covers_the_stored_text_itself(text: str) -> None:
    # Even re-hashed over the stored text and relinked, a row the writer could not have
    # written is refused at itself.
    rows = build(2)
    row = rows[0]
    forged = event_hash_text(row.prev_hash, row.seq, row.at, row.type, row.subject_id, text)
    rows[0] = dataclasses.replace(row, data=text, hash=forged)
    rows[1] = rehash(rows[1], prev_hash=forged)
    report = verify_rows(rows, head_of(rows))
    assert (report.ok, report.first_bad_seq) == (False, 1)


def test_data_that_is_not_an_object_is_unreadable() -> None:
    rows = build(3)
    rows[1] = dataclasses.replace(rows[1], data="[1]")
    report = verify_rows(rows)
    assert report.first_bad_seq == 2
    assert report.reason and "unreadable" in report.reason


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_canonical_json_roundtrips(data: dict[str, object]) -> None:
    text = canonical_json(data)
    assert canonical_json(json.loads(text)) == text


@given(
    st.integers(1, 8), st.sampled_from(["type", "subject_id", "data", "at", "prev_hash", "hash"])
)
def test_any_single_field_edit_is_detected(index: int, field: str) -> None:
    rows = build(8)
    head = head_of(rows)
    row = rows[index - 1]
    changed: object = {
        "type": row.type + "x",
        "subject_id": "mallory",
        "data": '{"n":0}',
        "at": row.at + timedelta(microseconds=1),
        "prev_hash": "1" * 64,
        "hash": "2" * 64,
    }[field]
    rows[index - 1] = dataclasses.replace(row, **{field: changed})  # type: ignore[arg-type]
    report = verify_rows(rows, head)
    assert not report.ok
    assert report.first_bad_seq in (index, index + 1)


@given(
    data=st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=12),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=4,
    ),
    subject=st.none() | st.text(max_size=10),
    kind=st.text(min_size=1, max_size=10),
    seq=st.integers(min_value=1, max_value=2**62),
)
def test_the_writers_fast_hash_equals_the_canonical_one(
    data: dict[str, object], subject: str | None, kind: str, seq: int
) -> None:
    at = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    expected = event_hash(GENESIS, seq, at, kind, subject, data)
    assert event_hash_text(GENESIS, seq, at, kind, subject, canonical_json(data)) == expected


_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.datetimes(timezones=st.just(UTC))
    | st.decimals(allow_nan=False, allow_infinity=False, places=2)
    | st.frozensets(st.text(max_size=3), max_size=3)
)


@given(
    st.recursive(
        _leaf,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_the_fast_encoder_prints_exactly_what_the_exact_rules_print(value: object) -> None:
    from piigate.audit.chain import _slow_canonical

    assert canonical_json(value) == _slow_canonical(value)
