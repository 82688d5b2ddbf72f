"""What the SMS says: the code and what it approves (PSD2 dynamic linking), briefly."""

from __future__ import annotations

from decimal import Decimal

from piigate.factors.sms import approval_text, enrollment_text
from piigate.factors.sms.text import MAX_PAYEE_CHARS
from piigate.model import Action, Transaction


def test_a_transfer_names_amount_currency_and_payee() -> None:
    text = approval_text(
        "123456",
        action=Action.TRANSACT,
        transaction=Transaction(Decimal("12500"), "EUR", "ACME Ltd"),
    )
    assert text == (
        "piigate: 123456 is your code to approve a transfer of 12,500.00 EUR to ACME Ltd. "
        "Never share it."
    )
    assert len(text) <= 160  # one GSM-7 segment


def test_a_transfer_without_currency_or_payee_still_names_the_amount() -> None:
    text = approval_text("000042", action=Action.TRANSACT, transaction=Transaction(Decimal("9.5")))
    assert "approve a transfer of 9.50." in text


def test_pii_access_names_the_action_and_the_classes() -> None:
    text = approval_text("123456", action=Action.UPDATE, pii={"ssn", "bank_account"})
    assert text == (
        "piigate: 123456 is your code to approve changing bank_account, ssn. Never share it."
    )
    many = approval_text("123456", action=Action.READ, pii={"a", "b", "c", "d", "e"})
    assert "viewing a, b, c and 2 more." in many
    assert "deleting protected data" in approval_text("123456", action=Action.DELETE)
    assert "approve signing in." in approval_text("123456", action=Action.LOGIN)


def test_the_payee_cannot_inject_lines_or_run_long() -> None:
    payee = "Evil\nCorp\u202e\u0000 " + "x" * 100
    text = approval_text(
        "123456", action=Action.TRANSACT, transaction=Transaction(Decimal(1), "EUR", payee)
    )
    assert "\n" not in text and "\u202e" not in text and "\x00" not in text
    shown = text.split(" to ", 2)[2].removesuffix(". Never share it.")
    assert shown.startswith("Evil Corp x") and shown.endswith("…")
    assert len(shown) == MAX_PAYEE_CHARS


def test_the_enrollment_text_carries_the_code() -> None:
    text = enrollment_text("654321")
    assert text.startswith("piigate: 654321 is your code") and text.endswith("Never share it.")
