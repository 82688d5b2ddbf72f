from __future__ import annotations

import asyncio
import hashlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piigate.identity.apikeys import (
    ApiKeyCache,
    ApiKeyPrincipal,
    api_key_id,
    generate_api_key,
    hash_api_key,
    looks_like_api_key,
)

PRINCIPAL = ApiKeyPrincipal(
    id="key_0123456789ab",
    name="billing",
    roles=frozenset({"service"}),
    scopes=frozenset({"decisions"}),
)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Store:
    """The loader the API layer would plug in: counts its calls."""

    def __init__(self, known: dict[bytes, ApiKeyPrincipal]) -> None:
        self.known = known
        self.calls = 0
        self.delay = 0.0
        self.fail = False

    async def load(self, digest: bytes) -> ApiKeyPrincipal | None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("store down")
        return self.known.get(digest)


def test_generated_key_format() -> None:
    key_id, secret, digest = generate_api_key()
    full = secret.reveal()
    assert key_id.startswith("key_") and len(key_id) == 16
    prefix, id_part, random_part = full.split("_", 2)
    assert prefix == "pgk"
    assert key_id == f"key_{id_part}"
    assert len(random_part) >= 43  # token_urlsafe(32): 256 bits
    assert looks_like_api_key(full)
    assert api_key_id(full) == key_id
    assert digest == hashlib.sha256(full.encode()).digest() == hash_api_key(full)
    assert full not in repr(secret)


def test_keys_are_unique_and_random() -> None:
    keys = {generate_api_key()[1].reveal() for _ in range(200)}
    assert len(keys) == 200
    # Shannon entropy of the random parts, pooled: base64url is 6 bits a character at most.
    text = "".join(k.split("_", 2)[2] for k in keys)
    counts = [text.count(c) for c in set(text)]
    entropy = -sum(n / len(text) * math.log2(n / len(text)) for n in counts)
    assert entropy > 5.8


def test_hash_is_stable() -> None:
    assert hash_api_key("pgk_x") == hash_api_key("pgk_x")
    assert hash_api_key("pgk_x") != hash_api_key("pgk_y")
    assert len(hash_api_key("pgk_x")) == 32


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "pgk_",
        "pgk_0123456789ab_short",
        "pgk_0123456789AB_" + "a" * 43,
        "xyz_0123456789ab_" + "a" * 43,
        "pgk_0123456789ab_" + "a" * 43 + "!",
        "pgk_0123456789ab_" + "a" * 500,
        "eyJhbGciOiJSUzI1NiJ9.e30.sig",
    ],
)
def test_not_api_keys(candidate: str) -> None:
    assert not looks_like_api_key(candidate)
    assert api_key_id(candidate) is None


@given(st.text(max_size=120))
def test_looks_like_api_key_never_raises(text: str) -> None:
    assert looks_like_api_key(text) in (True, False)


async def test_cache_hits_and_ttl_expiry() -> None:
    _, secret, digest = generate_api_key()
    store, clock = Store({digest: PRINCIPAL}), Clock()
    cache = ApiKeyCache(store.load, ttl=30, timer=clock)

    assert await cache.authenticate(secret.reveal()) == PRINCIPAL
    assert await cache.lookup(digest) == PRINCIPAL
    assert store.calls == 1
    clock.t += 29.9
    assert await cache.lookup(digest) == PRINCIPAL
    assert store.calls == 1
    clock.t += 0.2
    assert await cache.lookup(digest) == PRINCIPAL
    assert store.calls == 2


async def test_negative_results_are_cached_briefly() -> None:
    _, _, digest = generate_api_key()
    store, clock = Store({}), Clock()
    cache = ApiKeyCache(store.load, ttl=30, negative_ttl=1, timer=clock)

    assert await cache.lookup(digest) is None
    assert await cache.lookup(digest) is None
    assert store.calls == 1
    clock.t += 1.01
    store.known[digest] = PRINCIPAL  # created on another node meanwhile
    assert await cache.lookup(digest) == PRINCIPAL
    assert store.calls == 2


async def test_malformed_keys_never_reach_the_store() -> None:
    store = Store({})
    cache = ApiKeyCache(store.load)
    assert await cache.authenticate("not-a-key") is None
    assert store.calls == 0


async def test_lru_bound_and_negatives_cannot_evict_positives() -> None:
    store, clock = Store({}), Clock()
    digests = [generate_api_key()[2] for _ in range(3)]
    for d in digests:
        store.known[d] = PRINCIPAL
    cache = ApiKeyCache(store.load, max_entries=2, max_negative_entries=2, timer=clock)
    for d in digests:
        await cache.lookup(d)
    assert len(cache) == 2  # the oldest was evicted
    for _ in range(50):
        await cache.lookup(generate_api_key()[2])  # unknown digests
    calls = store.calls
    await cache.lookup(digests[1])
    await cache.lookup(digests[2])
    assert store.calls == calls  # still cached


async def test_concurrent_lookups_share_one_load() -> None:
    _, _, digest = generate_api_key()
    store = Store({digest: PRINCIPAL})
    store.delay = 0.05
    cache = ApiKeyCache(store.load)
    results = await asyncio.gather(*(cache.lookup(digest) for _ in range(10)))
    assert results == [PRINCIPAL] * 10
    assert store.calls == 1


async def test_store_failure_propagates_and_is_not_cached() -> None:
    _, _, digest = generate_api_key()
    store = Store({digest: PRINCIPAL})
    store.fail = True
    cache = ApiKeyCache(store.load)
    with pytest.raises(ConnectionError):
        await cache.lookup(digest)
    store.fail = False
    assert await cache.lookup(digest) == PRINCIPAL


async def test_invalidate_forgets_a_revoked_key() -> None:
    _, _, digest = generate_api_key()
    store = Store({digest: PRINCIPAL})
    cache = ApiKeyCache(store.load)
    await cache.lookup(digest)
    del store.known[digest]
    cache.invalidate(digest)
    assert await cache.lookup(digest) is None


def test_principal_as_subject() -> None:
    subject = PRINCIPAL.as_subject()
    assert subject.id == PRINCIPAL.id
    assert subject.kind == "service"
    assert subject.scopes == {"decisions"}
