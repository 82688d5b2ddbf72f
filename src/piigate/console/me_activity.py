"""A person's own audit events in plain language, for "Recent activity" on My security.

Each event becomes an :class:`Activity`: a sentence saying what happened, a few facts (the
outcome, where the request came from: the country, network and client the risk engine saw),
and whether the person may report it as not theirs. Only names leave the event: action,
PII class and factor kind names, record ids, reasons — never a value, code or secret, which
events do not hold anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from piigate.model import AuditEvent
from piigate.risk.recorded import REPORTED_BY_SUBJECT
from piigate.risk.reports import is_reportable

__all__ = ["KIND_NAMES", "Activity", "describe", "describe_all", "when"]

# Factor kinds as the console names them.
KIND_NAMES: Final = {
    "totp": "authenticator app",
    "webauthn": "passkey or security key",
    "sms": "phone (SMS codes)",
    "push": "push device",
    "recovery": "recovery codes",
    "approval": "approval by a colleague",
}
# The same with the article a sentence needs ("Added an authenticator app").
_WITH_ARTICLE: Final = {
    "totp": "an authenticator app",
    "webauthn": "a passkey or security key",
    "sms": "a phone (SMS codes)",
    "push": "a push device",
    "recovery": "recovery codes",
    "approval": "approval by a colleague",
}
_ACTIONS: Final = {
    "read": "Read",
    "create": "Create",
    "update": "Change",
    "delete": "Delete",
    "export": "Export",
    "transact": "Transfer",
    "login": "Sign-in",
}
_OUTCOMES: Final = {"allow": "allowed", "step_up": "step-up asked", "deny": "denied"}
_TONES: Final = {"allow": "ok", "step_up": "warn", "deny": "bad"}


@dataclass(frozen=True, slots=True)
class Activity:
    """One event as the page shows it."""

    seq: int
    at: datetime
    title: str
    facts: tuple[str, ...] = ()
    tone: str = ""  # a badge class: ok, warn, bad (or none)
    badge: str = ""
    reportable: bool = True
    reported: bool = False

    @property
    def when(self) -> str:
        return when(self.at)


def when(at: datetime) -> str:
    """``2026-05-04 10:00 UTC``."""
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _kind(value: object) -> str:
    return KIND_NAMES.get(str(value), str(value).replace("_", " "))


def _a(value: object) -> str:
    return _WITH_ARTICLE.get(str(value), "a " + str(value).replace("_", " "))


def _names(values: object) -> str:
    if not isinstance(values, list) or not values:
        return ""
    return ", ".join(str(v).replace("_", " ") for v in values)


def _where(data: Mapping[str, Any]) -> str:
    """Where the request came from, as the risk engine saw it: country, network, client."""
    risk = data.get("risk")
    context = risk.get("context") if isinstance(risk, dict) else None
    if not isinstance(context, dict):
        return ""
    parts = []
    if context.get("place") == "private":
        parts.append("a private network")
    if context.get("country"):
        parts.append(str(context["country"]))
    if context.get("asn"):
        parts.append(str(context["asn"]))
    if context.get("client"):
        parts.append(str(context["client"]).replace("?", "unknown"))
    return "From " + ", ".join(parts) if parts else ""


def _decision(data: Mapping[str, Any]) -> tuple[str, tuple[str, ...], str, str]:
    action = str(data.get("action", ""))
    outcome = str(data.get("outcome", ""))
    verb = _ACTIONS.get(action, action.capitalize() or "Request")
    pii = _names(data.get("pii"))
    resource = data.get("resource")
    record = ""
    if isinstance(resource, dict) and resource.get("type"):
        record = " of " + " ".join(str(resource[k]) for k in ("type", "id") if resource.get(k))
    title = f"{verb}{' ' + pii if pii else ''}{record}"
    # Where from (the person knows best whether that was them), not which rules or risk
    # signals fired: that would tell someone holding their session how to pass unnoticed.
    facts = [_where(data)]
    mask = _names(data.get("mask"))
    if outcome == "allow" and mask:
        facts.append(f"Hidden: {mask}")
    badge = _OUTCOMES.get(outcome, outcome)
    return title, tuple(f for f in facts if f), _TONES.get(outcome, ""), badge


def _alert(data: Mapping[str, Any]) -> tuple[str, str]:
    kind = data.get("kind")
    if kind == "push_denied":
        return "You denied a push approval (“this wasn't me”)", "bad"
    if kind == REPORTED_BY_SUBJECT:
        return f"You reported “{_title_of(data.get('event_type'))}” as not you", "bad"
    return "Security alert: " + str(kind or "unnamed").replace("_", " "), "bad"


Describe = Callable[[Mapping[str, Any]], str]
# Each event type's sentence from its data.
_TITLES: Final[dict[str, Describe]] = {
    "login_succeeded": lambda d: (
        "Signed in after a step-up" if d.get("challenge_id") else "Signed in"
    ),
    "login_failed": lambda d: "A sign-in failed: wrong username or password",
    "login_throttled": lambda d: "Sign-ins paused after repeated failures",
    "login_denied": lambda d: "A sign-in was refused by the policy",
    "login_step_up": lambda d: "A sign-in asked for a step-up",
    "login_ticket_refused": lambda d: "A sign-in's step-up was not completed",
    "challenge_created": lambda d: (
        "A step-up was asked to change your factors"
        if d.get("purpose") == "manage_factors"
        else "A step-up was asked"
    ),
    "challenge_verified": lambda d: (
        "A step-up was approved by a colleague"
        if d.get("method") == "approval"
        else f"Step-up verified with your {_kind(d.get('method'))}"
    ),
    "challenge_denied": lambda d: f"A step-up was denied ({_kind(d.get('method'))})",
    "verification_failed": lambda d: f"A step-up attempt failed ({_kind(d.get('method'))})",
    "grant_collected": lambda d: "An approved step-up was used",
    "factor_enrolled": lambda d: (
        f"Started adding {_a(d.get('kind'))}"
        if d.get("state") == "pending"
        else f"Added {_a(d.get('kind'))}"
    ),
    "factor_confirmed": lambda d: f"Added {_a(d.get('kind'))}",
    "factor_confirmation_failed": lambda d: "A code to finish adding a factor was not accepted",
    "factor_removed": lambda d: f"Removed {_a(d.get('kind'))}",
    "recovery_codes_generated": lambda d: "New recovery codes were made (the old ones stopped)",
    "recovery_code_used": lambda d: f"A recovery code was used ({d.get('remaining', '?')} left)",
    "sms_sent": lambda d: "A code was sent to your phone",
    "sms_failed": lambda d: "A text message could not be sent",
    "sms_throttled": lambda d: "Text messages paused: too many were asked for",
    "push_sent": lambda d: "A push approval was sent to your device",
    "push_withheld": lambda d: "Push approvals paused: too many went unanswered or denied",
    "push_enrollment_refused": lambda d: "A device could not finish enrolling",
    "device_rejected": lambda d: "A request from one of your devices was refused",
    "user_added": lambda d: "Your account was created",
    "approaching_limit": lambda d: (
        f"Unusual amount of activity ({str(d.get('signal', '')).replace('_', ' ')})"
    ),
}
_BAD: Final = frozenset(
    {
        "login_failed",
        "login_throttled",
        "login_denied",
        "login_ticket_refused",
        "challenge_denied",
        "verification_failed",
        "factor_confirmation_failed",
        "sms_failed",
        "device_rejected",
        "push_enrollment_refused",
        "push_withheld",
    }
)


def _title_of(type: object) -> str:
    """What an event of ``type`` is called in general (a report names only the type)."""
    if type == "decision":
        return "A request about you"
    found = _TITLES.get(str(type))
    return found({}) if found else str(type).replace("_", " ").capitalize()


def describe(event: AuditEvent) -> Activity:
    """``event`` (one of the person's own, stored: it has a ``seq``) in plain language."""
    assert event.seq is not None
    data = event.data
    facts: tuple[str, ...] = ()
    tone, badge = "", ""
    if event.type == "decision":
        title, facts, tone, badge = _decision(data)
    elif event.type == "alert":
        title, tone = _alert(data)
    else:
        found = _TITLES.get(event.type)
        title = found(data) if found else event.type.replace("_", " ").capitalize()
        tone = "bad" if event.type in _BAD else ""
    return Activity(
        seq=event.seq,
        at=event.at,
        title=title,
        facts=facts,
        tone=tone,
        badge=badge,
        reportable=is_reportable(event),
    )


def describe_all(events: Sequence[AuditEvent]) -> list[Activity]:
    """``events`` described, each marked ``reported`` when a report of it is among them."""
    reported = {
        e.data.get("event_seq")
        for e in events
        if e.type == "alert" and e.data.get("kind") == REPORTED_BY_SUBJECT
    }
    described = []
    for event in events:
        activity = describe(event)
        if activity.seq in reported:
            activity = replace(activity, reported=True)
        described.append(activity)
    return described
