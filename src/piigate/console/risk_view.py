"""A decision's risk as its audit event holds it (``risk.port.audit_json``), for the security
team's pages: the score and its badge, each signal's part, and what was seen of the context that
may be shown. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["RiskView", "risk_badge", "risk_of", "signal_text"]


@dataclass(frozen=True, slots=True)
class RiskView:
    """A decision's risk assessment as its audit event holds it (``risk.port.audit_json``):
    the score, each signal's name and contribution, and what was seen of the context that can
    be shown (country, network, client; not the keyed hashes)."""

    score: int
    signals: tuple[tuple[str, int], ...]
    context: tuple[tuple[str, str], ...]

    @property
    def badge(self) -> str:
        return risk_badge(self.score)


# The context of an assessment worth showing, with its label (the rest are keyed hashes).
_CONTEXT_SHOWN: Final = {
    "country": "country",
    "asn": "network",
    "hosting": "hosting provider",
    "place": "address",
    "client": "client",
}


def risk_of(data: Mapping[str, Any]) -> RiskView:
    """The risk of a decision event's ``data`` (0 and no signal when it holds none)."""
    risk = _dict(data.get("risk"))
    score = risk.get("score")
    signals = tuple(
        (s["name"], w if isinstance(w := s.get("weight"), int) else 0)
        for s in _list(risk.get("signals"))
        if isinstance(s, dict) and isinstance(s.get("name"), str)
    )
    context = _dict(risk.get("context"))
    shown = tuple(
        (label, "private network" if context[key] == "private" else str(context[key]))
        for key, label in _CONTEXT_SHOWN.items()
        if key in context
    )
    return RiskView(score if isinstance(score, int) else 0, signals, shown)


def risk_badge(score: int) -> str:
    """The badge class of a risk score: ``high`` from 60 (the example policy's step-up to the
    strongest level), ``warn`` from 30, else ``ok``."""
    return "high" if score >= 60 else "warn" if score >= 30 else "ok"


def signal_text(signals: object) -> str:
    """A risk assessment's signals as the audit holds them: ``new_device +30, velocity +30``."""
    parts = [f"{s.get('name')} +{s.get('weight')}" for s in _list(signals) if isinstance(s, dict)]
    return ", ".join(parts)


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
