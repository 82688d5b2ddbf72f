"""A person the configured identity provider vouched for: who they are there, the roles it
gives them, and how it authenticated them (``acr``, ``amr``, ``auth_time``).

The console's OIDC sign-in (``identity/oidc.py``) makes one from a validated ID token; the login
flow (``stepup/login.py``) decides the login on it and opens a session without a local password
record (``Logins.open_federated``). A login that must step up first keeps it with its ticket
(``identity/tickets.py``), in the plain form :meth:`FederatedLogin.data` gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

__all__ = ["MAX_SUBJECT_LENGTH", "FederatedLogin"]

# A session names its subject in 255 characters (``store/tables.py``: ``sessions.username``).
MAX_SUBJECT_LENGTH: Final = 255


@dataclass(frozen=True, slots=True)
class FederatedLogin:
    """What the identity provider ``issuer`` said about the person signing in."""

    issuer: str
    subject_id: str
    roles: frozenset[str]
    acr: str | None
    amr: tuple[str, ...]
    auth_time: datetime

    def data(self) -> dict[str, object]:
        """A JSON-ready form (kept with a login ticket)."""
        return {
            "issuer": self.issuer,
            "subject_id": self.subject_id,
            "roles": sorted(self.roles),
            "acr": self.acr,
            "amr": list(self.amr),
            "auth_time": int(self.auth_time.timestamp()),
        }

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> FederatedLogin | None:
        """The login :meth:`data` describes; None for anything else."""
        issuer, subject, acr = data.get("issuer"), data.get("subject_id"), data.get("acr")
        roles, amr, auth_time = data.get("roles"), data.get("amr"), data.get("auth_time")
        if not (isinstance(issuer, str) and isinstance(subject, str) and subject):
            return None
        if acr is not None and not isinstance(acr, str):
            return None
        if not (_strings(roles) and _strings(amr)) or type(auth_time) is not int:
            return None
        assert isinstance(roles, list) and isinstance(amr, list)
        return cls(
            issuer=issuer,
            subject_id=subject,
            roles=frozenset(roles),
            acr=acr,
            amr=tuple(amr),
            auth_time=datetime.fromtimestamp(auth_time, tz=UTC),
        )


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
