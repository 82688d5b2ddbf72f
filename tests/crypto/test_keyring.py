from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws

import piigate.crypto
from piigate.clock import FixedClock
from piigate.crypto import keyring as keyring_module
from piigate.crypto.keyring import DecryptionError, Keyring, UnknownKey

AAD = b"factor:f-1:secret"


@pytest.fixture(scope="module")
def shared_ring() -> Keyring:
    return Keyring.ephemeral()


# -- keys ------------------------------------------------------------------------------------------


def test_fresh_keys() -> None:
    clock = FixedClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    ring = Keyring.ephemeral(clock=clock)

    assert ring.signing_kid.startswith("sig-")
    assert ring.data_kid.startswith("dek-")
    assert {(k.kind, k.current, k.created_at) for k in ring.list_keys()} == {
        ("signing", True, clock.now()),
        ("data", True, clock.now()),
    }
    signed = jws.serialize_compact({"alg": "ES256"}, b"payload", ring.sign_key())
    public = ring.verify_key(ring.signing_kid)
    assert public is not None
    assert jws.deserialize_compact(signed, public, algorithms=["ES256"]).payload == b"payload"


def test_jwks_holds_public_keys_only(shared_ring: Keyring) -> None:
    (key,) = shared_ring.jwks()["keys"]
    assert key["kid"] == shared_ring.signing_kid
    assert (key["alg"], key["use"], key["kty"], key["crv"]) == ("ES256", "sig", "EC", "P-256")
    assert "d" not in key
    verify = shared_ring.verify_key(shared_ring.signing_kid)
    assert verify is not None and not verify.is_private
    assert shared_ring.sign_key().is_private


def test_unknown_signing_kid_has_no_key(shared_ring: Keyring) -> None:
    assert shared_ring.verify_key("sig-nope") is None


async def test_a_keyring_without_a_store_learns_nothing(shared_ring: Keyring) -> None:
    assert await shared_ring.learn(shared_ring.signing_kid)
    assert not await shared_ring.learn("sig-nope")


# -- rotation --------------------------------------------------------------------------------------


async def test_rotate_signing_key_keeps_the_old_one_for_verification() -> None:
    ring = Keyring.ephemeral()
    old = ring.signing_kid
    signed = jws.serialize_compact({"alg": "ES256", "kid": old}, b"x", ring.sign_key())

    new = await ring.rotate_signing_key()

    assert new == ring.signing_kid != old
    assert [k["kid"] for k in ring.jwks()["keys"]] == [new, old]  # current first
    old_key = ring.verify_key(old)
    assert old_key is not None
    assert jws.deserialize_compact(signed, old_key, algorithms=["ES256"]).payload == b"x"


async def test_rotate_data_key_keeps_old_ciphertexts_readable_and_rewrap_moves_them() -> None:
    ring = Keyring.ephemeral()
    old_kid = ring.data_kid
    old_token = ring.encrypt(b"JBSWY3DPEHPK3PXP", aad=AAD)

    new_kid = await ring.rotate_data_key()

    assert new_kid == ring.data_kid != old_kid
    assert ring.decrypt(old_token, aad=AAD) == b"JBSWY3DPEHPK3PXP"
    assert ring.encrypt(b"x", aad=AAD).split(".")[1] == new_kid
    rewrapped = ring.rewrap(old_token, aad=AAD)
    assert rewrapped.split(".")[1] == new_kid
    assert ring.decrypt(rewrapped, aad=AAD) == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(DecryptionError):
        ring.rewrap(old_token, aad=b"other")


# -- encryption ------------------------------------------------------------------------------------


@given(plaintext=st.binary(max_size=2048), aad=st.binary(max_size=256))
def test_encrypt_decrypt_round_trip(shared_ring: Keyring, plaintext: bytes, aad: bytes) -> None:
    token = shared_ring.encrypt(plaintext, aad=aad)
    version, kid, _ = token.split(".")
    assert (version, kid) == ("v1", shared_ring.data_kid)
    assert shared_ring.decrypt(token, aad=aad) == plaintext


def test_encryption_uses_fresh_nonces(shared_ring: Keyring) -> None:
    assert shared_ring.encrypt(b"same", aad=AAD) != shared_ring.encrypt(b"same", aad=AAD)


@given(plaintext=st.binary(max_size=64), position=st.integers(min_value=0))
def test_any_flipped_byte_is_rejected(
    shared_ring: Keyring, plaintext: bytes, position: int
) -> None:
    version, kid, body = shared_ring.encrypt(plaintext, aad=AAD).split(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[position % len(raw)] ^= 0x01
    tampered = f"{version}.{kid}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"
    with pytest.raises(DecryptionError):
        shared_ring.decrypt(tampered, aad=AAD)


def test_wrong_aad_is_rejected(shared_ring: Keyring) -> None:
    token = shared_ring.encrypt(b"secret", aad=b"factor:f-1")
    with pytest.raises(DecryptionError):
        shared_ring.decrypt(token, aad=b"factor:f-2")


def test_token_from_another_keyring_is_rejected(shared_ring: Keyring) -> None:
    foreign = Keyring.ephemeral()
    with pytest.raises(UnknownKey) as info:
        shared_ring.decrypt(foreign.encrypt(b"secret", aad=AAD), aad=AAD)
    assert info.value.kid == foreign.data_kid and str(info.value) == "decryption failed"


async def test_kid_swapped_to_another_known_key_is_rejected() -> None:
    ring = Keyring.ephemeral()
    old_kid = ring.data_kid
    await ring.rotate_data_key()
    _, _, body = ring.encrypt(b"secret", aad=AAD).split(".")
    with pytest.raises(DecryptionError):
        ring.decrypt(f"v1.{old_kid}.{body}", aad=AAD)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1.dek-x",
        "v1.a.b.c",
        "v2.{kid}.{body}",
        "v1.dek-unknown.{body}",
        "v1.{kid}.",
        "v1.{kid}.AAAA",
        "v1.{kid}.!!!!{body}",
        "v1.{kid}.{body}=",
        "v1.{kid}.{body}\n",
    ],
)
def test_malformed_tokens_are_rejected_vaguely(shared_ring: Keyring, token: str) -> None:
    _, kid, body = shared_ring.encrypt(b"secret", aad=AAD).split(".")
    with pytest.raises(DecryptionError) as info:
        shared_ring.decrypt(token.format(kid=kid, body=body), aad=AAD)
    assert str(info.value) == "decryption failed"


# -- no key material in reprs ---------------------------------------------------------------------


async def test_reprs_carry_no_key_material() -> None:
    ring = Keyring.ephemeral()
    await ring.rotate_data_key()
    await ring.rotate_signing_key()
    shown = " ".join(
        [repr(ring), str(ring), repr(vars(ring)), repr(ring.list_keys()), repr(ring.sign_key())]
    )
    material = [str(ring.sign_key().as_dict(private=True)["d"])]
    state = vars(ring)["_state"]
    for key in state.data.values():
        raw = key.secret.reveal()
        material += [base64.urlsafe_b64encode(raw).decode().rstrip("="), raw.hex(), repr(raw)[2:-1]]
    for secret in material:
        assert secret not in shown
    assert ring.signing_kid in repr(ring)


# -- public API ------------------------------------------------------------------------------------


def test_public_api() -> None:
    for module in (keyring_module, piigate.crypto):
        for name in module.__all__:
            assert hasattr(module, name), name
    assert {"Keyring", "KeyringError", "DecryptionError"} <= set(piigate.crypto.__all__)
