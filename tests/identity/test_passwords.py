from __future__ import annotations

import argon2
import pytest

from piigate.crypto.secret import Secret
from piigate.identity import passwords
from piigate.identity.passwords import (
    dummy_hash,
    hash_password,
    needs_rehash,
    verify_password,
    verify_password_or_dummy,
)
from stepup_support import password_checks


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(Secret("correct horse battery staple"))


def test_round_trip(stored: str) -> None:
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(stored, Secret("correct horse battery staple"))


def test_wrong_password_is_false_not_an_exception(stored: str) -> None:
    assert verify_password(stored, Secret("correct horse battery stapler")) is False
    assert verify_password(stored, Secret("")) is False


@pytest.mark.parametrize("broken", ["", "plain", "$argon2id$v=19$m=65536,t=3,p=4$!!$!!"])
def test_unparsable_hash_is_false(broken: str) -> None:
    assert verify_password(broken, Secret("x")) is False
    assert needs_rehash(broken) is True


def test_salted(stored: str) -> None:
    assert hash_password(Secret("correct horse battery staple")) != stored


def test_unicode_is_normalized() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert verify_password(hash_password(Secret(composed)), Secret(decomposed))


def test_needs_rehash_when_parameters_change(stored: str) -> None:
    assert needs_rehash(stored) is False
    weaker = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    old = weaker.hash("correct horse battery staple")
    assert needs_rehash(old) is True
    # ...and the old hash still verifies, so the login path can upgrade it.
    assert verify_password(old, Secret("correct horse battery staple"))


def test_dummy_hash_is_lazy_cached_and_current() -> None:
    assert dummy_hash() is dummy_hash()
    assert dummy_hash() == passwords.DUMMY_HASH
    assert not needs_rehash(dummy_hash())
    with pytest.raises(AttributeError):
        getattr(passwords, "NOT_THERE")  # noqa: B009


def test_unknown_user_costs_one_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = password_checks(monkeypatch, passwords)
    assert verify_password_or_dummy(None, Secret("anything")) is False
    assert calls == [dummy_hash()]


def test_secret_never_in_repr() -> None:
    password = Secret("hunter2")
    assert "hunter2" not in repr(password)
    assert "hunter2" not in str(password)
    assert "hunter2" not in hash_password(password)
