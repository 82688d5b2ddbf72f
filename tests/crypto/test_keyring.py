from __future__ import annotations

import base64
import json
import multiprocessing
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws

import piigate.crypto
from piigate.clock import FixedClock
from piigate.crypto import keyring as keyring_module
from piigate.crypto.keyring import DecryptionError, Keyring, KeyringError

AAD = b"factor:f-1:secret"


@pytest.fixture
def ring_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "keys"


@pytest.fixture(scope="module")
def shared_ring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.open(tmp_path_factory.mktemp("shared") / "keys")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _file(directory: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((directory / "keyring.json").read_text())
    return doc


def _secret_strings(directory: Path) -> list[str]:
    """Every piece of key material in the file, in the encodings it could leak as."""
    doc = _file(directory)
    found: list[str] = []
    for item in doc["data"]["keys"]:
        raw = base64.urlsafe_b64decode(item["key"] + "==")
        found += [item["key"], raw.hex(), repr(raw)[2:-1]]
    for item in doc["signing"]["keys"]:
        found.append(item["jwk"]["d"])
    return found


# -- first start and reload ------------------------------------------------------------------------


def test_first_open_generates_keys_with_tight_permissions(ring_dir: Path) -> None:
    clock = FixedClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    ring = Keyring.open(ring_dir, clock=clock)

    assert ring.signing_kid.startswith("sig-")
    assert ring.data_kid.startswith("dek-")
    assert _mode(ring_dir) == 0o700
    assert _mode(ring_dir / "keyring.json") == 0o600
    assert _mode(ring_dir / "keyring.lock") == 0o600
    assert [p.name for p in ring_dir.iterdir() if p.name.endswith(".tmp")] == []
    assert {(k.kind, k.current, k.created_at) for k in ring.list_keys()} == {
        ("signing", True, clock.now()),
        ("data", True, clock.now()),
    }
    doc = _file(ring_dir)
    assert doc["signing"]["current"] == ring.signing_kid
    assert doc["data"]["current"] == ring.data_kid


def test_reopen_loads_the_same_keys(ring_dir: Path) -> None:
    first = Keyring.open(ring_dir)
    token = first.encrypt(b"secret", aad=AAD)
    signed = jws.serialize_compact({"alg": "ES256"}, b"payload", first.sign_key())

    second = Keyring.open(ring_dir)

    assert (second.signing_kid, second.data_kid) == (first.signing_kid, first.data_kid)
    assert second.jwks() == first.jwks()
    assert second.decrypt(token, aad=AAD) == b"secret"
    public = second.verify_key(first.signing_kid)
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


# -- rotation --------------------------------------------------------------------------------------


def test_rotate_signing_key_keeps_the_old_one_for_verification(ring_dir: Path) -> None:
    ring = Keyring.open(ring_dir)
    old = ring.signing_kid
    signed = jws.serialize_compact({"alg": "ES256", "kid": old}, b"x", ring.sign_key())

    new = ring.rotate_signing_key()

    assert new == ring.signing_kid != old
    assert [k["kid"] for k in ring.jwks()["keys"]] == [new, old]  # current first
    old_key = ring.verify_key(old)
    assert old_key is not None
    assert jws.deserialize_compact(signed, old_key, algorithms=["ES256"]).payload == b"x"
    reopened = Keyring.open(ring_dir)
    assert reopened.signing_kid == new
    assert reopened.verify_key(old) is not None


def test_rotate_data_key_keeps_old_ciphertexts_readable_and_rewrap_moves_them(
    ring_dir: Path,
) -> None:
    ring = Keyring.open(ring_dir)
    old_kid = ring.data_kid
    old_token = ring.encrypt(b"JBSWY3DPEHPK3PXP", aad=AAD)

    new_kid = ring.rotate_data_key()

    assert new_kid == ring.data_kid != old_kid
    assert ring.decrypt(old_token, aad=AAD) == b"JBSWY3DPEHPK3PXP"
    assert ring.encrypt(b"x", aad=AAD).split(".")[1] == new_kid
    rewrapped = ring.rewrap(old_token, aad=AAD)
    assert rewrapped.split(".")[1] == new_kid
    reopened = Keyring.open(ring_dir)
    assert reopened.decrypt(rewrapped, aad=AAD) == b"JBSWY3DPEHPK3PXP"
    assert reopened.decrypt(old_token, aad=AAD) == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(DecryptionError):
        ring.rewrap(old_token, aad=b"other")


def test_rotation_in_a_stale_instance_keeps_keys_added_elsewhere(ring_dir: Path) -> None:
    a = Keyring.open(ring_dir)
    b = Keyring.open(ring_dir)
    from_a = a.rotate_data_key()
    from_b = b.rotate_data_key()  # b never saw from_a: it must re-read the file first

    final = Keyring.open(ring_dir)
    token = a.encrypt(b"made with a", aad=AAD)
    assert final.data_kid == from_b
    assert final.decrypt(token, aad=AAD) == b"made with a"
    assert {k.kid for k in final.list_keys()} >= {from_a, from_b}


def test_refresh_picks_up_keys_from_another_instance(ring_dir: Path) -> None:
    a = Keyring.open(ring_dir)
    b = Keyring.open(ring_dir)
    new = b.rotate_signing_key()
    assert a.verify_key(new) is None
    a.refresh()
    assert a.signing_kid == new
    assert a.verify_key(new) is not None


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


def test_token_from_another_keyring_is_rejected(shared_ring: Keyring, ring_dir: Path) -> None:
    foreign = Keyring.open(ring_dir)
    with pytest.raises(DecryptionError):
        shared_ring.decrypt(foreign.encrypt(b"secret", aad=AAD), aad=AAD)


def test_kid_swapped_to_another_known_key_is_rejected(ring_dir: Path) -> None:
    ring = Keyring.open(ring_dir)
    old_kid = ring.data_kid
    ring.rotate_data_key()
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


# -- no key material in reprs or errors ------------------------------------------------------------


def test_reprs_carry_no_key_material(ring_dir: Path) -> None:
    ring = Keyring.open(ring_dir)
    ring.rotate_data_key()
    ring.rotate_signing_key()
    shown = " ".join(
        [repr(ring), str(ring), repr(vars(ring)), repr(ring.list_keys()), repr(ring.sign_key())]
    )
    for secret in _secret_strings(ring_dir):
        assert secret not in shown
    assert ring.signing_kid in repr(ring)


def _corrupt(doc: dict[str, Any], how: str) -> bytes:
    if how == "truncated":
        return json.dumps(doc).encode()[:-40]
    if how == "version":
        doc["version"] = 99
    elif how == "short data key":
        doc["data"]["keys"][0]["key"] = doc["data"]["keys"][0]["key"][:20]
    elif how == "bad jwk":
        doc["signing"]["keys"][0]["jwk"]["crv"] = "P-999"
    elif how == "public jwk only":
        del doc["signing"]["keys"][0]["jwk"]["d"]
    elif how == "missing current":
        doc["data"]["current"] = "dek-gone"
    elif how == "bad date":
        doc["data"]["keys"][0]["created_at"] = doc["data"]["keys"][0]["key"]
    elif how == "list":
        return b"[]"
    elif how == "binary":
        return b"\xff\xfe\x00garbage"
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "version",
        "short data key",
        "bad jwk",
        "public jwk only",
        "missing current",
        "bad date",
        "list",
        "binary",
    ],
)
def test_corrupt_file_raises_keyring_error_without_key_material(ring_dir: Path, how: str) -> None:
    Keyring.open(ring_dir)
    secrets = _secret_strings(ring_dir)
    (ring_dir / "keyring.json").write_bytes(_corrupt(_file(ring_dir), how))

    with pytest.raises(KeyringError) as info:
        Keyring.open(ring_dir)

    assert "corrupt" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    for secret in secrets:
        assert secret not in str(info.value)


def test_unwritable_location_raises_keyring_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(KeyringError):
        Keyring.open(blocker / "keys")


# -- concurrency -----------------------------------------------------------------------------------


def _open_in_child(directory: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    ring = Keyring.open(Path(directory))
    results.put((ring.signing_kid, ring.data_kid, json.dumps(ring.jwks(), sort_keys=True)))


def test_concurrent_first_open_from_several_processes_agrees(ring_dir: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = 4
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_open_in_child, args=(str(ring_dir), barrier, results))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    seen = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0

    assert len(set(seen)) == 1
    ring = Keyring.open(ring_dir)
    assert (ring.signing_kid, ring.data_kid) == seen[0][:2]


# -- public API ------------------------------------------------------------------------------------


def test_public_api() -> None:
    for module in (keyring_module, piigate.crypto):
        for name in module.__all__:
            assert hasattr(module, name), name
    assert {"Keyring", "KeyringError", "DecryptionError"} <= set(piigate.crypto.__all__)
