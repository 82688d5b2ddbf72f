"""Which of a client's start-up parameters reach the database.

A start-up parameter is a setting the server applies before the first statement, so the gateway
lets through only settings that cannot change how it reads statements or who runs them: not
``standard_conforming_strings`` (string literals), ``role`` or ``session_authorization`` (the
privileges), ``client_encoding`` (the gateway masks UTF-8; it always asks for it), nor any
setting it does not know. ``options`` is read as the server reads it (``-c name=value`` and
``--name=value``, a backslash escaping the next character) and checked setting by setting.
``user`` and ``database`` are the gateway's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["PASSED", "StartupRefused", "upstream_parameters"]

PASSED: Final = frozenset(
    {
        "application_name",
        "datestyle",
        "timezone",
        "intervalstyle",
        "extra_float_digits",
        "search_path",
        "client_min_messages",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "default_transaction_isolation",
        "default_transaction_read_only",
        "default_transaction_deferrable",
        "bytea_output",
        "timezone_abbreviations",
    }
)
_GATEWAYS: Final = frozenset({"user", "database", "client_encoding"})


class StartupRefused(ValueError):
    """A parameter the gateway does not pass on; its name (never its value) is the text."""


def upstream_parameters(parameters: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The parameters to start the upstream session with (``client_encoding`` UTF8 added);
    :class:`StartupRefused` naming the first one that may not pass."""
    out: dict[str, str] = {}
    for name, value in parameters:
        if name in _GATEWAYS:
            continue
        if name == "options":
            for setting in _options(value):
                if setting.lower() not in PASSED:
                    raise StartupRefused(setting)
            out[name] = value
        elif name.lower() in PASSED:
            out[name] = value
        else:
            raise StartupRefused(name)
    out["client_encoding"] = "UTF8"
    return out


def _options(text: str) -> list[str]:
    """The setting names in an ``options`` value, split as the server splits it."""
    words, word, escaped = [], [], False
    for ch in text:
        if escaped:
            word.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch.isspace():
            if word:
                words.append("".join(word))
                word = []
        else:
            word.append(ch)
    if word:
        words.append("".join(word))
    names: list[str] = []
    expect_setting = False
    for item in words:
        if expect_setting:
            names.append(item.split("=", 1)[0].replace("-", "_"))
            expect_setting = False
        elif item == "-c":
            expect_setting = True
        elif item.startswith(("-c", "--")):
            names.append(item[2:].split("=", 1)[0].replace("-", "_"))
        else:  # any other switch (-d, -o, ...) is not a setting the gateway knows
            raise StartupRefused("options " + item.split("=", 1)[0])
    if expect_setting:
        raise StartupRefused("options -c")
    return names
