"""Login as a decision: ``POST /v1/login`` is decided as ``action: login`` before a session is
opened, so that a ``login`` rule (``risk_at_least``, ``signals: [new_device]``, a level) makes
the user step up first, or denies the login.

The steps: the password, throttled as always (``identity.login.Logins.authenticate``); the
decision through the engine every edge asks, with the request's context and the password as
the proof of the policy's first level; then

- allow: the session, as a login without rules gets;
- deny: 403, no session;
- step-up: no session yet. The client gets the challenge and a login ticket
  (``identity.tickets``), answers the challenge with the ticket, and completes the login with
  it once the challenge is approved (:meth:`LoginFlow.complete`).

A sign-in at the identity provider (:meth:`LoginFlow.login_federated`, from the console's OIDC
callback) is decided the same way, on what the provider said: its ``acr`` proves the level the
policy maps it to (else the first), at its ``auth_time``, with its ``amr``. The session it
opens, at once or once its step-up is approved, is a federated one (``Logins.open_federated``).

Audited: the decision (``decision``, its caller ``login``), ``login_step_up``,
``login_denied``, ``login_ticket_refused`` and ``login_succeeded`` (naming the challenge).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from piigate.callers import Caller, CallerKind
from piigate.clock import Clock
from piigate.crypto.secret import Secret
from piigate.errors import Conflict, Forbidden, StepUpRequired, Unauthorized
from piigate.factors import CeremonyState
from piigate.identity.federation import FederatedLogin
from piigate.identity.login import PASSWORD_AMR, LoginOutcome, Logins, LoginSession, UserRecord
from piigate.identity.tickets import LoginTicket, LoginTickets
from piigate.model import (
    AccessRequest,
    Action,
    ChallengeState,
    Context,
    Decision,
    Outcome,
    SessionAuth,
    Subject,
)
from piigate.ports import AuditRecorder
from piigate.stepup.engine import Engine
from piigate.stepup.ports import ChallengeStore

__all__ = ["COMPLETE_PATH", "LoginFlow", "LoginStepUpRequired", "LoginTicketRejected"]

# Where a stepped-up login is completed (``api/routes/sessions.py``).
COMPLETE_PATH: Final = "/v1/login/complete"


class LoginStepUpRequired(StepUpRequired):
    """The login must step up: 401 with RFC 9470's ``WWW-Authenticate``, the challenge, what it
    requires, and the login ticket to answer it with (the only secret in the body, made for
    this client)."""

    title = "Step-up required to log in"


class LoginTicketRejected(Unauthorized):
    """A login ticket that is unknown, spent, expired, or whose step-up failed: one answer."""

    code = "login_ticket_rejected"
    title = "Login ticket rejected"


def _step_up(decision: Decision, ticket: Secret[str]) -> LoginStepUpRequired:
    required, challenge = decision.required, decision.challenge
    assert required is not None and challenge is not None
    extra: dict[str, Any] = {
        "decision_id": decision.id,
        "required": {
            "level": required.level,
            "acr_values": list(required.acr_values),
            "max_age": required.max_age,
            "methods": list(required.methods),
        },
        "risk": {
            "score": decision.risk.score,
            "signals": [s.name for s in decision.risk.signals],
        },
        "login_ticket": ticket.reveal(),
        "complete_url": COMPLETE_PATH,
    }
    return LoginStepUpRequired(
        acr_values=required.acr_values,
        max_age=required.max_age,
        detail="this login needs a step-up: answer the challenge with the login ticket "
        "(PIIGate-Login-Ticket), then complete the login with it",
        challenge=challenge,
        **extra,
    )


@dataclass(frozen=True, slots=True)
class _Entrant:
    """Who logs in and how it was proven: a local user's password, or the identity
    provider's word (``federated``)."""

    subject: Subject
    session: SessionAuth
    user: UserRecord | None = None
    federated: FederatedLogin | None = None


class LoginFlow:
    """Logins decided by the policy: a local password, or a sign-in at the identity provider
    (see the module's doc)."""

    def __init__(self, logins: Logins, engine: Engine, tickets: LoginTickets) -> None:
        """The logins' store, audit and clock are the flow's; the engine's challenges are the
        ones the tickets answer."""
        self.logins = logins
        self.engine = engine
        self.tickets = tickets
        self.challenges: ChallengeStore = engine.challenges
        self.audit: AuditRecorder = logins.audit
        self.clock: Clock = logins.clock

    async def login(self, username: str, password: Secret[str], context: Context) -> LoginSession:
        """The session of a login the policy allows. Raises what ``Logins.authenticate``
        raises, ``Forbidden`` when the policy denies it, :class:`LoginStepUpRequired` when it
        asks for a step-up first (the context's device is bound to the ticket)."""
        user = await self.logins.authenticate(username, password, context.ip)
        session = SessionAuth(
            level=self.logins.password_level(), amr=PASSWORD_AMR, auth_time=self.clock.now()
        )
        subject = Subject(user.username, roles=frozenset(user.roles))
        return await self._admit(_Entrant(subject, session, user=user), context)

    async def login_federated(self, login: FederatedLogin, context: Context) -> LoginSession:
        """The session of a sign-in at the identity provider that the policy allows; raises as
        :meth:`login` does after the password (``Forbidden`` too for a disabled local account
        of the same name)."""
        subject = Subject(login.subject_id, roles=login.roles)
        session = SessionAuth(
            acr=login.acr,
            level=self.logins.federated_level(login),
            amr=login.amr,
            auth_time=login.auth_time,
        )
        entrant = _Entrant(subject, session, federated=login)
        if not await self.logins.may_federate(login.subject_id):
            await self._deny(entrant, {"reason": "account_disabled"})
        return await self._admit(entrant, context)

    async def _admit(self, entrant: _Entrant, context: Context) -> LoginSession:
        """Decide ``entrant``'s login from ``context``: the session, or the refusal or step-up
        raised."""
        request = AccessRequest(
            subject=entrant.subject, action=Action.LOGIN, session=entrant.session, context=context
        )
        caller = Caller.person(entrant.subject, kind=CallerKind.LOGIN)
        decision = await self.engine.decide(request, caller=caller)
        if decision.outcome is Outcome.ALLOW:
            return await self._open(entrant, context.ip)
        if decision.outcome is Outcome.DENY or decision.challenge is None:
            data = {"decision_id": decision.id, "rules": list(decision.rules)}
            await self._deny(entrant, data, decision.reason)
        ticket, record = await self.tickets.issue(
            decision.challenge,
            device_id=context.device_id,
            now=self.clock.now(),
            federated=entrant.federated,
        )
        self.logins.count(LoginOutcome.STEP_UP)
        await self.audit.record(
            "login_step_up",
            subject_id=entrant.subject.id,
            data={
                "decision_id": decision.id,
                "challenge_id": decision.challenge.id,
                "ticket_id": record.id,
            },
        )
        raise _step_up(decision, ticket)

    async def _deny(
        self, entrant: _Entrant, data: Mapping[str, object], reason: str | None = None
    ) -> NoReturn:
        self.logins.count(LoginOutcome.DENIED)
        await self.audit.record("login_denied", subject_id=entrant.subject.id, data=data)
        raise Forbidden(reason or "the policy does not allow this login")

    async def _open(
        self, entrant: _Entrant, ip: str | None, challenge_id: str | None = None
    ) -> LoginSession:
        if entrant.federated is not None:
            return await self.logins.open_federated(
                entrant.federated, ip, challenge_id=challenge_id
            )
        assert entrant.user is not None
        return await self.logins.open_session(entrant.user, ip, challenge_id=challenge_id)

    async def ticket_caller(self, ticket: str, challenge_id: str) -> Caller | None:
        """The person logging in, when ``ticket`` is an open one for ``challenge_id``: who may
        answer (and read, and send the codes of) that one challenge. None otherwise."""
        found = await self.tickets.find(ticket, now=self.clock.now())
        if found is None or found.challenge_id != challenge_id:
            return None
        return Caller.person(found.subject_id, kind=CallerKind.LOGIN)

    async def complete(self, ticket: str, ip: str | None) -> tuple[LoginSession, LoginTicket]:
        """The session of a login whose step-up is approved, and its ticket (spent now).
        ``Conflict`` (409) while the challenge is still pending (the ticket stays good);
        :class:`LoginTicketRejected` (401) otherwise."""
        now = self.clock.now()
        found = await self.tickets.find(ticket, now=now)
        if found is None:
            raise LoginTicketRejected("the login ticket is not valid (unknown, used or expired)")
        challenge = await self.challenges.get(found.challenge_id)
        if challenge is None or challenge.subject_id != found.subject_id:
            await self._refuse(found, "challenge_gone")
        if challenge.state is ChallengeState.PENDING:
            if challenge.expires_at > now:
                raise Conflict("the login's step-up is not approved yet")
            await self._refuse(found, "challenge_expired")
        if challenge.state is not ChallengeState.APPROVED:
            await self._refuse(found, f"challenge_{challenge.state.value}")
        entrant = await self._entrant_of(found)
        if entrant is None:
            await self._refuse(found, "user_gone")
        if not await self.tickets.close(found, state=CeremonyState.USED, now=now):
            await self._refuse(found, "replayed", close=False)
        return await self._open(entrant, ip, challenge.id), found

    async def _entrant_of(self, ticket: LoginTicket) -> _Entrant | None:
        """Who completes ``ticket``'s login (the session's proof is the original one's); None
        when they may no longer log in."""
        federated = ticket.federated
        if federated is not None:
            if not await self.logins.may_federate(federated.subject_id):
                return None
            return _Entrant(Subject(federated.subject_id), SessionAuth(), federated=federated)
        user = await self.logins.active_user(ticket.subject_id)
        if user is None:
            return None
        return _Entrant(Subject(user.username), SessionAuth(), user=user)

    async def _refuse(self, ticket: LoginTicket, reason: str, *, close: bool = True) -> NoReturn:
        """Close ``ticket`` (it can never complete), audit why, raise the vague 401."""
        if close:
            await self.tickets.close(ticket, state=CeremonyState.EXPIRED, now=self.clock.now())
        await self.audit.record(
            "login_ticket_refused",
            subject_id=ticket.subject_id,
            data={"ticket_id": ticket.id, "challenge_id": ticket.challenge_id, "reason": reason},
        )
        raise LoginTicketRejected("the login ticket is not valid (unknown, used or expired)")
