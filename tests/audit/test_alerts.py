"""The alert rules (``audit/alerts.py``): which committed events raise which alert, and what an
alert may say."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piigate.audit.alerts import AlertKind, Severity, alert_for
from piigate.model import AuditEvent

AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def event(type: str, data: dict[str, Any], *, seq: int | None = 7) -> AuditEvent:
    return AuditEvent(type, AT, "alice", data, seq=seq)


def decision(*signals: str, **extra: Any) -> AuditEvent:
    return event(
        "decision",
        {
            "decision_id": "dec_1",
            "outcome": "step_up",
            "action": "delete",
            "resource": {"type": "customer", "id": "42"},
            "risk": {"score": 80, "signals": [{"name": s, "weight": 40} for s in signals]},
            **extra,
        },
    )


def test_a_denied_push_raises_a_high_alert_naming_ids() -> None:
    data = {
        "kind": "push_denied",
        "challenge_id": "chl_1",
        "push_id": "cer_2",
        "factor_id": "fac_3",
    }
    draft = alert_for(event("alert", data))
    assert draft is not None
    assert (draft.kind, draft.severity, draft.subject_id, draft.event_seq, draft.at) == (
        AlertKind.PUSH_DENIED,
        Severity.HIGH,
        "alice",
        7,
        AT,
    )
    assert draft.summary == "push cer_2 denied on device fac_3 (challenge chl_1)"


def test_an_event_reported_by_its_subject_raises_an_alert() -> None:
    data = {"kind": "reported_by_subject", "event_seq": 41, "event_type": "decision"}
    draft = alert_for(event("alert", data))
    assert draft is not None and draft.kind is AlertKind.REPORTED_BY_SUBJECT
    assert draft.summary == "the subject reported event #41 (decision) as not theirs"


def test_an_alert_of_an_unknown_kind_is_other() -> None:
    draft = alert_for(event("alert", {"kind": "something_new"}))
    assert draft is not None and draft.kind is AlertKind.OTHER
    assert "something_new" in draft.summary


def test_an_early_warning_raises_a_medium_alert() -> None:
    data = {"signal": "bulk_destructive", "per": "subject", "count": 8, "limit": 10,
            "window": 600, "previous": 1, "trend": "rising"}  # fmt: skip
    draft = alert_for(event("approaching_limit", data))
    assert draft is not None
    assert (draft.kind, draft.severity) == (AlertKind.APPROACHING_LIMIT, Severity.MEDIUM)
    assert draft.summary == "bulk_destructive at 8 of 10 in 600 s (per subject, trend rising)"


@pytest.mark.parametrize(
    ("signals", "kind"),
    [
        (("impossible_travel",), AlertKind.IMPOSSIBLE_TRAVEL),
        (("bulk_destructive", "velocity"), AlertKind.BULK_DESTRUCTIVE),
        (("bulk_destructive", "impossible_travel"), AlertKind.IMPOSSIBLE_TRAVEL),
    ],
)
def test_decisions_with_travel_or_bulk_signals_raise_alerts(
    signals: tuple[str, ...], kind: AlertKind
) -> None:
    draft = alert_for(decision(*signals))
    assert draft is not None and draft.kind is kind
    assert draft.summary.endswith("delete on customer/42 step_up (risk 80, decision dec_1)")


@pytest.mark.parametrize(
    "quiet",
    [
        decision("velocity", "new_device"),
        decision(),
        event("decision", {"risk": "broken"}),
        event("challenge_verified", {"method": "totp"}),
        event("alert_raised", {"alert_id": "alt_1", "kind": "push_denied"}),
        event("alert", {"kind": "push_denied"}, seq=None),  # not committed
    ],
)
def test_other_events_raise_nothing(quiet: AuditEvent) -> None:
    assert alert_for(quiet) is None


def test_values_that_are_not_ids_or_names_never_reach_the_summary() -> None:
    draft = alert_for(
        decision(
            "impossible_travel",
            resource={"type": "customer", "id": "123-45-6789 Jane Doe"},
            action={"nested": "x"},
        )
    )
    assert draft is not None
    assert "6789" not in draft.summary and "Jane" not in draft.summary
    assert "on customer/? " in draft.summary


@given(
    st.dictionaries(
        st.sampled_from(["push_id", "factor_id", "challenge_id", "event_type", "signal", "per"]),
        st.one_of(st.text(), st.integers(), st.none()),
    ),
    st.sampled_from(["push_denied", "reported_by_subject"]),
)
def test_a_summary_holds_only_id_like_words(values: dict[str, object], kind: str) -> None:
    """Whatever an event carries, a summary is made of the rule's words, ids and numbers: no
    space-separated text, no address, nothing outside this alphabet from an event's values."""
    draft = alert_for(event("alert", {"kind": kind, **values}))
    assert draft is not None
    assert re.fullmatch(r"[A-Za-z0-9_.:/()#?, -]*", draft.summary), draft.summary
    for value in values.values():
        if isinstance(value, str) and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*", value):
            assert f" {value} " not in f" {draft.summary} " or value == "?"
