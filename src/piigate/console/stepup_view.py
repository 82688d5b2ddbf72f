"""What the step-up page says about a challenge: the API's view of it
(``api.routes.challenges.challenge_view``) in plain words, and the methods this person can
answer it with (the challenge's methods they have enrolled).

Pure: the page's handlers (``console/stepup.py``) read the challenge, the person's factors and
the app's name, and hand them here. Nothing here is a PII value: the view carries class names,
the record's type and id, and a transaction's amount, currency and payee (which the person
approves, PSD2 dynamic linking).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from piigate.factors import FactorState
from piigate.factors.fresh import Purpose
from piigate.factors.ports import FactorRecord
from piigate.model import Action, Method

__all__ = ["METHOD_ORDER", "Fact", "StepUpView", "offered_methods", "step_up_view"]

_VERBS: Final = {
    Action.READ: "See",
    Action.UPDATE: "Change",
    Action.CREATE: "Add",
    Action.DELETE: "Delete",
    Action.EXPORT: "Export",
    Action.TRANSACT: "Make a payment",
    Action.LOGIN: "Sign in",
}
_PII_WORDS: Final = {
    "ssn": "social security number",
    "passport": "passport number",
    "bank_account": "bank account",
    "phone": "phone number",
    "mailing_address": "mailing address",
}
# Strongest first: the page offers methods in this order.
METHOD_ORDER: Final = (
    Method.WEBAUTHN,
    Method.PUSH,
    Method.TOTP,
    Method.SMS,
    Method.RECOVERY,
    Method.APPROVAL,
)


@dataclass(frozen=True, slots=True)
class Fact:
    """One line of what is being approved."""

    label: str
    value: str


@dataclass(frozen=True, slots=True)
class StepUpView:
    """The page's content for one challenge."""

    id: str
    state: str  # pending | approved | denied | expired
    headline: str
    facts: tuple[Fact, ...]
    methods: tuple[str, ...]  # what this person can answer it with, strongest first
    sms_hint: str | None  # the masked number a code goes to ("+1 •••-•••-••42")
    push_number: int | None  # the number to match, while a push is open
    created_at: datetime
    expires_at: datetime
    bound: bool  # for this one request only (``max_age: 0``)
    login: bool
    grant_until: datetime | None  # an approved challenge: until when its grant lasts


def _pii_words(classes: Sequence[str]) -> str:
    words = [_PII_WORDS.get(name, name.replace("_", " ")) for name in classes]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _record(view: Mapping[str, Any]) -> str | None:
    resource = view.get("resource") or {}
    kind, ident = resource.get("type"), resource.get("id")
    if not kind and not ident:
        return None
    return " ".join(str(part) for part in (kind, ident) if part)


def _headline(view: Mapping[str, Any]) -> str:
    action = Action(view["action"])
    resource = view.get("resource") or {}
    if action is Action.LOGIN:
        return f"Sign in as {view['subject']}"
    if resource.get("type") == Purpose.MANAGE_FACTORS:
        return "Change your sign-in methods"
    if resource.get("type") == Purpose.APPROVE:
        return "Approve another person's request"
    txn = view.get("transaction")
    if action is Action.TRANSACT and txn is not None:
        amount = " ".join(str(p) for p in (txn["amount"], txn.get("currency")) if p)
        return f"Pay {amount} to {txn['payee']}" if txn.get("payee") else f"Pay {amount}"
    verb = _VERBS[action]
    pii, record = _pii_words(view.get("pii") or ()), _record(view)
    if pii and record:
        return f"{verb} the {pii} of {record}"
    if pii or record:
        return f"{verb} {pii or record}"
    return verb


def _facts(view: Mapping[str, Any], *, asked_by: str, from_here: bool | None) -> tuple[Fact, ...]:
    action = Action(view["action"])
    facts = [Fact("Action", f"{_VERBS[action]} ({action.value})")]
    if view.get("pii"):
        names = [_PII_WORDS.get(n, n.replace("_", " ")).capitalize() for n in view["pii"]]
        facts.append(Fact("Personal data", ", ".join(names)))
    record = _record(view)
    if record and action is not Action.LOGIN:
        facts.append(Fact("Record", record))
    txn = view.get("transaction")
    if txn is not None:
        amount = " ".join(str(p) for p in (txn["amount"], txn.get("currency")) if p)
        facts.append(Fact("Amount", amount))
        if txn.get("payee"):
            facts.append(Fact("Payee", str(txn["payee"])))
    facts.append(Fact("Asked by", asked_by))
    if from_here is not None:
        facts.append(Fact("From", "This browser" if from_here else "Another device or browser"))
    return tuple(facts)


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def offered_methods(allowed: Sequence[str], factors: Iterable[FactorRecord]) -> tuple[str, ...]:
    """The challenge's ``allowed`` methods the person has an active factor of (and another
    person's approval, which needs none of theirs), strongest first."""
    enrolled = {f.kind for f in factors if f.state == FactorState.ACTIVE}
    usable = {m for m in allowed if m in enrolled or m == Method.APPROVAL}
    return tuple(m.value for m in METHOD_ORDER if m.value in usable)


def step_up_view(
    view: Mapping[str, Any],
    *,
    factors: Sequence[FactorRecord],
    asked_by: str,
    from_here: bool | None,
    grant_until: datetime | None = None,
) -> StepUpView:
    """The page's content: ``view`` is ``challenge_view``'s answer, ``factors`` the person's,
    ``asked_by`` who asked in words, ``from_here`` whether the request came from this
    browser's device (None: the challenge names no device)."""
    methods = offered_methods(view["methods"], factors)
    # A code goes to the most recently confirmed phone (``SmsCeremony.send``).
    sms = [f for f in factors if f.kind == Method.SMS and f.state == FactorState.ACTIVE]
    newest = max(sms, key=lambda f: f.confirmed_at or f.created_at) if sms else None
    hint = newest.data.get("hint") if newest else None
    push = view.get("push")
    return StepUpView(
        id=view["id"],
        state=view["state"],
        headline=_headline(view),
        facts=_facts(view, asked_by=asked_by, from_here=from_here),
        methods=methods,
        sms_hint=hint if isinstance(hint, str) else None,
        push_number=push["number"] if push else None,
        created_at=_at(view["created_at"]),
        expires_at=_at(view["expires_at"]),
        bound=bool(view.get("bound")),
        login=view["action"] == Action.LOGIN,
        grant_until=grant_until,
    )
