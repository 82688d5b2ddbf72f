"""The demo's synthetic customers: the same every time, and every value of a made-up kind (SSNs
never issued, IBANs whose check digits hold, phone numbers reserved for fiction)."""

from __future__ import annotations

import re

import httpx
from stdnum import iban as stdnum_iban

from piigate.demo.customers import create_customers_app
from piigate.demo.synthetic import DEFAULT_COUNT, iban_check_digits, synthetic_customers


def _mod97(iban: str) -> int:
    """ISO 13616 written out once more, independently: the country and check digits moved to
    the end, letters as 10..35, the number modulo 97 (1 for a valid IBAN)."""
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97


def test_the_same_customers_every_time() -> None:
    assert synthetic_customers() == synthetic_customers()
    assert synthetic_customers(count=20, seed=1) != synthetic_customers(count=20, seed=2)
    customers = synthetic_customers()
    assert len(customers) == DEFAULT_COUNT
    assert [c["id"] for c in customers] == [str(i) for i in range(1, DEFAULT_COUNT + 1)]


def test_the_named_customers_stay_first() -> None:
    first = synthetic_customers()[0]
    assert (first["name"], first["ssn"], first["passport_number"]) == (
        "Ada Example",
        "900-12-3456",
        "X1234567",
    )
    assert first["bank"]["account"] == "DE89370400440532013000"


def test_ssns_are_from_the_never_issued_9xx_area_and_unique() -> None:
    ssns = [c["ssn"] for c in synthetic_customers()]
    assert len(set(ssns)) == len(ssns)
    for ssn in ssns:
        match = re.fullmatch(r"(9\d\d)-(\d\d)-(\d{4})", ssn)
        assert match, ssn
        assert match.group(2) != "00" and match.group(3) != "0000", ssn


def test_ibans_have_valid_check_digits() -> None:
    accounts = [c["bank"]["account"] for c in synthetic_customers()]
    assert len(set(accounts)) == len(accounts)
    assert {a[:2] for a in accounts} >= {"DE", "GB"}
    for account in accounts:
        assert _mod97(account) == 1, account
        assert stdnum_iban.is_valid(account), account
        broken = account[:-1] + str((int(account[-1], 36) + 1) % 10)
        assert _mod97(broken) != 1  # the check catches a changed digit


def test_iban_check_digits_of_published_examples() -> None:
    assert iban_check_digits("DE", "370400440532013000") == "89"
    assert iban_check_digits("GB", "NWBK60161331926819") == "29"
    assert iban_check_digits("FR", "20041010050500013M02606") == "14"


def test_phones_are_in_the_fiction_range_and_passports_are_made_up() -> None:
    for customer in synthetic_customers():
        assert re.fullmatch(r"\+1\d{3}5550(1\d\d)", customer["phone"]), customer["phone"]
        assert re.fullmatch(r"[A-Z]\d{7,8}", customer["passport_number"])
        address = customer["address"]
        assert address["street"] and address["city"] and re.fullmatch(r"\d{5}", address["zip"])


async def test_the_customer_api_serves_them() -> None:
    transport = httpx.ASGITransport(app=create_customers_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        listed = (await client.get("/customers")).json()["customers"]
        one = (await client.get("/customers/250")).json()
    assert len(listed) == DEFAULT_COUNT
    assert one == synthetic_customers()[249]
