"""What an SMS says: the code and what it approves, in one short segment where possible.

Naming what is being approved is the point of a step-up code: a user who reads "to approve a
transfer of 12,500.00 EUR to ACME Ltd" can notice that they never asked for it. For a payment
this is PSD2's dynamic linking (RTS Art. 5(1)(a)): the payer is made aware of the amount and the
payee. "Never share it" is the one line that defeats the common "read me the code" scam.

Pure: no I/O; the caller passes what the challenge is for.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from decimal import Decimal

from piigate.model import Action, Transaction

__all__ = ["MAX_PAYEE_CHARS", "approval_text", "enrollment_text"]

BRAND = "piigate"
MAX_PAYEE_CHARS = 40
_MAX_CLASSES = 3
_VERBS = {
    Action.READ: "viewing",
    Action.UPDATE: "changing",
    Action.CREATE: "adding",
    Action.DELETE: "deleting",
    Action.EXPORT: "exporting",
    Action.LOGIN: "signing in",
}


def approval_text(
    code: str,
    *,
    action: Action,
    pii: Iterable[str] = (),
    transaction: Transaction | None = None,
) -> str:
    """``piigate: 123456 is your code to approve a transfer of 12,500.00 EUR to ACME Ltd. Never
    share it.`` — or, without a transaction, ``... to approve changing ssn, passport. ...``."""
    return f"{BRAND}: {code} is your code to approve {_what(action, pii, transaction)}. " + (
        "Never share it."
    )


def enrollment_text(code: str) -> str:
    """The code that confirms a phone being added as a step-up factor."""
    return f"{BRAND}: {code} is your code to add this phone for sign-in checks. Never share it."


def _what(action: Action, pii: Iterable[str], transaction: Transaction | None) -> str:
    if transaction is not None:
        text = f"a transfer of {_amount(transaction.amount, transaction.currency)}"
        payee = _clean(transaction.payee or "")
        return f"{text} to {payee}" if payee else text
    verb = _VERBS.get(action, action.value)
    classes = sorted(pii)
    if not classes:
        return verb if action is Action.LOGIN else f"{verb} protected data"
    shown = ", ".join(classes[:_MAX_CLASSES])
    more = len(classes) - _MAX_CLASSES
    return f"{verb} {shown}" + (f" and {more} more" if more > 0 else "")


def _amount(amount: Decimal, currency: str | None) -> str:
    shown = f"{amount:,.2f}"
    return f"{shown} {currency}" if currency else shown


def _clean(payee: str) -> str:
    """The payee on one line: control and format characters dropped (no injected line breaks or
    bidirectional overrides that could make the text say something else), trimmed to length."""
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in payee
        if ch.isspace() or unicodedata.category(ch)[0] != "C"
    )
    kept = " ".join(kept.split())
    if len(kept) > MAX_PAYEE_CHARS:
        kept = kept[: MAX_PAYEE_CHARS - 1].rstrip() + "…"
    return kept
