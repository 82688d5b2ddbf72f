"""``risk/devices.py``: device ids, the signed cookie value, and the ids clients name."""

from __future__ import annotations

import secrets

from hypothesis import given
from hypothesis import strategies as st

from piigate.risk.devices import (
    MAX_DEVICE_ID,
    client_device_id,
    is_minted,
    new_device_id,
    read_signed,
    sign_device,
    verify_signed,
)

KEY = secrets.token_bytes(32)
KID = "dek-0123456789abcdef"


def test_new_ids_are_random_and_of_piigate_shape() -> None:
    ids = {new_device_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_minted(i) and i.startswith("dev_") and len(i) == 26 for i in ids)


def test_a_signed_value_round_trips() -> None:
    device = new_device_id()
    value = sign_device(device, key=KEY, kid=KID)
    signed = read_signed(value)
    assert signed is not None and signed.kid == KID
    assert verify_signed(signed, key=KEY) == device
    # Deterministic: the same id under the same key is the same cookie value.
    assert sign_device(device, key=KEY, kid=KID) == value


def test_a_forged_or_altered_value_is_refused() -> None:
    device, other = new_device_id(), new_device_id()
    value = sign_device(device, key=KEY, kid=KID)
    _, kid, mac = value.split(".")
    # Another id under the first id's MAC.
    swapped = read_signed(f"{other}.{kid}.{mac}")
    assert swapped is not None and verify_signed(swapped, key=KEY) is None
    # Another kid: the kid is part of what is signed.
    moved = read_signed(f"{device}.dek-ffffffffffffffff.{mac}")
    assert moved is not None and verify_signed(moved, key=KEY) is None
    # A MAC made with another key.
    forged = read_signed(sign_device(device, key=secrets.token_bytes(32), kid=KID))
    assert forged is not None and verify_signed(forged, key=KEY) is None
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    altered = read_signed(f"{device}.{kid}.{flipped}")
    assert altered is not None and verify_signed(altered, key=KEY) is None


def test_only_piigate_ids_are_signed() -> None:
    try:
        sign_device("my-phone", key=KEY, kid=KID)
    except ValueError:
        pass
    else:
        raise AssertionError("a client's id was signed")


def test_what_is_not_the_cookie_shape_is_not_read_as_one() -> None:
    device = new_device_id()
    value = sign_device(device, key=KEY, kid=KID)
    for text in ("", device, value + "x", value[:-1], f"{value}.more", "a.b.c", " " + value):
        assert read_signed(text) is None, text


def test_client_ids() -> None:
    assert client_device_id("d-9") == "d-9"
    assert client_device_id("iPhone:4F1C-77") == "iPhone:4F1C-77"
    assert client_device_id("x" * MAX_DEVICE_ID) == "x" * MAX_DEVICE_ID
    # Too long, empty, spaces, control characters, non-ASCII: no device.
    for bad in ("x" * (MAX_DEVICE_ID + 1), "", "my phone", "a\tb", "a\nb", "téléphone"):
        assert client_device_id(bad) is None, bad
    # piigate's own ids count only with their signature: nobody claims a browser's id by name.
    assert client_device_id(new_device_id()) is None


@given(st.binary(min_size=16, max_size=64), st.text(max_size=120))
def test_no_text_verifies_without_the_key(key: bytes, text: str) -> None:
    signed = read_signed(text)
    if signed is not None:
        assert verify_signed(signed, key=key) is None or text == sign_device(
            signed.device_id, key=key, kid=signed.kid
        )
