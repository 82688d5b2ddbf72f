"""Audit events in plain words (``console/describe.py``): decisions, step-ups, sign-ins, alerts;
a risk assessment read back from a decision event; events of an unknown type or shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from piigate.console.describe import KINDS, describe
from piigate.console.risk_view import risk_of
from piigate.model import AuditEvent

AT = datetime(2026, 5, 4, 10, 0, 5, tzinfo=UTC)


def event(type: str, data: dict[str, Any], subject: str | None = "ann") -> AuditEvent:
    return AuditEvent(type, AT, subject, data, seq=7)


DECISION: dict[str, Any] = {
    "decision_id": "dec_1",
    "outcome": "step_up",
    "rules": ["edit-identity-numbers", "risky-context"],
    "action": "update",
    "pii": ["passport", "ssn"],
    "mask": [],
    "resource": {"type": "customer", "id": "42"},
    "required": {"level": "aal3", "max_age": 300},
    "challenge_id": "chl_9",
    "risk": {
        "score": 70,
        "signals": [{"name": "new_device", "weight": 30}, {"name": "new_country", "weight": 40}],
        "context": {
            "ip": "k1",
            "device": "k2",
            "country": "AU",
            "client": "Chrome/Windows/desktop",
        },
    },
    "caller": {"kind": "api_key", "id": "key_1"},
}


def test_a_decision_says_what_was_asked_and_why() -> None:
    line = describe(event("decision", DECISION))
    assert line.headline == "Step-up to aal3 asked for update of passport, ssn on customer 42"
    assert (line.badge, line.badge_text) == ("step_up", "step-up")
    assert line.details == (
        "rules: edit-identity-numbers, risky-context",
        "risk 70 (new_device +30, new_country +40)",
        "asked by app key key_1",
        "challenge chl_9",
    )
    assert (line.seq, line.subject, line.when) == (7, "ann", "2026-05-04 10:00:05 UTC")
    assert line.at == "2026-05-04T10:00:05+00:00"
    allowed = describe(event("decision", {**DECISION, "outcome": "allow", "mask": ["ssn"]}))
    assert allowed.headline == "Allowed update of passport, ssn on customer 42, ssn masked"
    denied = describe(event("decision", {**DECISION, "outcome": "deny", "reason": "risk too high"}))
    assert denied.headline == "Denied update of passport, ssn on customer 42: risk too high"
    assert denied.badge == "deny"
    odd = describe(event("decision", {**DECISION, "outcome": "<b>"}))
    assert odd.badge == "bad"  # a badge class is always one of the stylesheet's


@pytest.mark.parametrize(
    ("type", "data", "headline", "badge"),
    [
        (
            "challenge_verified",
            {"challenge_id": "c", "method": "totp", "level": "aal2", "factor_id": "f"},
            "Step-up passed with totp (aal2)",
            "ok",
        ),
        (
            "verification_failed",
            {"challenge_id": "c", "method": "totp", "reason": "wrong_code", "attempts": 2},
            "Step-up attempt with totp failed: wrong code (attempt 2)",
            "warn",
        ),
        (
            "challenge_denied",
            {"challenge_id": "c", "method": "push", "reason": "denied"},
            "Step-up refused (push: denied)",
            "bad",
        ),
        ("login_succeeded", {"level": "aal1", "ip_key": "k"}, "Signed in at aal1", "ok"),
        ("login_failed", {"ip_key": "k"}, "Sign-in failed", "bad"),
        (
            "alert",
            {"kind": "push_denied"},
            "Alert: a push was denied on the person's device",
            "bad",
        ),
        (
            "approaching_limit",
            {
                "signal": "pii_enumeration",
                "per": "subject",
                "count": 40,
                "limit": 50,
                "window": 600,
            },
            "Early warning: pii enumeration at 40 of 50 within 600 s",
            "warn",
        ),
        ("factor_removed", {"factor_id": "f", "kind": "sms"}, "Factor removed: sms", None),
        ("something_new", {"x": 1}, "Something new", None),
    ],
)
def test_other_events_in_words(
    type: str, data: dict[str, Any], headline: str, badge: str | None
) -> None:
    line = describe(event(type, data))
    assert (line.headline, line.badge) == (headline, badge)


ODD_VALUES: dict[str, Any] = {
    key: value
    for key, value in zip(
        (
            "outcome",
            "action",
            "pii",
            "mask",
            "resource",
            "required",
            "risk",
            "caller",
            "rules",
            "reason",
            "challenge_id",
            "method",
            "level",
            "approver",
            "attempts",
            "kind",
            "severity",
            "signal",
            "count",
            "by",
            "factor_id",
            "purpose",
            "methods",
        ),
        (
            [],
            {},
            "ssn",
            3,
            ["customer"],
            "aal2",
            [1],
            "key",
            "r",
            0,
            5,
            None,
            {},
            [],
            "two",
            ["x"],
            1,
            None,
            {},
            [],
            7,
            None,
            "totp",
        ),
        strict=True,
    )
}


@pytest.mark.parametrize("type", sorted({t for types in KINDS.values() for t in types}))
@pytest.mark.parametrize("data", [{}, ODD_VALUES])
def test_data_of_another_shape_gives_a_line_not_an_error(type: str, data: dict[str, Any]) -> None:
    line = describe(event(type, data))
    assert line.headline and line.type == type
    assert all(isinstance(detail, str) and detail for detail in line.details)


def test_a_decision_without_its_usual_data() -> None:
    line = describe(event("decision", {"outcome": "allow", "resource": "customer", "pii": 3}))
    assert line.headline == "Allowed ? (no PII)"
    assert line.details == ("no rule matched", "risk 0")


def test_a_sign_in_and_a_request_without_pii() -> None:
    login = {**DECISION, "action": "login", "pii": [], "outcome": "allow"}
    login["caller"] = {"kind": "login", "id": "ann"}
    line = describe(event("decision", login))
    assert line.headline == "Allowed sign-in"
    assert "asked by sign-in of ann" in line.details
    plain = describe(event("decision", {**DECISION, "pii": [], "outcome": "deny"}))
    assert plain.headline == "Denied update on customer 42 (no PII)"


def test_the_risk_of_a_decision_event() -> None:
    risk = risk_of(DECISION)
    assert risk.score == 70 and risk.badge == "high"
    assert risk.signals == (("new_device", 30), ("new_country", 40))
    assert risk.context == (("country", "AU"), ("client", "Chrome/Windows/desktop"))
    empty = risk_of({"risk": {"score": "high", "signals": [{"weight": 1}, "x"]}})
    assert (empty.score, empty.signals, empty.context) == (0, (), ())
    assert risk_of({}).badge == "ok"


def test_every_kind_covers_distinct_types() -> None:
    covered = [t for types in KINDS.values() for t in types]
    assert len(covered) == len(set(covered))
    assert "decision" in KINDS["decision"] and "login_succeeded" in KINDS["login"]
