"""Everything one service node runs, wired from the settings: store, keyring, policy, engine,
audit log, identity. The HTTP routes only translate between HTTP and these."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn, cast

import structlog
from fastapi import Request

from piigate import __version__
from piigate.api.metrics import Metrics
from piigate.audit.bus import EventBus
from piigate.audit.log import AuditLog
from piigate.clock import Clock, SystemClock
from piigate.config import ConfigError, Settings
from piigate.crypto.keyring import Keyring
from piigate.crypto.secret import Secret
from piigate.errors import PolicyError, ServiceUnavailable, TooManyRequests, Unauthorized
from piigate.factors.approval.ceremony import Approvals
from piigate.factors.checks import code_checks
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.push.ceremony import PushCeremony
from piigate.factors.push.relay import WebhookRelay
from piigate.factors.sms.ceremony import SmsCeremony
from piigate.factors.sms.codes import SmsCheck
from piigate.factors.sms.numbers import NumberDigests
from piigate.factors.sms.providers import open_sender
from piigate.factors.webauthn.ceremony import WebAuthnCeremonies, WebAuthnCheck
from piigate.factors.webauthn.protocol import relying_party
from piigate.identity import (
    ApiKeyCache,
    ApiKeyPrincipal,
    JwtValidator,
    throttle_keys,
    verify_password_or_dummy,
)
from piigate.identity.throttle import DEFAULT_THROTTLE, backoff_seconds
from piigate.model import Method, SessionAuth, Subject
from piigate.policy.holder import PolicyHolder
from piigate.risk.port import CarriedRisk
from piigate.risk.recorded import RecordedRisk
from piigate.stepup.engine import Engine
from piigate.stepup.grants import KeyringGrantVerifier
from piigate.stepup.verification import Verifier
from piigate.store import Database, Store
from piigate.store.counters import Counters
from piigate.store.ports import SqlChallenges, SqlGrantLedger
from piigate.store.redis_counters import RedisCounters

__all__ = ["LoginSession", "Services", "get_services"]

log = structlog.get_logger("piigate.service")

POLICY_POLL_SECONDS = 2.0
# Longer than any password check takes; bounds how long a node that died mid-check blocks logins.
LOGIN_CHECK_SECONDS = 30
# Housekeeping: how often expired rows are deleted, and how long ceremonies outlive their expiry.
PURGE_SECONDS = 600.0
CEREMONY_RETENTION_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class LoginSession:
    token: str | None
    subject: Subject
    session: SessionAuth


def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:  # pragma: no cover - only before start-up
        raise ServiceUnavailable("the service is starting")
    return cast(Services, services)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Services:
    """One node's parts. ``start`` opens them in order; ``stop`` flushes and closes."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        policy: PolicyHolder | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics()
        self._policy = policy
        self._reload = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        settings = self.settings
        if self._policy is None:
            if settings.policy_path is None:
                raise PolicyError(["no policy: pass --config FILE or set PIIGATE_POLICY"])
            self._policy = PolicyHolder.from_file(settings.policy_path)
        self.policy = self._policy
        self.db = Database.open(settings.store_url)
        await self.db.upgrade()
        self.store = Store(self.db)
        # Rate limits and short locks: in the database, or in Redis when nodes share one.
        self.redis_counters = RedisCounters(settings.redis_url) if settings.redis_url else None
        self.counters: Counters = self.redis_counters or self.store
        keyring_dir = settings.data_dir / "keyring"
        fresh_keyring = not (keyring_dir / "keyring.json").exists()
        self.keyring = Keyring.open(keyring_dir)
        self.bus = EventBus()
        self.audit = AuditLog(
            self.db, self.clock, self.bus, writer_process=settings.audit_writer == "process"
        )
        await self.audit.start()
        self.risk = RecordedRisk(CarriedRisk(), self.store, self.policy, bus=self.bus)
        self.engine = Engine(
            policy=self.policy,
            # What the request carries, plus what piigate recorded (a denied push).
            risk=self.risk,
            grants=KeyringGrantVerifier(self.keyring, settings.issuer),
            ledger=SqlGrantLedger(self.store),
            challenges=SqlChallenges(self.store, self.keyring, self.audit),
            audit=self.audit,
            clock=self.clock,
        )
        self.api_keys = ApiKeyCache(self._load_api_key)
        self.jwt: JwtValidator | None = None
        if settings.identity is not None:
            ident = settings.identity
            self.jwt = JwtValidator(
                ident.issuer,
                ident.audience,
                ident.jwks_url,
                level_resolver=self._level_for_acr,
                roles_claim=ident.roles_claim,
            )
        if fresh_keyring:
            kids = [k.kid for k in self.keyring.list_keys()]
            await self.audit.record("keyring_created", data={"kids": kids})
        compiled = self.policy.current
        self.metrics.policy_loaded.set(1 if compiled else 0)
        await self.audit.record(
            "service_started",
            data={
                "version": __version__,
                "policy": compiled.digest if compiled else None,
                "pid": os.getpid(),
            },
        )
        if self.policy.path is not None:
            self._tasks.append(asyncio.create_task(self._watch_policy(), name="piigate-policy"))
        self._tasks.append(asyncio.create_task(self._purge_loop(), name="piigate-purge"))
        self.verifier = Verifier(
            store=self.store,
            challenges=SqlChallenges(self.store, self.keyring),
            keyring=self.keyring,
            checks=code_checks(self.store, self.keyring, self.audit),
            policy=self.policy,
            audit=self.audit,
            clock=self.clock,
            issuer=settings.issuer,
        )
        self.enrollment = FactorEnrollment(
            store=self.store,
            keyring=self.keyring,
            policy=self.policy,
            audit=self.audit,
            clock=self.clock,
            issuer=settings.issuer,
        )
        # WebAuthn: the relying party is the public URL's host, the origin its scheme://host:port.
        try:
            relying = relying_party(settings.public_url)
        except ValueError as exc:
            raise ConfigError([f"public_url: {exc}"]) from exc
        self.webauthn = WebAuthnCeremonies(
            store=self.store,
            enrollment=self.enrollment,
            policy=self.policy,
            audit=self.audit,
            clock=self.clock,
            rp=relying,
        )
        self.verifier.register(Method.WEBAUTHN, WebAuthnCheck(self.store, self.policy, relying))
        self.approvals = Approvals(
            verifier=self.verifier,
            challenges=SqlChallenges(self.store, self.keyring),
            enrollment=self.enrollment,
            policy=self.policy,
            clock=self.clock,
        )
        # SMS codes: the provider from the settings (the store's outbox by default).
        self.sms_sender = open_sender(
            settings.sms, db=self.db, keyring=self.keyring, clock=self.clock
        )
        self.verifier.register(Method.SMS, SmsCheck(self.store, self.keyring))
        self.sms = SmsCeremony(
            store=self.store,
            counters=self.counters,
            digests=NumberDigests(self.store, self.keyring, self.clock),
            sender=self.sms_sender,
            keyring=self.keyring,
            policy=self.policy,
            audit=self.audit,
            clock=self.clock,
            verifier=self.verifier,
            enrollment=self.enrollment,
        )
        # Push approval: devices poll; a relay (when configured) only wakes them sooner.
        relay_url = settings.push_relay_url
        self.push_relay = WebhookRelay(relay_url) if relay_url else None
        self.push = PushCeremony(
            store=self.store,
            counters=self.counters,
            challenges=SqlChallenges(self.store, self.keyring),
            keyring=self.keyring,
            policy=self.policy,
            audit=self.audit,
            clock=self.clock,
            verifier=self.verifier,
            enrollment=self.enrollment,
            public_url=settings.public_url,
            relay=self.push_relay,
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.jwt is not None:
            await self.jwt.aclose()
        await self.sms_sender.aclose()
        if self.push_relay is not None:
            await self.push_relay.aclose()
        if self.redis_counters is not None:
            await self.redis_counters.aclose()
        await self.audit.stop()
        self.risk.close()
        self.bus.close()
        await self.db.close()

    # -- policy -------------------------------------------------------------------------------
    def request_reload(self) -> None:
        """Ask for a policy reload now (SIGHUP)."""
        self._reload.set()

    async def reload_policy(self) -> bool:
        try:
            compiled = self.policy.reload()
        except PolicyError as exc:
            self.metrics.policy_reload_failures.inc()
            log.warning("policy_reload_failed", errors=exc.errors[:5], kept=self._digest())
            await self.audit.record(
                "policy_rejected", data={"errors": exc.errors[:20], "kept": self._digest()}
            )
            return False
        self.metrics.policy_loaded.set(1)
        log.info("policy_reloaded", policy=compiled.digest, rules=len(compiled.policy.rules))
        await self.audit.record(
            "policy_loaded", data={"policy": compiled.digest, "rules": len(compiled.policy.rules)}
        )
        return True

    def _digest(self) -> str | None:
        current = self.policy.current
        return current.digest if current else None

    def _level_for_acr(self, acr: str | None) -> str | None:
        current = self.policy.current
        return current.level_for_acr(acr) if current else None

    async def _watch_policy(self) -> None:
        path = self.policy.path
        assert path is not None
        last = _stamp(path)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reload.wait(), POLICY_POLL_SECONDS)
            forced = self._reload.is_set()
            self._reload.clear()
            stamp = _stamp(path)
            if forced or stamp != last:
                last = stamp
                try:
                    await self.reload_policy()
                except ServiceUnavailable:
                    log.warning("policy_reload_not_audited")

    # -- housekeeping -------------------------------------------------------------------------
    async def purge_expired(self) -> dict[str, int]:
        """Delete what has outlived its use: ended counter windows, expired sessions and used
        grants, and ceremonies a day after they expired. Every node may run it; it only deletes
        rows that no check reads any more."""
        now = self.clock.now()
        return {
            "counters": await self.store.purge_counters(now),
            "sessions": await self.store.purge_sessions(now),
            "used_grants": await self.store.purge_used_grants(now),
            "ceremonies": await self.store.purge_ceremonies(
                expired_before=now - timedelta(seconds=CEREMONY_RETENTION_SECONDS)
            ),
        }

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(PURGE_SECONDS)
            try:
                purged = await self.purge_expired()
            except ServiceUnavailable:
                log.warning("purge_failed")
                continue
            if any(purged.values()):
                log.info("purged", **purged)

    # -- identity -----------------------------------------------------------------------------
    async def _load_api_key(self, digest: bytes) -> ApiKeyPrincipal | None:
        row = await self.store.find_api_key(digest)
        if row is None:
            return None
        return ApiKeyPrincipal(row.id, row.name, frozenset(row.roles), frozenset(row.scopes))

    async def login(self, username: str, password: Secret[str], ip: str | None) -> LoginSession:
        """Check a local password, throttled per user and per network; open a session."""
        now = self.clock.now()
        user_key, net_key = throttle_keys(username, ip)
        # One password check per account at a time, across nodes. Otherwise a burst of parallel
        # guesses all pass the lock check before the first failure is counted, and the back-off
        # never bites. The marker expires by itself if a node dies mid-check.
        inflight = f"{user_key}:inflight"
        if await self.counters.hit(inflight, window_seconds=LOGIN_CHECK_SECONDS, now=now) > 1:
            await self._throttled(username, ip, 1)
        try:
            return await self._login(username, password, ip, now, user_key, net_key)
        finally:
            await self.counters.reset(inflight)

    async def _throttled(self, username: str, ip: str | None, retry: int) -> NoReturn:
        self.metrics.logins.labels("throttled").inc()
        await self.audit.record(
            "login_throttled", subject_id=username, data={"ip": ip, "retry_after": retry}
        )
        raise TooManyRequests(retry, "too many failed logins; retry later")

    async def _login(
        self,
        username: str,
        password: Secret[str],
        ip: str | None,
        now: datetime,
        user_key: str,
        net_key: str | None,
    ) -> LoginSession:
        policy = DEFAULT_THROTTLE
        for key in (k for k in (user_key, net_key) if k is not None):
            blocked_until = await self.counters.active_until(f"{key}:lock", now)
            if blocked_until is not None:
                retry = max(1, int((blocked_until - now).total_seconds() + 0.999))
                await self._throttled(username, ip, retry)
        user = await self.store.get_user(username)
        known = user is not None and not user.disabled
        stored_hash = user.password_hash if user is not None and known else None
        # argon2id costs ~0.1 s of CPU: keep it off the event loop.
        ok = await asyncio.to_thread(verify_password_or_dummy, stored_hash, password)
        if not ok or user is None or not known:
            keyed = [(user_key, policy.free_failures)]
            if net_key is not None:
                keyed.append((net_key, policy.ip_free_failures))
            for key, free in keyed:
                count = await self.counters.hit(key, window_seconds=policy.window, now=now)
                delay = backoff_seconds(count, free=free, cap=policy.max_delay)
                if delay:
                    await self.counters.hit(f"{key}:lock", window_seconds=delay, now=now)
            self.metrics.logins.labels("failed").inc()
            await self.audit.record("login_failed", subject_id=username, data={"ip": ip})
            raise Unauthorized("invalid username or password")
        await self.counters.reset(user_key)
        current = self.policy.current
        level = current.policy.levels[0].name if current and current.policy.levels else None
        token = secrets.token_urlsafe(32)
        row = await self.store.create_session(
            _token_hash(token),
            user.username,
            level,
            ("pwd",),
            now,
            now + timedelta(seconds=self.settings.session_ttl),
            now,
        )
        self.metrics.logins.labels("ok").inc()
        await self.audit.record(
            "login_succeeded",
            subject_id=user.username,
            data={"ip": ip, "session_id": row.token_hash[:16], "level": level},
        )
        return LoginSession(
            token,
            Subject(user.username, roles=frozenset(user.roles)),
            SessionAuth(id=row.token_hash[:16], level=level, amr=row.amr, auth_time=row.auth_time),
        )

    async def session_for(self, token: str) -> LoginSession | None:
        if not token or len(token) > 256:
            return None
        row = await self.store.get_session(_token_hash(token), self.clock.now())
        if row is None:
            return None
        user = await self.store.get_user(row.username)
        if user is None or user.disabled:
            return None
        return LoginSession(
            None,
            Subject(user.username, roles=frozenset(user.roles)),
            SessionAuth(
                id=row.token_hash[:16], level=row.level, amr=row.amr, auth_time=row.auth_time
            ),
        )

    async def logout(self, token: str) -> None:
        if await self.store.delete_session(_token_hash(token)):
            await self.audit.record("logout", data={"session_id": _token_hash(token)[:16]})


def _stamp(path: str) -> tuple[float, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime, st.st_size)
