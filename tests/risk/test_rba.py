"""The RBA login-history reader: the public format (with or without its index column), the
synthetic extensions, and one-line errors that name FILE:LINE and the column, never the value."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from rba_support import SAMPLE, Login, csv_text

from piigate.risk.evaluation.rba import COLUMNS, RbaFormatError, read_rba


def read(text: str) -> list:  # type: ignore[type-arg]
    return list(read_rba(io.StringIO(text), source="logins.csv"))


def test_the_public_sample_parses_cleanly() -> None:
    with open(SAMPLE, newline="", encoding="utf-8") as handle:
        records = list(read_rba(handle, source=SAMPLE))
    assert len(records) == 19
    first = records[0]
    assert first.at == datetime(2020, 2, 3, 12, 43, 30, 772000, tzinfo=UTC)
    assert first.user == "-4324475583306591935"
    assert (first.country, first.region, first.city, first.asn) == ("NO", None, None, 29695)
    assert not first.successful
    assert first.device is None and first.latitude is None
    # No Label column: the ground truth is Is Account Takeover or Is Attack IP.
    assert [r.line for r in records if r.attack] == [6, 7]
    assert records[2].region == "Vestland"


def test_without_the_index_column_and_with_extra_columns() -> None:
    with open(SAMPLE, newline="", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    stripped = "\n".join(line.split(",", 1)[1] + ",x" for line in lines)
    stripped = stripped.replace("Is Account Takeover,x", "Is Account Takeover,Comment", 1)
    assert len(read(stripped)) == 19


def test_the_synthetic_columns() -> None:
    text = csv_text(
        [
            Login("2025-01-01 10:00:00"),
            Login("2025-01-01 11:00:00.250", label="attack", kind="vpn", device=""),
        ]
    )
    legit, attack = read(text)
    assert (legit.device, legit.latitude, legit.longitude) == ("dev-1", 59.91, 10.75)
    assert not legit.attack and legit.attack_type is None
    assert attack.attack and attack.attack_type == "vpn" and attack.device is None
    assert attack.at.microsecond == 250000


@pytest.mark.parametrize(
    ("change", "column", "why"),
    [
        ({"at": "yesterday"}, "Login Timestamp", "not a timestamp"),
        ({"ip": "999.1.1.1"}, "IP Address", "not an IP address"),
        ({"asn": "AS12"}, "ASN", "not a number"),
        ({"asn": "12.5"}, "ASN", "not an integer"),
        ({"lat": "91"}, "Latitude", "out of range"),
        ({"label": "maybe"}, "Label", "expected one of attack, legit"),
        ({"user": "-"}, "User ID", "missing value"),
    ],
)
def test_a_malformed_row_names_the_file_line_and_column(
    change: dict[str, str], column: str, why: str
) -> None:
    good = {"at": "2025-01-01 10:00:00"}
    text = csv_text([Login(**good), Login(**{**good, **change})])  # type: ignore[arg-type]
    with pytest.raises(RbaFormatError) as caught:
        read(text)
    assert caught.value.detail.startswith(f"logins.csv:3: column {column!r}: {why}")
    for value in change.values():
        if value not in ("-", "maybe"):
            assert value not in caught.value.detail


def test_a_bad_login_successful_flag() -> None:
    text = csv_text([Login("2025-01-01 10:00:00")]).replace(",True,", ",yes,")
    with pytest.raises(RbaFormatError, match=r"^logins.csv:2: column 'Login Successful'"):
        read(text)


def test_a_missing_column_and_a_short_row() -> None:
    header = ",".join(c for c in COLUMNS if c != "ASN")
    with pytest.raises(RbaFormatError, match=r"^logins.csv:1: missing column 'ASN'$"):
        read(header + "\n")
    text = csv_text([Login("2025-01-01 10:00:00")]) + "1,2,3\n"
    with pytest.raises(RbaFormatError, match=r"^logins.csv:3: 3 fields, the header has 21$"):
        read(text)
    with pytest.raises(RbaFormatError, match="empty file"):
        read("")


def test_a_multi_line_quoted_field_keeps_line_numbers_true() -> None:
    text = csv_text([Login("2025-01-01 10:00:00", agent="two\nlines"), Login("bad")])
    with pytest.raises(RbaFormatError, match=r"^logins.csv:4: column 'Login Timestamp'"):
        read(text)
