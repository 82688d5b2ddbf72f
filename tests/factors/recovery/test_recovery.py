from __future__ import annotations

import re

import pytest

from piigate.crypto.secret import Secret
from piigate.factors.recovery.protocol import (
    RECOVERY_ALPHABET,
    generate_recovery_codes,
    hash_recovery_code,
    match_recovery_code,
    normalize_recovery_code,
    spend_recovery_code,
)

FORMAT = re.compile(r"[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}")


@pytest.fixture(scope="module")
def codes() -> list[Secret[str]]:
    return generate_recovery_codes(4)


@pytest.fixture(scope="module")
def hashes(codes: list[Secret[str]]) -> list[str]:
    return [hash_recovery_code(c) for c in codes]


def test_ten_distinct_codes_in_the_documented_format() -> None:
    codes = generate_recovery_codes()
    assert len(codes) == 10
    values = [c.reveal() for c in codes]
    assert len(set(values)) == 10
    for value in values:
        assert FORMAT.fullmatch(value), value
    assert all(repr(c) == "Secret('***')" for c in codes)


def test_at_least_sixty_bits_each() -> None:
    import math

    assert len(set(RECOVERY_ALPHABET)) == len(RECOVERY_ALPHABET) == 32
    assert not set(RECOVERY_ALPHABET) & set("ilou")  # no look-alikes in what we print
    assert 12 * math.log2(len(RECOVERY_ALPHABET)) >= 60


def test_codes_are_random() -> None:
    seen = {c.reveal() for _ in range(20) for c in generate_recovery_codes(5)}
    assert len(seen) == 100
    assert set("".join(seen).replace("-", "")) == set(RECOVERY_ALPHABET)


def test_n_must_be_positive() -> None:
    with pytest.raises(ValueError):
        generate_recovery_codes(0)


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("abcd-efgh-jk01", "abcdefghjk01"),
        ("ABCD EFGH JK01", "abcdefghjk01"),
        ("  abcdefghjk01\n", "abcdefghjk01"),
        ("abcd-efgh-jkOI", "abcdefghjk01"),  # Crockford: O is 0, I and L are 1
        ("abcd-efgh-jkoL", "abcdefghjk01"),
    ],
)
def test_normalisation(typed: str, canonical: str) -> None:
    got = normalize_recovery_code(Secret(typed))
    assert got is not None and got.reveal() == canonical


@pytest.mark.parametrize(
    "typed", ["", "abcd-efgh-jk0", "abcd-efgh-jk012", "abcd-efgh-jku1", "é" * 12]
)
def test_what_cannot_be_a_code(typed: str) -> None:
    assert normalize_recovery_code(Secret(typed)) is None
    with pytest.raises(ValueError):
        hash_recovery_code(Secret(typed))


def test_hash_is_argon2id_of_the_canonical_form(
    codes: list[Secret[str]], hashes: list[str]
) -> None:
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert codes[0].reveal() not in hashes[0]
    assert len(set(hashes)) == len(hashes)


def test_match_finds_the_index(codes: list[Secret[str]], hashes: list[str]) -> None:
    assert match_recovery_code(codes[2], hashes) == 2


def test_match_forgives_case_dashes_and_spaces(codes: list[Secret[str]], hashes: list[str]) -> None:
    typed = codes[1].reveal().upper().replace("-", " ")
    assert match_recovery_code(Secret(typed), hashes) == 1


def test_no_match(hashes: list[str]) -> None:
    assert match_recovery_code(Secret("0000-0000-0000"), hashes) is None
    assert match_recovery_code(Secret("not a code"), hashes) is None
    assert match_recovery_code(Secret("0000-0000-0000"), []) is None


def test_a_spent_code_no_longer_matches(codes: list[Secret[str]], hashes: list[str]) -> None:
    index = match_recovery_code(codes[0], hashes)
    assert index == 0
    spent = spend_recovery_code(hashes, index)
    assert spent[0] is None and spent[1:] == hashes[1:]
    assert match_recovery_code(codes[0], spent) is None
    assert match_recovery_code(codes[3], spent) == 3  # the others still work
    # Dropping the hash instead of blanking it works too.
    assert match_recovery_code(codes[0], hashes[1:]) is None
    with pytest.raises(ValueError):
        spend_recovery_code(spent, 0)
    with pytest.raises(ValueError):
        spend_recovery_code(spent, 10)


def test_match_checks_every_hash(
    codes: list[Secret[str]], hashes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from piigate.factors.recovery import protocol as recovery

    calls: list[str] = []
    real = recovery.verify_password

    def counting(hash: str, password: Secret[str]) -> bool:
        calls.append(hash)
        return real(hash, password)

    monkeypatch.setattr(recovery, "verify_password", counting)
    stored: list[str | None] = [*hashes]
    stored[3] = None
    assert match_recovery_code(codes[0], stored) == 0
    # One verification per entry, the spent one against the dummy hash: no early exit.
    assert len(calls) == 4
    assert calls[:3] == hashes[:3] and calls[3] not in hashes
