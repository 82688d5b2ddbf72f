"""The request context's IP check answers exactly as ``ipaddress.ip_address`` does, while the
common forms go through the C parser (it runs on every decision)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piigate.decision_request import _is_ip


def reference(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    "value",
    [
        "1.2.3.4", "01.2.3.4", "1.2.3.04", "1.2.3", "256.1.1.1", "1.2.3.4 ", "::1", "::",
        "fe80::1%eth0", "::ffff:1.2.3.4", "2001:db8::", "2001:db8:::1", "1:2:3:4:5:6:7:8:9",
        "\u0661.\u0662.\u0663.\u0664", "", "a" * 50,
    ],
)  # fmt: skip
def test_known_forms(value: str) -> None:
    assert _is_ip(value) == reference(value)


@settings(max_examples=2000)
@given(st.text(alphabet="0123456789abcdef:.% x", max_size=40))
def test_any_short_text(value: str) -> None:
    assert _is_ip(value) == reference(value)


@given(st.ip_addresses())
def test_every_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert _is_ip(str(address))
