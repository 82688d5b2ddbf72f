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
    recovery_code_tag,
    spend_recovery_code,
)
from stepup_support import password_checks

FORMAT = re.compile(r"[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}")


@pytest.fixture(scope="module")
def codes() -> list[Secret[str]]:
    return generate_recovery_codes(4)


@pytest.fixture(scope="module")
def hashes(codes: list[Secret[str]]) -> list[str]:
    return [hash_recovery_code(c) for c in codes]


@pytest.fixture(scope="module")
def tags(codes: list[Secret[str]]) -> list[str]:
    return [recovery_code_tag(c) for c in codes]


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hashes argon2 verifies, in order (a dummy one is none of the stored ones)."""
    from piigate.factors.recovery import protocol as recovery

    return password_checks(monkeypatch, recovery)


def sharing_tag(tag: str, taken: list[Secret[str]]) -> Secret[str]:
    """Another code whose tag is ``tag`` (16 bits: found in ~65 000 tries)."""
    while True:
        code = generate_recovery_codes(1)[0]
        if recovery_code_tag(code) == tag and code.reveal() not in {c.reveal() for c in taken}:
            return code


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
    codes: list[Secret[str]], hashes: list[str], verified: list[str]
) -> None:
    stored: list[str | None] = [*hashes]
    stored[3] = None
    assert match_recovery_code(codes[0], stored) == 0
    # One verification per entry, the spent one against the dummy hash: no early exit.
    assert len(verified) == 4
    assert verified[:3] == hashes[:3] and verified[3] not in hashes


def test_a_tag_is_sixteen_bits_of_the_canonical_form(codes: list[Secret[str]]) -> None:
    tag = recovery_code_tag(codes[0])
    assert len(tag) == 4 and int(tag, 16) < 2**16
    typed = codes[0].reveal().upper().replace("-", " ").replace("0", "O")
    assert recovery_code_tag(Secret(typed)) == tag  # what matching forgives, the tag does too
    assert tag not in codes[0].reveal().replace("-", "")
    with pytest.raises(ValueError):
        recovery_code_tag(Secret("not a code"))


def test_with_tags_one_verification_an_attempt(
    codes: list[Secret[str]], hashes: list[str], tags: list[str], verified: list[str]
) -> None:
    """The right code: its own hash only. A wrong one: one dummy verification, the same work."""
    assert match_recovery_code(codes[2], hashes, tags) == 2
    assert verified == [hashes[2]]
    verified.clear()
    wrong = next(c for c in generate_recovery_codes(50) if recovery_code_tag(c) not in tags)
    assert match_recovery_code(wrong, hashes, tags) is None
    assert len(verified) == 1 and verified[0] not in hashes


def test_with_tags_a_wrong_code_sharing_a_tag_is_still_refused(
    codes: list[Secret[str]], hashes: list[str], tags: list[str], verified: list[str]
) -> None:
    impostor = sharing_tag(tags[1], codes)
    assert match_recovery_code(impostor, hashes, tags) is None
    assert verified == [hashes[1]]  # the one candidate, checked by argon2 and refused


def test_with_tags_every_candidate_is_checked(
    codes: list[Secret[str]], hashes: list[str], tags: list[str], verified: list[str]
) -> None:
    """Two codes of a set that share a tag: both verified (no early exit), the right one found;
    a spent one among the candidates costs the dummy verification."""
    twin = sharing_tag(tags[0], codes)
    stored: list[str | None] = [*hashes, hash_recovery_code(twin)]
    with_twin = [*tags, tags[0]]
    assert match_recovery_code(twin, stored, with_twin) == 4
    assert verified == [hashes[0], stored[4]]
    verified.clear()
    spent = spend_recovery_code(stored, 0)
    assert match_recovery_code(codes[0], spent, with_twin) is None
    assert len(verified) == 2 and verified[0] not in stored and verified[1] == stored[4]


def test_tags_that_do_not_line_up_fall_back_to_every_hash(
    codes: list[Secret[str]], hashes: list[str], tags: list[str], verified: list[str]
) -> None:
    """A set stored without tags, or with a list that does not match its hashes, is checked
    hash by hash: never a code refused because of its tags."""
    assert match_recovery_code(codes[3], hashes, None) == 3
    assert verified == hashes
    verified.clear()
    assert match_recovery_code(codes[3], hashes, tags[:2]) == 3
    assert verified == hashes
