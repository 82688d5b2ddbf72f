"""The log redactor: secrets by key name, tokens and digit runs by shape (CONTRACT §5.4)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr

import structlog

from piigate.logs import REDACTED, configure_logging, redact, redact_text

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJlLXBhcnQ"
KEY = "pgk_0123456789ab_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"


def test_secret_keys_are_replaced_whole() -> None:
    event = redact(None, "info", {"event": "x", "password": "hunter22", "code": "123456", "ok": 1})
    assert event == {"event": "x", "password": REDACTED, "code": REDACTED, "ok": 1}


def test_tokens_codes_and_numbers_are_redacted_inside_text() -> None:
    text = f"bearer {JWT} key {KEY} code 492039 ssn 123-45-6789 phone +1 415 555 0100"
    out = redact_text(text)
    for secret in (JWT, KEY, "492039", "123-45-6789", "555 0100"):
        assert secret not in out
    assert out.count(REDACTED) == 5


def test_ids_versions_and_timestamps_survive_but_bare_dates_do_not() -> None:
    text = "decision dec_Ab12 rule edit-ssn seq 42 v1.2.3 at 2026-01-01T10:00:00Z"
    assert redact_text(text) == text
    # A bare date may be a date of birth: it goes too.
    assert redact_text("born 1980-02-29") == f"born {REDACTED}"


def test_configured_logger_emits_json_without_secrets() -> None:
    buffer = io.StringIO()
    with redirect_stderr(buffer):
        configure_logging("json")
        structlog.reset_defaults()
        configure_logging("json")
        structlog.get_logger("t").warning("login_failed", detail=f"token {JWT}", otp="000111")
    line = buffer.getvalue().strip().splitlines()[-1]
    record = json.loads(line)
    assert record["event"] == "login_failed"
    assert JWT not in line and "000111" not in line
