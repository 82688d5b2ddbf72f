"""Synthetic customers for the demo: a few hundred records, the same on every run, every value
made up and of a kind that cannot belong to anyone.

- SSNs in the 900-999 area, which the Social Security Administration never issues;
- passport numbers of one letter and eight digits, drawn at random (no check digit exists);
- IBANs (German and British) with valid ISO 13616 check digits (mod 97), over made-up bank
  codes and account numbers;
- US phone numbers in the 555-0100 to 555-0199 range, reserved for fiction;
- street addresses from lists of common names.

Pure: the records come from a seeded :class:`random.Random`, so the same ``count`` and ``seed``
give the same customers, and the first records (ids 1 to 3) are those the walkthroughs and tests
name.
"""

from __future__ import annotations

import random
import string
from typing import Any, Final

__all__ = ["DEFAULT_COUNT", "DEFAULT_SEED", "iban_check_digits", "synthetic_customers"]

DEFAULT_COUNT: Final = 300
DEFAULT_SEED: Final = 15

# The records the README and the tests name (ids 1 to 3), kept as they are.
_NAMED: Final = (
    ("1", "Ada Example", "900-12-3456", "X1234567", "DE89370400440532013000", "+14155550101"),
    ("2", "Ben Sample", "900-65-4321", "Y7654321", "GB29NWBK60161331926819", "+14155550102"),
    ("3", "Cy Fiction", "900-11-2222", "Z1112223", "FR1420041010050500013M02606", "+14155550103"),
)
_FIRST: Final = (
    "Ada", "Ben", "Cora", "Dev", "Elif", "Finn", "Gia", "Hugo", "Ines", "Jon", "Kai", "Lena",
    "Milo", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tess", "Uma", "Vik", "Wren", "Yara",
)  # fmt: skip
_LAST: Final = (
    "Example", "Sample", "Fiction", "Placeholder", "Dummy", "Mockridge", "Testa", "Demoulin",
    "Fakir", "Stubbs", "Proto", "Tryon", "Draft", "Specimen", "Pretend", "Notreal",
)  # fmt: skip
_STREETS: Final = (
    "Elm Street", "Oak Avenue", "Pine Road", "Maple Lane", "Cedar Court", "Birch Way",
    "Willow Drive", "Aspen Place", "Juniper Row", "Hazel Terrace",
)  # fmt: skip
_CITIES: Final = ("Springfield", "Riverton", "Lakeside", "Fairview", "Greenville", "Kingston")
# US area codes; within each, 555-0100 to 555-0199 are for fiction.
_AREA_CODES: Final = ("202", "212", "312", "415", "503", "617", "702", "808")
_TIERS: Final = ("standard", "standard", "standard", "silver", "gold")
_BANKS: Final = ("Demo Bank", "Example Savings", "Sample Credit Union")


def synthetic_customers(
    count: int = DEFAULT_COUNT, *, seed: int = DEFAULT_SEED
) -> list[dict[str, Any]]:
    """``count`` customers (at least the three named ones), ids ``"1"`` … ``str(count)``."""
    rng = random.Random(seed)  # noqa: S311 - reproducible made-up data, not secrets
    ssns = {named[2] for named in _NAMED}
    customers = [_named(*named) for named in _NAMED]
    for number in range(len(_NAMED) + 1, count + 1):
        ssn = _ssn(rng)
        while ssn in ssns:  # unique: the demo database declares the column UNIQUE
            ssn = _ssn(rng)
        ssns.add(ssn)
        customers.append(
            {
                "id": str(number),
                "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                "ssn": ssn,
                "passport_number": rng.choice(string.ascii_uppercase)
                + f"{rng.randrange(10**8):08d}",
                "bank": {"account": _iban(rng), "bank_name": rng.choice(_BANKS)},
                "phone": f"+1{rng.choice(_AREA_CODES)}5550{rng.randrange(100, 200)}",
                "address": {
                    "street": f"{rng.randrange(1, 400)} {rng.choice(_STREETS)}",
                    "city": rng.choice(_CITIES),
                    "zip": f"{rng.randrange(10000, 99999):05d}",
                },
                "tier": rng.choice(_TIERS),
            }
        )
    return customers


def iban_check_digits(country: str, bban: str) -> str:
    """ISO 13616 / ISO 7064 MOD 97-10: the two check digits of ``country`` + ``bban``."""
    rearranged = f"{bban}{country}00"
    digits = "".join(str(int(c, 36)) for c in rearranged.upper())
    return f"{98 - int(digits) % 97:02d}"


def _named(
    cid: str, name: str, ssn: str, passport: str, account: str, phone: str
) -> dict[str, Any]:
    return {
        "id": cid,
        "name": name,
        "ssn": ssn,
        "passport_number": passport,
        "bank": {"account": account, "bank_name": "Demo Bank"},
        "phone": phone,
        "address": {"street": f"{cid} Example Street", "city": "Springfield", "zip": "00000"},
        "tier": "gold" if cid == "1" else "standard",
    }


def _ssn(rng: random.Random) -> str:
    return f"{rng.randrange(900, 1000)}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


def _iban(rng: random.Random) -> str:
    if rng.random() < 0.5:
        country = "DE"  # bank code (8 digits), account (10 digits)
        bban = f"{rng.randrange(10**8):08d}{rng.randrange(10**10):010d}"
    else:
        country = "GB"  # bank (4 letters), sort code (6 digits), account (8 digits)
        bank = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
        bban = f"{bank}{rng.randrange(10**6):06d}{rng.randrange(10**8):08d}"
    return f"{country}{iban_check_digits(country, bban)}{bban}"
