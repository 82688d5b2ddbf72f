"""``origins.py``: web origins and the ``HOST:PORT`` addresses piigate listens on."""

from __future__ import annotations

import pytest

from piigate.origins import is_loopback, parse_listen, served_url, web_origin


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:9000", ("::1", 9000)),
        (" piigate.internal:443 ", ("piigate.internal", 443)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8080", "::1:9000", "host:0", "host:65536", "host:http", ":80"])
def test_bad_listen_addresses_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT \(\[ADDRESS\]:PORT for IPv6\)"):
        parse_listen(text)


def test_an_empty_host_is_the_default_where_one_is_given() -> None:
    assert parse_listen(":8080", default_host="127.0.0.1") == ("127.0.0.1", 8080)


def test_served_urls_and_loopback() -> None:
    assert served_url("::1", 9000) == "http://[::1]:9000"
    assert web_origin(served_url("127.0.0.1", 80)) == "http://127.0.0.1"
    assert is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("piigate.example")
