"""Scrubbing the server's errors and notices (``scrub``): the values PostgreSQL quotes in its
real message shapes are blanked, a RAISE's own text is blanked whole, and what names things
(severity, SQLSTATE, position, schema, table, column, constraint) is kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres.scrub import HIDDEN, scrub, scrub_text

SSN = "219-09-9999"
H = HIDDEN


def _error(*fields: tuple[str, str]) -> be.ErrorResponse:
    return be.ErrorResponse((("S", "ERROR"), ("V", "ERROR"), *fields))


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (
            f'invalid input syntax for type integer: "{SSN}"',
            f'invalid input syntax for type integer: "{H}"',
        ),
        (
            f'value "{SSN}" is out of range for type bigint',
            f'value "{H}" is out of range for type bigint',
        ),
        (f"Key (ssn)=({SSN}) already exists.", f"Key (ssn)=({H}) already exists."),
        (
            f"Key (ssn, phone)=({SSN}, (555) 123-4567) already exists.",
            f"Key (ssn, phone)=({H}) already exists.",
        ),
        (
            f'Key (customer_ssn)=({SSN}) is not present in table "customers".',
            f'Key (customer_ssn)=({H}) is not present in table "{H}".',
        ),
        (
            "Key (lower(email))=(alice@example.com) already exists.",
            f"Key (lower(email))=({H}) already exists.",
        ),
        (f"Failing row contains (1, alice, {SSN}, null).", f"Failing row contains ({H})."),
        (
            f"Failing row contains (1, (555) 123-4567, {SSN}, (Paris,France)).",
            f"Failing row contains ({H}).",
        ),
        ("unnamed portal parameter $1 = '219-09-9999'", f"unnamed portal parameter $1 = '{H}'"),
        (f"it's {SSN} and O''Brien's 'x'", f"it'{H}'s '{H}'"),  # quotes pair across: hidden
        (f"SSN {SSN} is odd", f"SSN {H} is odd"),
        ("card 4111 1111 1111 1111 used", f"card {H} used"),
        ("nothing quoted here, 42 rows", "nothing quoted here, 42 rows"),
    ],
)
def test_scrub_text_blanks_the_values_the_server_quotes(text: str, scrubbed: str) -> None:
    assert scrub_text(text) == scrubbed


def test_a_failing_row_is_blanked_whole_even_when_a_value_holds_a_parenthesis() -> None:
    # Row values are not quoted: a value written by the client must not cut the row short.
    for note in ("x)", "x(", "a) (b", "((", "))"):
        text = f"Failing row contains (1, {note}, 12 Main Street, null)."
        assert "Main" not in scrub_text(text), note


def test_invalid_input_syntax_keeps_code_severity_and_position() -> None:
    message = _error(
        ("C", "22P02"),
        ("M", f'invalid input syntax for type integer: "{SSN}"'),
        ("P", "31"),
        ("F", "numutils.c"),
        ("L", "617"),
        ("R", "pg_strtoint32_safe"),
    )
    assert scrub(message) == _error(
        ("C", "22P02"),
        ("M", f'invalid input syntax for type integer: "{H}"'),
        ("P", "31"),
        ("F", "numutils.c"),
        ("L", "617"),
        ("R", "pg_strtoint32_safe"),
    )


def test_unique_violation_keeps_the_names_and_blanks_the_key() -> None:
    message = _error(
        ("C", "23505"),
        ("M", 'duplicate key value violates unique constraint "customers_ssn_key"'),
        ("D", f"Key (ssn)=({SSN}) already exists."),
        ("s", "public"),
        ("t", "customers"),
        ("n", "customers_ssn_key"),
    )
    scrubbed = scrub(message)
    assert scrubbed.get("D") == f"Key (ssn)=({H}) already exists."
    assert scrubbed.get("M") == f'duplicate key value violates unique constraint "{H}"'
    assert (scrubbed.get("s"), scrubbed.get("t"), scrubbed.get("n")) == (
        "public",
        "customers",
        "customers_ssn_key",
    )
    assert scrubbed.get("S") == "ERROR" and scrubbed.get("C") == "23505"
    assert SSN not in repr(scrubbed)


def test_not_null_and_check_violations_blank_the_failing_row() -> None:
    not_null = _error(
        ("C", "23502"),
        ("M", 'null value in column "phone" of relation "customers" violates not-null constraint'),
        ("D", f"Failing row contains (7, alice, {SSN}, null, (555) 123-4567)."),
        ("s", "public"),
        ("t", "customers"),
        ("c", "phone"),
    )
    check = _error(
        ("C", "23514"),
        ("M", 'new row for relation "customers" violates check constraint "ssn_format"'),
        ("D", f"Failing row contains (7, alice, {SSN[:-1]})."),
        ("s", "public"),
        ("t", "customers"),
        ("n", "ssn_format"),
    )
    for message in (not_null, check):
        scrubbed = scrub(message)
        assert scrubbed.get("D") == f"Failing row contains ({H})."
        assert [k for k, _ in scrubbed.fields] == [k for k, _ in message.fields]
        for code in "stcn":
            assert scrubbed.get(code) == message.get(code)
    assert scrub(not_null).get("c") == "phone"


@pytest.mark.parametrize("sqlstate", ["P0001", "00000", "01000"])
def test_what_a_raise_says_is_blanked_whole(sqlstate: str) -> None:
    message = be.NoticeResponse(
        (
            ("S", "NOTICE"),
            ("C", sqlstate),
            ("M", "customer alice"),
            ("D", "lives at 12 Main Street"),
            ("H", "call her"),
            ("W", f"PL/pgSQL function f(text) line 3 at RAISE, ssn '{SSN}'"),
        )
    )
    scrubbed = scrub(message)
    assert isinstance(scrubbed, be.NoticeResponse)
    assert (scrubbed.get("M"), scrubbed.get("D"), scrubbed.get("H")) == (H, H, H)
    assert scrubbed.get("W") == f"PL/pgSQL function f(text) line 3 at RAISE, ssn '{H}'"
    assert scrubbed.get("S") == "NOTICE" and scrubbed.get("C") == sqlstate


def test_a_raise_with_its_own_sqlstate_is_still_blanked_whole() -> None:
    # RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = ..., TABLE = ...: the server says
    # where it came from in the context, and every field but severity and code is the caller's.
    message = _error(
        ("C", "23514"),
        ("M", "bad address: 12 Main Street"),
        ("W", "PL/pgSQL function check_address() line 4 at RAISE"),
        ("t", "12 Main Street"),
        ("c", "12 Main Street"),
    )
    scrubbed = scrub(message)
    assert "Main" not in repr(scrubbed)
    assert scrubbed.get("C") == "23514" and scrubbed.get("S") == "ERROR"


def test_other_sqlstates_are_scrubbed_not_blanked() -> None:
    message = _error(("C", "42703"), ("M", 'column "sssn" does not exist'), ("H", "Perhaps ssn?"))
    scrubbed = scrub(message)
    assert scrubbed.get("M") == f'column "{H}" does not exist'
    assert scrubbed.get("H") == "Perhaps ssn?"


def test_the_internal_query_and_context_are_scrubbed() -> None:
    message = _error(
        ("C", "22P02"),
        ("M", "invalid input syntax"),
        ("q", f"SELECT '{SSN}'::int"),
        ("W", f"SQL statement \"SELECT '{SSN}'::int\""),
    )
    scrubbed = scrub(message)
    assert SSN not in repr(scrubbed)


# -- the property: an SSN-like value placed in any message shape never comes back ---------------
TEMPLATES = [
    ("22P02", "M", 'invalid input syntax for type integer: "{v}"'),
    ("22003", "M", 'value "{v}" is out of range for type integer'),
    ("23505", "D", "Key (ssn)=({v}) already exists."),
    ("23505", "D", "Key (ssn, phone)=({v}, (555) {v}) already exists."),
    ("23503", "D", 'Key (ssn)=({v}) is not present in table "customers".'),
    ("23502", "D", "Failing row contains (alice, {v}, null)."),
    ("23514", "D", "Failing row contains (alice, ({v},x), (555) {v})."),
    ("22007", "W", "unnamed portal parameter $2 = '{v}'"),
    ("P0001", "M", "SSN {v} is not valid"),
    ("P0001", "D", "{v}"),
    ("00000", "M", "{v}"),
    ("01000", "H", "try {v} again"),
]
SSN_LIKE = st.text(alphabet="0123456789-", min_size=3, max_size=20)


@given(v=SSN_LIKE, template=st.sampled_from(TEMPLATES))
def test_no_ssn_like_value_survives_any_shape(v: str, template: tuple[str, str, str]) -> None:
    sqlstate, code, text = template
    message = _error(("C", sqlstate), (code, text.format(v=v)), ("P", "8"))
    scrubbed = scrub(message)
    for key, value in scrubbed.fields:
        if key in "MDHWq":
            assert v not in value
    if sqlstate[:2] != "P0" and sqlstate[:2] not in ("00", "01"):
        assert v not in scrub_text(text.format(v=v))
