"""Who is calling: an app (its API key) or a person, resolved once at the edge.

The audience of the grants each obtains (``Caller.audience``, :func:`person_audience`) keeps an
app's grants apart from a person's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from piigate.model import Challenge, SessionAuth, Subject

__all__ = ["Caller", "CallerKind", "person_audience"]


class CallerKind(StrEnum):
    """How a caller authenticated (CONTRACT §4.1)."""

    API_KEY = "api_key"  # an app or gateway
    JWT = "jwt"  # a person, with an identity provider's bearer token
    SESSION = "session"  # a person, with the console's session cookie
    LOGIN = "login"  # a person mid-login (password checked), for its step-up only


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, resolved once at the edge: an app (its API key) or a person.

    ``id`` is the API key's id for an app and the subject's id for a person, so an app can never
    pass for the person whose id happens to equal its key id, nor the other way round.
    """

    kind: CallerKind
    id: str
    subject: Subject
    session: SessionAuth = field(default_factory=SessionAuth)

    @classmethod
    def app(cls, key_id: str, subject: Subject | None = None) -> Caller:
        return cls(CallerKind.API_KEY, key_id, subject or Subject(key_id, kind="service"))

    @classmethod
    def person(
        cls,
        subject: Subject | str,
        session: SessionAuth | None = None,
        *,
        kind: CallerKind = CallerKind.SESSION,
    ) -> Caller:
        who = Subject(subject) if isinstance(subject, str) else subject
        return cls(kind, who.id, who, session or SessionAuth())

    @property
    def is_app(self) -> bool:
        return self.kind is CallerKind.API_KEY

    @property
    def audience(self) -> str:
        """Who a grant obtained through this caller's request is for (its ``aud``): an app's key
        id, or :func:`person_audience` (with a ``:``, which key ids never have) for a person."""
        return self.id if self.is_app else person_audience(self.id)

    @property
    def scopes(self) -> frozenset[str]:
        return self.subject.scopes

    @property
    def roles(self) -> frozenset[str]:
        return self.subject.roles

    def has(self, *, scope: str | None = None, roles: frozenset[str] = frozenset()) -> bool:
        """Carries ``scope`` (API keys, tokens) or one of ``roles``."""
        return bool((scope and scope in self.scopes) or (roles & self.roles))

    def may_answer(self, challenge: Challenge) -> bool:
        """The challenge's subject, or the app whose decision asked for it (CONTRACT §4.3)."""
        if self.is_app:
            return challenge.requested_by is not None and self.id == challenge.requested_by
        return self.id == challenge.subject_id


def person_audience(subject_id: str) -> str:
    """The audience of the grants a person obtains for themselves (own step-ups, decisions)."""
    return f"user:{subject_id}"
