"""The deployment's keyring in the store, sealed by the master key: created on first start, one
set for every node, rotations seen by the others without a restart, a file keyring of an earlier
version moved in, and a wrong or missing master key refused in one clear line."""

from __future__ import annotations

import base64
import json
import stat
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from joserfc import jwt

from piigate.clock import FixedClock
from piigate.crypto.keyfile import encode_key_file
from piigate.crypto.keyring import (
    DecryptionError,
    Keyring,
    KeyringError,
    OpenedKeyring,
    UnknownKey,
    open_keyring,
)
from piigate.crypto.keyset import entry_of, fresh_key_set
from piigate.crypto.keystore import KeySource, MemoryKeySource, StoredKey
from piigate.crypto.masterkey import MasterKey, MasterKeySpec
from piigate.crypto.secret import Secret
from piigate.store import Database, Store

AAD = b"factor:fct_1"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def b64key(byte: int) -> str:
    return base64.b64encode(bytes([byte]) * 32).decode()


def spec(tmp_path: Path, value: str | None = None, *, node: str = "a") -> MasterKeySpec:
    """A node's master key: ``value`` (as PIIGATE_MASTER_KEY), else its data dir's file."""
    return MasterKeySpec(
        default_file=tmp_path / node / "master.key",
        value=Secret(value) if value is not None else None,
    )


async def opened(
    source: KeySource, master: MasterKeySpec, legacy: Path | None = None
) -> OpenedKeyring:
    return await open_keyring(source, master, legacy_dir=legacy, clock=FixedClock(T0))


class CountingSource(MemoryKeySource):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    async def keyring_keys(self) -> list[StoredKey]:
        self.loads += 1
        return list(await super().keyring_keys())


# -- the master key ---------------------------------------------------------------------------


def test_first_start_creates_the_default_master_key_file_0600(tmp_path: Path) -> None:
    master = spec(tmp_path).load(create=True)
    path = tmp_path / "a" / "master.key"
    assert master is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text().strip(), validate=True)) == 32
    again = spec(tmp_path).load(create=False)
    assert again is not None and again.kek_id == master.kek_id
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temporary left


@pytest.mark.parametrize(
    "text", ["", "not base64!", base64.b64encode(b"short").decode(), b64key(1)[:-4]]
)
def test_a_master_key_that_is_not_32_bytes_of_base64_is_one_clear_error(text: str) -> None:
    with pytest.raises(KeyringError) as info:
        MasterKey.parse(text, source="PIIGATE_MASTER_KEY")
    assert str(info.value).startswith("PIIGATE_MASTER_KEY is not a master key: expected the base64")
    assert text not in str(info.value) or not text


def test_a_configured_master_key_file_must_exist(tmp_path: Path) -> None:
    missing = MasterKeySpec(default_file=tmp_path / "master.key", file=tmp_path / "nope.key")
    with pytest.raises(KeyringError, match=r"master key file .*nope.key does not exist"):
        missing.load(create=True)
    assert not (tmp_path / "master.key").exists()


def test_the_master_key_id_names_it_without_revealing_it() -> None:
    master = MasterKey.parse(b64key(7), source="test")
    assert master.kek_id.startswith("mk-") and len(master.kek_id) == 19
    assert b64key(7) not in repr(master) and (bytes([7]) * 32).hex() not in repr(master)
    assert master.kek_id != MasterKey.parse(b64key(8), source="test").kek_id


# -- one keyring for the deployment -----------------------------------------------------------


async def test_nodes_with_the_same_master_key_share_one_keyring(
    db: Database, tmp_path: Path
) -> None:
    store = Store(db)
    first = await opened(store, spec(tmp_path, b64key(1), node="a"))
    second = await opened(store, spec(tmp_path, b64key(1), node="b"))

    a, b = first.keyring, second.keyring
    assert first.created and not second.created
    assert (a.signing_kid, a.data_kid) == (b.signing_kid, b.data_kid)
    assert b.decrypt(a.encrypt(b"JBSWY3DPEHPK3PXP", aad=AAD), aad=AAD) == b"JBSWY3DPEHPK3PXP"
    token = jwt.encode({"alg": "ES256", "kid": a.signing_kid}, {"sub": "x"}, a.sign_key())
    key = b.verify_key(a.signing_kid)
    assert key is not None and jwt.decode(token, key).claims == {"sub": "x"}
    # Only sealed keys in the store: no key material, and the master key nowhere.
    stored = " ".join(f"{r.kid} {r.kek_id} {r.sealed}" for r in await store.keyring_keys())
    state = vars(a)["_state"]
    for info in a.list_keys():
        entry = entry_of(state.get(info.kid))
        assert (entry.get("key") or entry["jwk"]["d"]) not in stored
    assert b64key(1) not in stored


async def test_a_rotation_on_one_node_is_learned_by_another(db: Database, tmp_path: Path) -> None:
    store = Store(db)
    a = (await opened(store, spec(tmp_path, b64key(1), node="a"))).keyring
    b = (await opened(store, spec(tmp_path, b64key(1), node="b"))).keyring

    signing, data = await a.rotate_signing_key(), await a.rotate_data_key()

    assert b.verify_key(signing) is None  # not yet: b has not met the kid
    sealed = a.encrypt(b"after rotation", aad=AAD)
    assert await b.adecrypt(sealed, aad=AAD) == b"after rotation"  # learned on the unknown kid
    assert b.verify_key(signing) is not None and (b.signing_kid, b.data_kid) == (signing, data)


async def test_unknown_kids_reload_the_store_at_a_bounded_rate(tmp_path: Path) -> None:
    source = CountingSource()
    ring = (await opened(source, spec(tmp_path, b64key(1)))).keyring
    ring._reload_interval = 3600  # one reload for the whole test
    loads = source.loads

    for n in range(200):
        assert not await ring.learn(f"sig-forged{n}")
    with pytest.raises(UnknownKey):
        await ring.adecrypt(f"v1.dek-forged.{'A' * 40}", aad=AAD)

    assert source.loads == loads + 1


async def test_a_store_without_keys_is_given_them_once(tmp_path: Path) -> None:
    source = MemoryKeySource()
    first = await opened(source, spec(tmp_path))
    again = await opened(source, spec(tmp_path))
    assert len(first.created) == 2 and again.created == () and len(source.rows) == 2
    assert {row.kind for row in source.rows} == {"signing", "data"}
    assert again.keyring.data_kid == first.keyring.data_kid


# -- refusing to start ------------------------------------------------------------------------


async def test_a_wrong_master_key_is_refused_in_one_line_without_key_material(
    tmp_path: Path,
) -> None:
    source = MemoryKeySource()
    right = await opened(source, spec(tmp_path, b64key(1)))
    rows = list(source.rows)

    with pytest.raises(KeyringError) as info:
        await opened(source, spec(tmp_path, b64key(2)))

    message = str(info.value)
    assert "\n" not in message and info.value.__cause__ is None
    right_id = MasterKey.parse(b64key(1), source="x").kek_id
    wrong_id = MasterKey.parse(b64key(2), source="x").kek_id
    assert f"sealed by master key {right_id}, not by this node's ({wrong_id}" in message
    assert "PIIGATE_MASTER_KEY" in message
    assert b64key(1) not in message and b64key(2) not in message
    assert source.rows == rows  # nothing written
    assert right.keyring.data_kid not in message


async def test_a_node_without_a_master_key_is_refused_when_the_store_has_keys(
    tmp_path: Path,
) -> None:
    source = MemoryKeySource()
    await opened(source, spec(tmp_path, node="first"))
    with pytest.raises(KeyringError) as info:
        await opened(source, spec(tmp_path, node="second"))
    assert "the store holds keys but this node has no master key" in str(info.value)
    assert not (tmp_path / "second" / "master.key").exists()  # no stray key made


async def test_a_damaged_row_is_refused_naming_the_key(tmp_path: Path) -> None:
    source = MemoryKeySource()
    ring = (await opened(source, spec(tmp_path, b64key(1)))).keyring
    row = source.rows[0]
    source.rows[0] = replace(row, sealed=row.sealed[:-6] + "AAAAAA")
    with pytest.raises(KeyringError, match=f"the store's key {row.kid} cannot be opened"):
        await opened(source, spec(tmp_path, b64key(1)))
    # At run time the keys in memory stay in use and /readyz is told why.
    await ring.refresh()
    assert ring.problem is not None and row.kid in ring.problem
    assert ring.decrypt(ring.encrypt(b"still", aad=AAD), aad=AAD) == b"still"
    source.rows[0] = row
    await ring.refresh()
    assert ring.problem is None


async def test_a_row_moved_onto_another_kid_does_not_open(tmp_path: Path) -> None:
    source = MemoryKeySource()
    await opened(source, spec(tmp_path, b64key(1)))
    signing, data = source.rows
    source.rows[1] = replace(data, sealed=signing.sealed)
    with pytest.raises(KeyringError, match=f"the store's key {data.kid} cannot be opened"):
        await opened(source, spec(tmp_path, b64key(1)))


# -- the file keyring of an earlier version ---------------------------------------------------


def legacy_keyring(directory: Path) -> Keyring:
    """A node's ``DATA_DIR/keyring/keyring.json``, as earlier versions wrote it."""
    state = fresh_key_set(T0)
    directory.mkdir(parents=True)
    (directory / "keyring.json").write_bytes(encode_key_file(state))
    return Keyring(state)


async def test_an_existing_file_keyring_moves_into_the_store_and_stays_current(
    db: Database, tmp_path: Path
) -> None:
    legacy = legacy_keyring(tmp_path / "a" / "keyring")
    secret = legacy.encrypt(b"JBSWY3DPEHPK3PXP", aad=AAD)  # a factor secret of the old node
    store = Store(db)

    first = await opened(store, spec(tmp_path), legacy=tmp_path / "a" / "keyring")

    assert first.created == ()
    assert set(first.imported) == {legacy.signing_kid, legacy.data_kid}
    ring = first.keyring
    assert (ring.signing_kid, ring.data_kid) == (legacy.signing_kid, legacy.data_kid)
    assert ring.decrypt(secret, aad=AAD) == b"JBSWY3DPEHPK3PXP"
    # Once: the next start finds the keys in the store.
    again = await opened(store, spec(tmp_path), legacy=tmp_path / "a" / "keyring")
    assert again.imported == () and len(await store.keyring_keys()) == 2


async def test_another_nodes_file_keyring_joins_as_readable_never_current(
    tmp_path: Path,
) -> None:
    source = MemoryKeySource()
    shared = spec(tmp_path, b64key(1))
    a = (await opened(source, shared)).keyring
    b_legacy = legacy_keyring(tmp_path / "b" / "keyring")
    b_secret = b_legacy.encrypt(b"sealed by node b", aad=AAD)

    b = await opened(source, shared, legacy=tmp_path / "b" / "keyring")

    assert set(b.imported) == {b_legacy.signing_kid, b_legacy.data_kid}
    assert (b.keyring.signing_kid, b.keyring.data_kid) == (a.signing_kid, a.data_kid)
    assert await a.adecrypt(b_secret, aad=AAD) == b"sealed by node b"


async def test_a_corrupt_file_keyring_is_refused_without_its_content(tmp_path: Path) -> None:
    legacy = tmp_path / "keyring"
    legacy.mkdir()
    material = base64.urlsafe_b64encode(b"k" * 32).decode()
    (legacy / "keyring.json").write_text(json.dumps({"version": 1, "data": {"key": material}}))
    with pytest.raises(KeyringError) as info:
        await opened(MemoryKeySource(), spec(tmp_path), legacy=legacy)
    assert "corrupt" in str(info.value) and material not in str(info.value)


async def test_ciphertexts_under_an_unknown_key_stay_vague(tmp_path: Path) -> None:
    ring = (await opened(MemoryKeySource(), spec(tmp_path))).keyring
    with pytest.raises(DecryptionError) as info:
        await ring.adecrypt(Keyring.ephemeral().encrypt(b"x", aad=AAD), aad=AAD)
    assert str(info.value) == "decryption failed"
