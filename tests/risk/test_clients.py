"""User agents parsed into browser, OS and device type (uap-core's rules, native resolver)."""

from __future__ import annotations

import pytest

from piigate.risk.clients import MAX_LENGTH, UNKNOWN_CLIENT, ClientParser
from piigate.risk.observation import Client

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
CASES = [
    (CHROME_WIN, Client("Chrome", "131", "Windows", "10", "desktop")),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        Client("Mobile Safari", "17", "iOS", "17", "mobile"),
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Mobile/15E148 Safari/604.1",
        Client("Mobile Safari", "16", "iOS", "16", "tablet"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36",
        Client("Chrome Mobile", "120", "Android", "14", "mobile"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        Client("Chrome", "120", "Android", "13", "tablet"),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Safari/605.1.15",
        Client("Safari", "17", "Mac OS X", "10", "desktop"),
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        Client("Firefox", "121", "Linux", None, "desktop"),
    ),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        Client("Googlebot", "2", None, None, "bot"),
    ),
    ("curl/8.4.0", Client("curl", "8", None, None, "other")),
    ("", UNKNOWN_CLIENT),
    ("   ", UNKNOWN_CLIENT),
]


@pytest.fixture(scope="module")
def parser() -> ClientParser:
    return ClientParser()


def test_the_native_accelerator_is_used(parser: ClientParser) -> None:
    assert parser.native


@pytest.mark.parametrize(("ua", "expected"), CASES)
def test_parse(parser: ClientParser, ua: str, expected: Client) -> None:
    assert parser.parse(ua) == expected


def test_a_browser_upgrade_changes_only_the_version(parser: ClientParser) -> None:
    newer = parser.parse(CHROME_WIN.replace("Chrome/131", "Chrome/132"))
    older = parser.parse(CHROME_WIN)
    assert (newer.browser, newer.os, newer.device_type) == (older.browser, older.os, "desktop")
    assert (older.browser_major, newer.browser_major) == ("131", "132")


def test_results_are_cached_and_huge_strings_cut(parser: ClientParser) -> None:
    assert parser.parse(CHROME_WIN) is parser.parse(CHROME_WIN)
    padded = CHROME_WIN + " " + "x" * (100 * MAX_LENGTH)
    assert parser.parse(padded) == parser.parse(CHROME_WIN)
