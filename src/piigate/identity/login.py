"""Local login (CONTRACT §4.1): a password check throttled per user and per network, and the
console session it opens. The HTTP side (``api/routes/sessions.py``, the session cookie in
``api/auth.py``) only translates to these calls.

A person the identity provider vouched for (``identity/federation.py``) gets a session without
a local password record: it keeps the provider's roles and names the provider.

A session is known by the SHA-256 of its token: the store, the audit log and the ``session_id``
shown to the user hold only the hash (or a prefix of it), never the token itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, NoReturn

from piigate.clock import Clock
from piigate.crypto.secret import Secret
from piigate.errors import TooManyRequests, Unauthorized
from piigate.identity.federation import FederatedLogin
from piigate.identity.login_store import LoginStore, SessionRecord, UserRecord
from piigate.identity.passwords import verify_password_or_dummy
from piigate.identity.throttle import (
    DEFAULT_THROTTLE,
    ThrottlePolicy,
    backoff_seconds,
    throttle_keys,
)
from piigate.model import SessionAuth, Subject
from piigate.policy.holder import PolicyHolder
from piigate.ports import AuditRecorder, RateCounters

__all__ = [
    "DB_CREDENTIAL_PREFIX",
    "DB_USER_PREFIX",
    "LOGIN_CHECK_SECONDS",
    "PASSWORD_AMR",
    "LoginOutcome",
    "LoginSession",
    "LoginStore",
    "Logins",
    "UserRecord",
    "session_token_hash",
]

# Longer than any password check takes; bounds how long a node that died mid-check blocks logins.
LOGIN_CHECK_SECONDS = 30
# The one authentication method a local login proves (RFC 8176 §2: "pwd").
PASSWORD_AMR = ("pwd",)


class LoginOutcome(StrEnum):
    """How a login attempt ended: the label of the ``piigate_logins_total`` metric."""

    OK = "ok"
    FAILED = "failed"
    THROTTLED = "throttled"
    STEP_UP = "step_up"  # the password was right; the policy asks for a step-up first
    DENIED = "denied"  # the password was right; the policy denies the login


# What a database credential (``POST /v1/db-credentials``) starts with: the PostgreSQL gateway
# reads the rest as a session's token.
DB_CREDENTIAL_PREFIX: Final = "pgd_"
# A database credential's user name, ``dbc_<session id>``: it names the SCRAM-SHA-256 verifier.
DB_USER_PREFIX: Final = "dbc_"


@dataclass(frozen=True, slots=True)
class LoginSession:
    """A console session: its token only right after login (``None`` when looked up)."""

    token: str | None
    subject: Subject
    session: SessionAuth


def session_token_hash(token: str) -> str:
    """How a session token is stored and looked up: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def _uncounted(outcome: LoginOutcome) -> None:
    return None


def _no_address_key(ip: str) -> str | None:
    return None


class Logins:
    """Password logins and the sessions they open.

    ``count`` is called once per attempt with its outcome (the node's metrics). The throttle
    (``identity.throttle``) keeps its state in ``counters``: a locked user or network is refused
    before the password is looked at, and only a wrong password is counted.
    """

    def __init__(
        self,
        *,
        store: LoginStore,
        counters: RateCounters,
        policy: PolicyHolder,
        audit: AuditRecorder,
        clock: Clock,
        session_ttl: int,
        count: Callable[[LoginOutcome], None] = _uncounted,
        throttle: ThrottlePolicy = DEFAULT_THROTTLE,
        address_key: Callable[[str], str | None] = _no_address_key,
    ) -> None:
        self.store = store
        self.counters = counters
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.session_ttl = session_ttl
        self.count = count
        self.throttle = throttle
        # The audit names the client's address by a keyed hash only (``ContextObserver``).
        self.address_key = address_key

    async def login(self, username: str, password: Secret[str], ip: str | None) -> LoginSession:
        """:meth:`authenticate`, then :meth:`open_session`."""
        return await self.open_session(await self.authenticate(username, password, ip), ip)

    async def authenticate(
        self, username: str, password: Secret[str], ip: str | None
    ) -> UserRecord:
        """Check a local password, throttled per user and per network: the user it is.

        Raises ``TooManyRequests`` while the user or the network is backed off (or another
        check of this user is running) and ``Unauthorized``, the same for an unknown user, a
        disabled one and a wrong password, otherwise.
        """
        now = self.clock.now()
        user_key, net_key = throttle_keys(username, ip)
        # One password check per account at a time, across nodes. Otherwise a burst of parallel
        # guesses all pass the lock check before the first failure is counted, and the back-off
        # never bites. The marker expires by itself if a node dies mid-check.
        inflight = f"{user_key}:inflight"
        if await self.counters.hit(inflight, window_seconds=LOGIN_CHECK_SECONDS, now=now) > 1:
            await self._throttled(username, ip, 1)
        try:
            await self._refuse_while_locked(username, ip, (user_key, net_key), now)
            user = await self._check_password(username, password)
            if user is None:
                await self._count_failure(user_key, net_key, now)
                self.count(LoginOutcome.FAILED)
                await self.audit.record("login_failed", subject_id=username, data=self._address(ip))
                raise Unauthorized("invalid username or password")
            await self.counters.reset(user_key)
            return user
        finally:
            await self.counters.reset(inflight)

    async def active_user(self, username: str) -> UserRecord | None:
        """The user ``username`` when they exist and may log in."""
        user = await self.store.get_user(username)
        return None if user is None or user.disabled else user

    async def session_for(self, token: str) -> LoginSession | None:
        """The open session of ``token`` (its ``token`` left out), or None when there is none,
        it expired, or its user is gone or disabled."""
        if not token or len(token) > 256:
            return None
        row = await self.store.get_session(session_token_hash(token), self.clock.now())
        return None if row is None else await self._opened(row)

    async def database_session(self, session_id: str) -> tuple[LoginSession, str] | None:
        """The open session of a database credential by its id (``SessionAuth.id``), with its
        SCRAM-SHA-256 verifier; None when there is none (or it has no verifier)."""
        row = await self.store.get_session_by_id(session_id, self.clock.now())
        if row is None or row.scram_verifier is None:
            return None
        found = await self._opened(row)
        return None if found is None else (found, row.scram_verifier)

    async def _opened(self, row: SessionRecord) -> LoginSession | None:
        user = await self.store.get_user(row.username)
        if user is not None and user.disabled:
            return None
        if row.issuer is not None:  # federated: the provider's roles, no local record needed
            roles = frozenset(row.roles or ())
        elif user is not None:
            roles = frozenset(user.roles)
        else:
            return None
        return LoginSession(
            None,
            Subject(row.username, roles=roles),
            SessionAuth(
                id=row.token_hash[:16], level=row.level, amr=row.amr, auth_time=row.auth_time
            ),
        )

    async def logout(self, token: str) -> None:
        """End the session of ``token``; audited when there was one."""
        token_hash = session_token_hash(token)
        if await self.store.delete_session(token_hash):
            await self.audit.record("logout", data={"session_id": token_hash[:16]})

    async def refuse_while_backed_off(self, ip: str | None) -> None:
        """Raise ``TooManyRequests`` while the client's network is backed off: a sign-in at
        the identity provider is throttled by network as a password login is."""
        _, net_key = throttle_keys("", ip)
        if net_key is not None:
            await self._refuse_while_locked(None, ip, (net_key,), self.clock.now())

    async def count_network_failure(self, ip: str | None, *, method: str, reason: str) -> None:
        """A failed sign-in without a user name (a forged or stale answer from the identity
        provider): counted against the client's network, audited as ``login_failed``."""
        _, net_key = throttle_keys("", ip)
        await self._count_failure(None, net_key, self.clock.now())
        self.count(LoginOutcome.FAILED)
        data = {**self._address(ip), "method": method, "reason": reason}
        await self.audit.record("login_failed", data=data)

    async def _throttled(self, username: str | None, ip: str | None, retry: int) -> NoReturn:
        self.count(LoginOutcome.THROTTLED)
        await self.audit.record(
            "login_throttled", subject_id=username, data={**self._address(ip), "retry_after": retry}
        )
        raise TooManyRequests(retry, "too many failed logins; retry later")

    async def _refuse_while_locked(
        self,
        username: str | None,
        ip: str | None,
        keys: tuple[str | None, ...],
        now: datetime,
    ) -> None:
        for key in (k for k in keys if k is not None):
            blocked_until = await self.counters.active_until(f"{key}:lock", now)
            if blocked_until is not None:
                retry = max(1, int((blocked_until - now).total_seconds() + 0.999))
                await self._throttled(username, ip, retry)

    async def _check_password(self, username: str, password: Secret[str]) -> UserRecord | None:
        """The user when ``password`` is theirs and they may log in, else None. A hash is
        checked either way (a dummy one for an unknown or disabled user), so the time taken
        does not tell which accounts exist (``verify_password_or_dummy``)."""
        user = await self.store.get_user(username)
        known = user is not None and not user.disabled
        stored_hash = user.password_hash if user is not None and known else None
        # argon2id costs ~0.1 s of CPU: keep it off the event loop.
        ok = await asyncio.to_thread(verify_password_or_dummy, stored_hash, password)
        return user if ok and known else None

    async def _count_failure(
        self, user_key: str | None, net_key: str | None, now: datetime
    ) -> None:
        """Count a failure against the user and the network; past the free failures, lock the
        key for the back-off delay (``identity.throttle``)."""
        policy = self.throttle
        keyed = [(user_key, policy.free_failures), (net_key, policy.ip_free_failures)]
        for key, free in keyed:
            if key is None:
                continue
            count = await self.counters.hit(key, window_seconds=policy.window, now=now)
            delay = backoff_seconds(count, free=free, cap=policy.max_delay)
            if delay:
                await self.counters.hit(f"{key}:lock", window_seconds=delay, now=now)

    def password_level(self) -> str | None:
        """The level a password proves: the policy's first (lowest)."""
        current = self.policy.current
        return current.policy.levels[0].name if current and current.policy.levels else None

    def federated_level(self, login: FederatedLogin) -> str | None:
        """The level a sign-in at the identity provider proves: the one the policy maps its
        ``acr`` to, else the policy's first (the provider's login is at least a password)."""
        return self.policy.level_for_acr(login.acr) or self.password_level()

    async def may_federate(self, subject_id: str) -> bool:
        """False when a local account named ``subject_id`` exists and is disabled."""
        user = await self.store.get_user(subject_id)
        return user is None or not user.disabled

    def _address(self, ip: str | None) -> dict[str, object]:
        """The audit's view of the client's address: its keyed hash, never the address."""
        found = self.address_key(ip) if ip else None
        return {} if found is None else {"ip_key": found}

    async def open_session(
        self, user: UserRecord, ip: str | None, *, challenge_id: str | None = None
    ) -> LoginSession:
        """A new session at the policy's first (lowest) level, proven by the password (and the
        step-up of ``challenge_id`` the login asked for, named in the audit event)."""
        subject = Subject(user.username, roles=frozenset(user.roles))
        auth = SessionAuth(level=self.password_level(), amr=PASSWORD_AMR, auth_time=None)
        return await self._open(subject, auth, ip, challenge_id=challenge_id)

    async def open_federated(
        self, login: FederatedLogin, ip: str | None, *, challenge_id: str | None = None
    ) -> LoginSession:
        """A new session for a person the identity provider vouched for: their roles there,
        the level its ``acr`` maps to (:meth:`federated_level`), its ``amr`` and
        ``auth_time``."""
        subject = Subject(login.subject_id, roles=login.roles)
        auth = SessionAuth(
            level=self.federated_level(login), amr=login.amr, auth_time=login.auth_time
        )
        return await self._open(subject, auth, ip, challenge_id=challenge_id, issuer=login.issuer)

    async def _open(
        self,
        subject: Subject,
        auth: SessionAuth,
        ip: str | None,
        *,
        challenge_id: str | None,
        issuer: str | None = None,
    ) -> LoginSession:
        """Store a new session of ``subject`` (proven now unless ``auth`` says when) and audit
        ``login_succeeded``."""
        now = self.clock.now()
        token = secrets.token_urlsafe(32)
        row = await self.store.create_session(
            session_token_hash(token),
            subject.id,
            auth.level,
            auth.amr,
            auth.auth_time or now,
            now + timedelta(seconds=self.session_ttl),
            now,
            roles=sorted(subject.roles) if issuer is not None else None,
            issuer=issuer,
        )
        self.count(LoginOutcome.OK)
        data: dict[str, object] = {
            **self._address(ip),
            "session_id": row.token_hash[:16],
            "level": auth.level,
        }
        if issuer is not None:
            data["issuer"] = issuer
        if challenge_id is not None:
            data["challenge_id"] = challenge_id
        await self.audit.record("login_succeeded", subject_id=subject.id, data=data)
        session = SessionAuth(
            id=row.token_hash[:16], level=auth.level, amr=row.amr, auth_time=row.auth_time
        )
        return LoginSession(token, subject, session)
