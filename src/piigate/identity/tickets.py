"""Login tickets: how a login that must step up goes on once the step-up is done.

When the policy asks a login to step up (``stepup/login.py``), no session is opened yet. The
client gets a ticket instead, ``<ticket id>.<256 random bits>``, bound to the subject, the
challenge and the device the login came from. With it the client may answer that one challenge
(``PIIGate-Login-Ticket`` on the challenge's routes) and, once it is approved, complete the
login (``POST /v1/login/complete``). Never the password: the ticket is all the client keeps.
A sign-in at the identity provider keeps what the provider said (``FederatedLogin``) with its
ticket, so that the session it completes is the one the provider vouched for.

A ticket is a ``login_ticket`` ceremony: the store holds its SHA-256 only, and it is spent once
by compare-and-set (``open`` → ``used``), or closed ``expired`` when its challenge can no longer
be approved. It lives as long as its challenge plus ``COMPLETE_GRACE``, so that a step-up
approved at the last moment can still be completed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from piigate.crypto.secret import Secret
from piigate.factors import CeremonyPurpose, CeremonyState
from piigate.factors.ports import CeremonyRecord, CeremonyRepo
from piigate.identity.federation import FederatedLogin
from piigate.ids import MAX_ID_LENGTH, new_id
from piigate.model import Challenge

__all__ = ["COMPLETE_GRACE", "MAX_TICKET_LENGTH", "LoginTicket", "LoginTickets"]

# How long after its challenge expires a ticket may still complete an approved login.
COMPLETE_GRACE: Final = timedelta(minutes=2)
# A ticket is far shorter: an id (26) + "." + 43 characters.
MAX_TICKET_LENGTH: Final = 128


@dataclass(frozen=True, slots=True)
class LoginTicket:
    """A ticket as stored: who logs in, the challenge to approve, the device it came from."""

    id: str
    subject_id: str
    challenge_id: str
    device_id: str | None
    expires_at: datetime
    # A sign-in at the identity provider; None for a local login.
    federated: FederatedLogin | None = None


def _digest(ticket: str) -> str:
    return "sha256:" + hashlib.sha256(ticket.encode("ascii")).hexdigest()


def _ticket_of(row: CeremonyRecord) -> LoginTicket | None:
    """The ticket a row holds; None when its sign-in at the identity provider is unreadable or
    names another subject."""
    device = row.data.get("device_id")
    kept = row.data.get("federated")
    federated = FederatedLogin.from_data(kept) if isinstance(kept, dict) else None
    if kept is not None and (federated is None or federated.subject_id != row.subject_id):
        return None
    return LoginTicket(
        id=row.id,
        subject_id=row.subject_id,
        challenge_id=row.challenge_id or "",
        device_id=device if isinstance(device, str) else None,
        expires_at=row.expires_at,
        federated=federated,
    )


class LoginTickets:
    """Issues, finds and spends login tickets in the ``ceremonies`` table (``store``)."""

    def __init__(self, store: CeremonyRepo) -> None:
        self.store = store

    async def issue(
        self,
        challenge: Challenge,
        *,
        device_id: str | None,
        now: datetime,
        federated: FederatedLogin | None = None,
    ) -> tuple[Secret[str], LoginTicket]:
        """A new ticket for ``challenge``'s subject: the ticket (shown once) and its record.
        ``federated``: the sign-in at the identity provider it completes."""
        ticket_id = new_id("ltk")
        ticket = f"{ticket_id}.{secrets.token_urlsafe(32)}"
        data: dict[str, object] = {} if device_id is None else {"device_id": device_id}
        if federated is not None:
            data["federated"] = federated.data()
        row = await self.store.open_ceremony(
            id=ticket_id,
            subject_id=challenge.subject_id,
            purpose=CeremonyPurpose.LOGIN_TICKET,
            now=now,
            expires_at=challenge.expires_at + COMPLETE_GRACE,
            challenge_id=challenge.id,
            secret=_digest(ticket),
            data=data,
        )
        issued = _ticket_of(row)
        assert issued is not None
        return Secret(ticket), issued

    async def find(self, ticket: str, *, now: datetime) -> LoginTicket | None:
        """The open, unexpired ticket ``ticket`` names (its digest compared in constant time);
        None for anything else, with no hint of why."""
        if not ticket or len(ticket) > MAX_TICKET_LENGTH or not ticket.isascii():
            return None
        ticket_id = ticket.partition(".")[0]
        if not 0 < len(ticket_id) <= MAX_ID_LENGTH:
            return None
        row = await self.store.get_ceremony(ticket_id)
        if (
            row is None
            or row.purpose != CeremonyPurpose.LOGIN_TICKET
            or row.secret is None
            or row.challenge_id is None
            or not hmac.compare_digest(row.secret.encode(), _digest(ticket).encode())
        ):
            return None
        if row.state != CeremonyState.OPEN or row.expires_at <= now:
            return None
        return _ticket_of(row)

    async def close(self, ticket: LoginTicket, *, state: CeremonyState, now: datetime) -> bool:
        """Close ``ticket`` ``used`` (the login completed) or ``expired`` (its challenge was
        denied or ran out); False when another request closed it first."""
        return await self.store.close_ceremony(ticket.id, new=state, now=now)
