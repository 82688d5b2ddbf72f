"""What the step-up page says of a challenge (``console/stepup_view.py``, pure): the headline
for each kind of request, the facts, and the methods offered."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from piigate.console.stepup_view import Fact, offered_methods, step_up_view

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


@dataclass
class FakeFactor:
    kind: str
    state: str = "active"
    data: dict[str, Any] = field(default_factory=dict)
    confirmed_at: datetime | None = T0
    created_at: datetime = T0


def view(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chl_1",
        "state": "pending",
        "subject": "alice",
        "action": "update",
        "pii": ["ssn"],
        "resource": {"type": "customer", "id": "42"},
        "methods": ["totp", "sms", "push", "webauthn", "recovery"],
        "bound": False,
        "created_at": int(T0.timestamp()),
        "expires_at": int(T0.timestamp()) + 300,
        "push": None,
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("changes", "headline"),
    [
        ({}, "Change the social security number of customer 42"),
        (
            {"action": "read", "pii": ["ssn", "passport", "bank_account"]},
            "See the social security number, passport number and bank account of customer 42",
        ),
        ({"action": "delete", "pii": []}, "Delete customer 42"),
        ({"action": "export", "pii": ["phone"], "resource": {}}, "Export phone number"),
        ({"action": "create", "pii": ["tax_id"], "resource": {}}, "Add tax id"),
        ({"action": "login", "pii": [], "resource": {}}, "Sign in as alice"),
        ({"resource": {"type": "manage_factors"}, "pii": []}, "Change your sign-in methods"),
        (
            {"resource": {"type": "approve", "id": "chl_9"}, "pii": []},
            "Approve another person's request",
        ),
        (
            {
                "action": "transact",
                "pii": [],
                "resource": {},
                "transaction": {"amount": "20.00", "currency": "EUR", "payee": "Bob"},
            },
            "Pay 20.00 EUR to Bob",
        ),
        (
            {
                "action": "transact",
                "pii": [],
                "resource": {},
                "transaction": {"amount": "20.00", "currency": None, "payee": None},
            },
            "Pay 20.00",
        ),
    ],
)
def test_the_headline_says_what_is_asked(changes: dict[str, Any], headline: str) -> None:
    shown = step_up_view(view(**changes), factors=[], asked_by="An app", from_here=None)
    assert shown.headline == headline


def test_the_facts_name_classes_record_transaction_and_origin() -> None:
    transfer = view(
        action="transact",
        pii=["bank_account"],
        transaction={"amount": "12500.00", "currency": "EUR", "payee": "DE89"},
    )
    shown = step_up_view(transfer, factors=[], asked_by="The app 'billing'", from_here=False)
    assert shown.facts == (
        Fact("Action", "Make a payment (transact)"),
        Fact("Personal data", "Bank account"),
        Fact("Record", "customer 42"),
        Fact("Amount", "12500.00 EUR"),
        Fact("Payee", "DE89"),
        Fact("Asked by", "The app 'billing'"),
        Fact("From", "Another device or browser"),
    )
    here = step_up_view(view(), factors=[], asked_by="You", from_here=True)
    assert Fact("From", "This browser") in here.facts
    nowhere = step_up_view(view(), factors=[], asked_by="You", from_here=None)
    assert [f.label for f in nowhere.facts if f.label == "From"] == []


def test_methods_are_the_allowed_ones_the_person_has_strongest_first() -> None:
    factors = [
        FakeFactor("recovery"),
        FakeFactor("totp"),
        FakeFactor("webauthn", state="pending"),  # not confirmed: cannot answer
        FakeFactor("sms", data={"hint": "+1 •••-•••-••00"}, confirmed_at=T0.replace(hour=8)),
        FakeFactor("sms", data={"hint": "+1 •••-•••-••42"}),
    ]
    allowed = ["totp", "sms", "webauthn", "recovery", "approval"]
    assert offered_methods(allowed, factors) == ("totp", "sms", "recovery", "approval")
    assert offered_methods(["webauthn", "push"], factors) == ()
    shown = step_up_view(view(methods=allowed), factors=factors, asked_by="", from_here=None)
    assert shown.sms_hint == "+1 •••-•••-••42"  # the newest phone, where a code goes


def test_an_open_push_shows_its_number() -> None:
    shown = step_up_view(
        view(push={"number": 47, "expires_at": 0}), factors=[], asked_by="", from_here=None
    )
    assert shown.push_number == 47
