"""Structured logs (structlog): JSON in production, with a processor that redacts what must
never be logged — PII values, one-time codes, secrets and tokens (CONTRACT §5.4).

Redaction works twice over: keys whose names say "secret" are replaced whole, and every string
value is scanned for the shapes of tokens (JWTs, API keys, grants) and of digit runs long enough
to be a one-time code or an identity number. Events should only ever carry names and ids; this
is the safety net for when one does not.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import structlog

__all__ = ["configure_logging", "redact", "redact_text"]

SECRET_KEYS: Final = frozenset(
    {
        "password",
        "passwd",
        "code",
        "otp",
        "token",
        "secret",
        "grant",
        "authorization",
        "cookie",
        "api_key",
        "key",
        "phone",
        "ssn",
        "credential",
        "recovery_code",
    }
)
_PATTERNS: Final = (
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # JWS / JWT
    re.compile(r"pgk_[A-Za-z0-9_-]{8,}"),  # piigate API keys
    # Codes, phone and identity numbers; not inside ids, versions or ISO timestamps.
    re.compile(r"(?<![\w.:-])\+?\d[\d -]{4,}\d(?![\w:-])"),
)
REDACTED: Final = "[redacted]"


def redact_text(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact(
    _logger: object, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        value = event[key]
        if key.lower() in SECRET_KEYS:
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = redact_text(value)
    return event


def configure_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
