"""Recent activity's plain words (``console.me_activity``, pure): each kind of event, where a
request came from, and what is never shown."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from piigate.console.me_activity import describe, describe_all
from piigate.model import AuditEvent

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def event(type: str, seq: int = 1, **data: Any) -> AuditEvent:
    return AuditEvent(type, T0, "ann", data, seq=seq)


@pytest.mark.parametrize(
    ("type", "data", "title", "tone"),
    [
        ("login_succeeded", {}, "Signed in", ""),
        ("login_succeeded", {"challenge_id": "chl_1"}, "Signed in after a step-up", ""),
        ("login_failed", {"ip_key": "k"}, "A sign-in failed: wrong username or password", "bad"),
        (
            "challenge_verified",
            {"method": "webauthn"},
            "Step-up verified with your passkey or security key",
            "",
        ),
        (
            "verification_failed",
            {"method": "totp"},
            "A step-up attempt failed (authenticator app)",
            "bad",
        ),
        (
            "factor_enrolled",
            {"kind": "sms", "state": "pending"},
            "Started adding a phone (SMS codes)",
            "",
        ),
        ("factor_removed", {"kind": "push"}, "Removed a push device", ""),
        ("recovery_code_used", {"remaining": 9}, "A recovery code was used (9 left)", ""),
        ("alert", {"kind": "push_denied"}, "You denied a push approval (“this wasn't me”)", "bad"),
        ("policy_reloaded_somehow", {}, "Policy reloaded somehow", ""),
    ],
)
def test_events_in_plain_words(type: str, data: dict[str, Any], title: str, tone: str) -> None:
    described = describe(event(type, **data))
    assert (described.title, described.tone) == (title, tone)
    assert described.reportable
    assert described.when == "2026-05-04 10:00 UTC"


def test_a_decision_says_what_on_which_record_how_it_ended_and_from_where() -> None:
    described = describe(
        event(
            "decision",
            action="delete",
            outcome="deny",
            pii=["bank_account"],
            mask=[],
            rules=["too-risky"],
            resource={"type": "customer", "id": "42"},
            risk={
                "score": 95,
                "signals": [{"name": "impossible_travel", "weight": 70}],
                "context": {
                    "ip": "hash",
                    "country": "AU",
                    "asn": "AS13335",
                    "client": "Chrome/?/desktop",
                },
            },
        )
    )
    assert described.title == "Delete bank account of customer 42"
    assert (described.badge, described.tone) == ("denied", "bad")
    assert described.facts == ("From AU, AS13335, Chrome/unknown/desktop",)
    shown = " ".join((described.title, *described.facts))
    for hidden in ("too-risky", "impossible", "95", "hash"):
        assert hidden not in shown


def test_reports_are_marked_and_cannot_be_reported() -> None:
    decision = event("decision", seq=5, action="read", outcome="allow", pii=["ssn"], mask=["ssn"])
    report = event("alert", seq=6, kind="reported_by_subject", event_seq=5, event_type="decision")
    shown_report, shown_decision = describe_all([report, decision])
    assert shown_decision.reported and shown_decision.facts == ("Hidden: ssn",)
    assert shown_report.title == "You reported “A request about you” as not you"
    assert not shown_report.reportable and not shown_report.reported
