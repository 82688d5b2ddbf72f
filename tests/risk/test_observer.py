"""A request's context becomes an observation without its raw address, user agent or device."""

from __future__ import annotations

from datetime import UTC, datetime

from piigate.crypto.secret import Secret
from piigate.model import Context
from piigate.risk.clients import ClientParser
from piigate.risk.geo import MemoryLocator
from piigate.risk.observation import Feature, Observation, Place, features, keyed
from piigate.risk.observer import ContextObserver

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KEY = b"k" * 32
LONDON = Place(country="GB", region="England", city="London", latitude=51.5, longitude=-0.1)
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


def observer(key: bytes = KEY) -> ContextObserver:
    return ContextObserver(
        geo=MemoryLocator({"81.2.69.160": LONDON}), clients=ClientParser(), key=Secret(key)
    )


def test_an_observation_holds_keyed_hashes_place_and_client() -> None:
    seen = observer().observe(Context("81.2.69.160", UA, "dev-1"), now=T0)
    assert seen.at == T0 and seen.place == LONDON
    assert (seen.client.browser, seen.client.os, seen.client.device_type) == (
        "Firefox",
        "Linux",
        "desktop",
    )
    assert seen.ip_key == keyed(KEY, Feature.IP, "81.2.69.160")
    assert seen.network_key == keyed(KEY, Feature.NETWORK, "81.2.69.0/24")
    assert seen.device_key == keyed(KEY, Feature.DEVICE, "dev-1")
    text = repr(seen) + repr(features(seen))
    for raw in ("81.2.69", "dev-1", "Gecko", "Mozilla"):
        assert raw not in text


def test_networks_are_slash_24_and_slash_48() -> None:
    watch = observer()
    a = watch.observe(Context("81.2.69.1"), now=T0)
    b = watch.observe(Context("81.2.69.254"), now=T0)
    c = watch.observe(Context("81.2.70.1"), now=T0)
    assert a.network_key == b.network_key != c.network_key and a.ip_key != b.ip_key
    v6a = watch.observe(Context("2001:db8:1:1::1"), now=T0)
    v6b = watch.observe(Context("2001:db8:1:ffff::2"), now=T0)
    v6c = watch.observe(Context("2001:db8:2::1"), now=T0)
    assert v6a.network_key == v6b.network_key != v6c.network_key
    assert v6a.network_key == keyed(KEY, Feature.NETWORK, "2001:db8:1::/48")


def test_an_ipv4_address_written_as_ipv6_is_the_ipv4_address() -> None:
    watch = observer()
    assert (
        watch.observe(Context("::ffff:81.2.69.160"), now=T0).ip_key
        == watch.observe(Context("81.2.69.160"), now=T0).ip_key
    )


def test_another_deployment_key_gives_other_hashes() -> None:
    ours = observer().observe(Context("81.2.69.160", None, "dev-1"), now=T0)
    theirs = observer(b"o" * 32).observe(Context("81.2.69.160", None, "dev-1"), now=T0)
    assert ours.ip_key != theirs.ip_key and ours.device_key != theirs.device_key


def test_nothing_known_is_an_empty_observation() -> None:
    assert observer().observe(Context(), now=T0) == Observation(at=T0)
    odd = observer().observe(Context("not-an-ip"), now=T0)
    assert odd.ip_key is None and odd.network_key is None and odd.place == Place()
