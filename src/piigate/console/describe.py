"""Audit events in plain words, for the security team's pages: a headline, a badge and a few
details per event (``describe``), the kinds of events the live feed can be narrowed to
(``KINDS``).

Everything here reads only what audit events carry -- names, ids, levels, reasons, scores, never
a PII value -- and returns text: templates escape it and the live feed's script sets it as
``textContent``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from piigate.console.risk_view import signal_text
from piigate.console.when import utc_text
from piigate.model import AuditEvent

__all__ = [
    "KINDS",
    "KIND_LABELS",
    "OUTCOMES",
    "OUTCOME_LABELS",
    "EventLine",
    "describe",
]

# The live feed's "event type" filter: a kind of event, and the audit event types it covers.
KINDS: Final[Mapping[str, tuple[str, ...]]] = {
    "decision": ("decision",),
    "stepup": (
        "challenge_created",
        "challenge_verified",
        "verification_failed",
        "challenge_denied",
        "grant_collected",
        "push_sent",
        "push_withheld",
        "sms_sent",
        "sms_failed",
        "sms_throttled",
        "recovery_code_used",
    ),
    "login": (
        "login_succeeded",
        "login_failed",
        "login_throttled",
        "login_step_up",
        "login_denied",
        "login_ticket_refused",
        "logout",
    ),
    "alert": ("alert", "approaching_limit", "alert_raised", "alert_acknowledged"),
    "factor": (
        "factor_enrolled",
        "factor_confirmed",
        "factor_removed",
        "factor_confirmation_failed",
        "recovery_codes_generated",
        "push_enrollment_refused",
        "device_rejected",
    ),
}
KIND_LABELS: Final[Mapping[str, str]] = {
    "decision": "Decisions",
    "stepup": "Step-ups",
    "login": "Sign-ins",
    "alert": "Alerts and warnings",
    "factor": "Factors",
}
# A decision's outcomes, as the feed's "outcome" filter offers them.
OUTCOMES: Final = ("allow", "step_up", "deny")
OUTCOME_LABELS: Final[Mapping[str, str]] = {
    "allow": "Allowed",
    "step_up": "Step-up",
    "deny": "Denied",
}


@dataclass(frozen=True, slots=True)
class EventLine:
    """One event as a line of the feed or of a timeline."""

    seq: int
    at: str  # ISO 8601, for <time datetime>
    when: str  # shown: "2026-05-04 10:00:00 UTC"
    type: str
    subject: str | None
    headline: str
    badge: str | None  # a badge class of console.css (allow, step_up, deny, ok, warn, bad)
    badge_text: str | None
    details: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "when": self.when,
            "type": self.type,
            "subject": self.subject,
            "headline": self.headline,
            "badge": self.badge,
            "badge_text": self.badge_text,
            "details": list(self.details),
        }


# What a describer returns: the headline, the badge (class, text) and the details.
_Said = tuple[str, tuple[str, str] | None, list[str]]


def describe(event: AuditEvent) -> EventLine:
    """``event`` in plain words. Data of another shape than expected (an event of another
    version) gives a line with less in it, never an error."""
    describer = _DESCRIBERS.get(event.type, _other)
    headline, badge, details = describer(event.data, event.type)
    return EventLine(
        seq=event.seq or 0,
        at=event.at.isoformat(),
        when=utc_text(event.at),
        type=event.type,
        subject=event.subject_id,
        headline=headline,
        badge=badge[0] if badge else None,
        badge_text=badge[1] if badge else None,
        details=tuple(d for d in details if d),
    )


# -- the describers, one per event type ------------------------------------------------------


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _names(value: object) -> str:
    return ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else ""


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _words(name: object) -> str:
    return _text(name).replace("_", " ")


def _decision(data: Mapping[str, Any], _: str) -> _Said:
    outcome = _text(data.get("outcome"))
    what = _asked(data)
    required = _dict(data.get("required"))
    if outcome == "allow":
        headline = f"Allowed {what}"
        if data.get("mask"):
            headline += f", {_names(data['mask'])} masked"
    elif outcome == "step_up":
        headline = f"Step-up to {required.get('level', '?')} asked for {what}"
    else:
        headline = f"Denied {what}"
        if data.get("reason"):
            headline += f": {data['reason']}"
    risk = _dict(data.get("risk"))
    signals = signal_text(risk.get("signals"))
    caller = _dict(data.get("caller"))
    details = [
        f"rules: {_names(data.get('rules'))}" if data.get("rules") else "no rule matched",
        f"risk {risk.get('score', 0)}" + (f" ({signals})" if signals else ""),
        f"asked by {_CALLERS.get(_text(caller.get('kind')), 'caller')} {_text(caller.get('id'))}"
        if caller
        else "",
        f"challenge {data['challenge_id']}" if data.get("challenge_id") else "",
    ]
    badge = (outcome, outcome.replace("_", "-")) if outcome in OUTCOMES else ("bad", "?")
    return headline, badge, details


def _asked(data: Mapping[str, Any]) -> str:
    """What a decision was about: ``read of ssn on customer 42``, ``sign-in``."""
    action = _text(data.get("action")) or "?"
    if action == "login":
        return "sign-in"
    pii = _names(data.get("pii"))
    parts = [action, f"of {pii}" if pii else ""]
    resource = _dict(data.get("resource"))
    if resource.get("type"):
        parts.append(f"on {resource['type']} {_text(resource.get('id'))}".strip())
    if not pii:
        parts.append("(no PII)")
    return " ".join(part for part in parts if part)


def _challenge_created(data: Mapping[str, Any], _: str) -> _Said:
    purpose = _words(data.get("purpose")) or "a change"
    return (
        f"Step-up to {data.get('level', '?')} opened for {purpose}",
        ("pending", "step-up"),
        [f"methods: {_names(data.get('methods'))}", f"challenge {data.get('challenge_id', '')}"],
    )


def _challenge_verified(data: Mapping[str, Any], _: str) -> _Said:
    approver = f", approved by {data['approver']}" if data.get("approver") else ""
    return (
        f"Step-up passed with {data.get('method', '?')} ({data.get('level', '?')}){approver}",
        ("ok", "passed"),
        [f"challenge {data.get('challenge_id', '')}", f"factor {_text(data.get('factor_id'))}"],
    )


def _verification_failed(data: Mapping[str, Any], _: str) -> _Said:
    attempts = f" (attempt {data['attempts']})" if data.get("attempts") is not None else ""
    return (
        f"Step-up attempt with {data.get('method', '?')} failed: "
        f"{_words(data.get('reason'))}{attempts}",
        ("warn", "failed"),
        [f"challenge {data.get('challenge_id', '')}"],
    )


def _challenge_denied(data: Mapping[str, Any], _: str) -> _Said:
    return (
        f"Step-up refused ({data.get('method', '?')}: {_words(data.get('reason'))})",
        ("bad", "refused"),
        [f"challenge {data.get('challenge_id', '')}"],
    )


def _login_succeeded(data: Mapping[str, Any], _: str) -> _Said:
    after = " after a step-up" if data.get("challenge_id") else ""
    return f"Signed in at {data.get('level', '?')}{after}", ("ok", "signed in"), []


def _login_step_up(data: Mapping[str, Any], _: str) -> _Said:
    return (
        "Sign-in asked for a step-up",
        ("step_up", "step-up"),
        [f"challenge {data.get('challenge_id', '')}"],
    )


def _login_denied(data: Mapping[str, Any], _: str) -> _Said:
    return (
        "Sign-in refused by the policy",
        ("deny", "deny"),
        [f"rules: {_names(data.get('rules'))}"],
    )


def _alert(data: Mapping[str, Any], _: str) -> _Said:
    kind = _text(data.get("kind"))
    headline = _ALERT_WORDS.get(kind, f"Alert: {_words(kind) or 'unnamed'}")
    details = [f"challenge {data['challenge_id']}" if data.get("challenge_id") else ""]
    return headline, ("bad", "alert"), details


def _alert_raised(data: Mapping[str, Any], _: str) -> _Said:
    kind = _text(data.get("kind"))
    severity = _text(data.get("severity"))
    headline = f"Alert raised: {_words(kind) or 'unnamed'}" + (f" ({severity})" if severity else "")
    return headline, ("bad" if severity == "high" else "warn", "alert"), []


def _alert_acknowledged(data: Mapping[str, Any], _: str) -> _Said:
    by = f" by {data['by']}" if data.get("by") else ""
    return f"Alert acknowledged{by}: {_words(data.get('kind'))}", ("ok", "acknowledged"), []


def _approaching_limit(data: Mapping[str, Any], _: str) -> _Said:
    return (
        f"Early warning: {_words(data.get('signal'))} at {data.get('count', '?')} of "
        f"{data.get('limit', '?')} within {data.get('window', '?')} s",
        ("warn", "warning"),
        [f"counted per {_text(data.get('per'))}" if data.get("per") else ""],
    )


def _factor(data: Mapping[str, Any], type: str) -> _Said:
    kind = _text(data.get("kind")) or "factor"
    verb = {
        "factor_enrolled": "added",
        "factor_confirmed": "confirmed",
        "factor_removed": "removed",
    }[type]
    return f"Factor {verb}: {kind}", None, [f"factor {_text(data.get('factor_id'))}"]


def _fixed(
    headline: str, badge: tuple[str, str] | None = None, reason: bool = False
) -> Callable[[Mapping[str, Any], str], _Said]:
    def said(data: Mapping[str, Any], _: str) -> _Said:
        text = f"{headline}: {_words(data.get('reason'))}" if reason else headline
        return text, badge, []

    return said


def _other(data: Mapping[str, Any], type: str) -> _Said:
    return _words(type).capitalize() or "Event", None, []


# Who asked for a decision (``engine._caller_json``), as the details name them before the id.
_CALLERS: Final = {
    "api_key": "app key",
    "jwt": "IdP token of",
    "session": "session of",
    "login": "sign-in of",
}
_ALERT_WORDS: Final = {
    "push_denied": "Alert: a push was denied on the person's device",
    "reported_by_subject": "Alert: the person reported an event as not theirs",
}

_DESCRIBERS: Final[Mapping[str, Callable[[Mapping[str, Any], str], _Said]]] = {
    "decision": _decision,
    "challenge_created": _challenge_created,
    "challenge_verified": _challenge_verified,
    "verification_failed": _verification_failed,
    "challenge_denied": _challenge_denied,
    "grant_collected": _fixed("Grant of an approval collected", ("ok", "grant")),
    "push_sent": _fixed("Push sent"),
    "push_withheld": _fixed("Push withheld: too many unanswered", ("warn", "withheld")),
    "sms_sent": _fixed("SMS code sent"),
    "sms_failed": _fixed("SMS could not be sent", ("bad", "failed"), reason=True),
    "sms_throttled": _fixed("SMS codes throttled", ("warn", "throttled")),
    "recovery_code_used": _fixed("Recovery code used", ("warn", "recovery")),
    "login_succeeded": _login_succeeded,
    "login_failed": _fixed("Sign-in failed", ("bad", "failed")),
    "login_throttled": _fixed("Sign-in throttled", ("warn", "throttled")),
    "login_step_up": _login_step_up,
    "login_denied": _login_denied,
    "login_ticket_refused": _fixed("Sign-in ticket refused", ("bad", "refused"), reason=True),
    "logout": _fixed("Signed out"),
    "alert": _alert,
    "alert_raised": _alert_raised,
    "alert_acknowledged": _alert_acknowledged,
    "approaching_limit": _approaching_limit,
    "factor_enrolled": _factor,
    "factor_confirmed": _factor,
    "factor_removed": _factor,
    "factor_confirmation_failed": _fixed(
        "Factor confirmation failed", ("warn", "failed"), reason=True
    ),
    "recovery_codes_generated": _fixed("Recovery codes made"),
    "push_enrollment_refused": _fixed("Push device enrolment refused", ("bad", "refused"), True),
    "device_rejected": _fixed("Push device request rejected", ("bad", "rejected"), reason=True),
    "policy_loaded": _fixed("Policy loaded"),
    "policy_rejected": _fixed("Policy change rejected; the old policy stays", ("bad", "rejected")),
}
