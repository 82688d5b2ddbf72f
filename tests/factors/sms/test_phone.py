"""Phone numbers: parsed and normalised to E.164 (phonenumbers), refused without echoing them."""

from __future__ import annotations

import pytest

from piigate.factors.sms import InvalidPhoneNumber, PhoneNumber, parse_phone


@pytest.mark.parametrize(
    ("text", "region", "e164"),
    [
        ("+16502530000", None, "+16502530000"),
        ("+1 (650) 253-0000", None, "+16502530000"),
        ("(650) 253-0000", "US", "+16502530000"),
        ("650.253.0000", "us", "+16502530000"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "DE", "+33612345678"),  # an explicit + wins over the region
        ("0151 23456789", "DE", "+4915123456789"),
        ("00 49 151 23456789", "DE", "+4915123456789"),  # international prefix from Germany
    ],
)
def test_valid_numbers_are_normalised_to_e164(text: str, region: str | None, e164: str) -> None:
    assert parse_phone(text, region=region).e164 == e164


@pytest.mark.parametrize(
    ("text", "region", "says"),
    [
        ("", None, "at most"),
        ("not a number", None, "not a phone number"),
        ("6502530000", None, "not a phone number"),  # national form without a region
        ("+1 650 253", None, "not a valid number"),
        ("+999 1234 5678", None, "not a phone number"),  # no such country code
        ("+44 20 7946 0958", None, "cannot receive SMS"),  # a London landline
        ("+1 900 555 0100", None, "cannot receive SMS"),  # premium rate: SMS pumping
        ("+1 800 555 0100", None, "cannot receive SMS"),  # toll free
        ("+1650253" + "0" * 60, None, "at most"),
    ],
)
def test_invalid_numbers_are_refused_without_echoing_them(
    text: str, region: str | None, says: str
) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        parse_phone(text, region=region)
    problem = caught.value.problem()
    assert problem["status"] == 422 and problem["code"] == "invalid_phone"
    assert problem["field"] == "phone"
    assert says in problem["detail"]
    digits = "".join(ch for ch in text if ch.isdigit())
    rendered = str(problem)
    if len(digits) >= 4:
        assert digits not in "".join(ch for ch in rendered if ch.isdigit())


@pytest.mark.parametrize("region", ["XX", "USA", "1"])
def test_an_unknown_region_is_named_not_the_number(region: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        parse_phone("(650) 253-0000", region=region)
    assert caught.value.problem()["field"] == "region"
    assert "253" not in caught.value.detail


def test_the_hint_keeps_the_country_code_and_last_two_digits() -> None:
    us = parse_phone("+16502530042")
    assert us.hint == "+1 •••-•••-••42"
    fr = parse_phone("+33612345678")
    assert fr.hint == "+33 • •• •• •• 78"
    for phone in (us, fr):
        assert sum(ch.isdigit() for ch in phone.hint.split(" ", 1)[1]) == 2


def test_the_number_never_shows_in_a_repr() -> None:
    phone = parse_phone("+16502530042")
    assert "6502530042" not in repr(phone) and "6502530042" not in str(phone)
    assert repr(phone) == "PhoneNumber(hint='+1 •••-•••-••42')"
    assert isinstance(phone, PhoneNumber)
