"""Which start-up parameters reach the database through the gateway."""

from __future__ import annotations

import pytest

from piigate.gateway.postgres.startup import StartupRefused, upstream_parameters


def test_known_settings_pass_and_the_encoding_is_utf8() -> None:
    got = upstream_parameters(
        [
            ("user", "alice"),
            ("database", "app"),
            ("application_name", "psql"),
            ("DateStyle", "ISO"),
            ("client_encoding", "LATIN1"),
            ("options", r"-c search_path=app\,public --statement-timeout=5s"),
        ]
    )
    assert got == {
        "application_name": "psql",
        "DateStyle": "ISO",
        "options": r"-c search_path=app\,public --statement-timeout=5s",
        "client_encoding": "UTF8",
    }


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ([("standard_conforming_strings", "off")], "standard_conforming_strings"),
        ([("role", "admin")], "role"),
        ([("options", "-c role=admin")], "role"),
        ([("options", "-csession_authorization=admin")], "session_authorization"),
        ([("options", "--standard-conforming-strings=off")], "standard_conforming_strings"),
        ([("options", r"-c search_path=a\ -c\ role=admin -c role=x")], "role"),
        ([("options", "-d 5")], "options -d"),
        ([("options", "-c")], "options -c"),
        ([("replication", "database")], "replication"),
    ],
)
def test_settings_that_change_reading_or_privileges_are_refused(
    parameters: list[tuple[str, str]], named: str
) -> None:
    with pytest.raises(StartupRefused) as refused:
        upstream_parameters(parameters)
    assert str(refused.value) == named
