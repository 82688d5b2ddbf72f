"""Everything one service node runs, wired from the settings: store, keyring, policy, engine,
audit log, identity, the factor ceremonies. The HTTP routes only translate between HTTP and
these; login and sessions live in ``identity.login``."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING, cast

import structlog
from fastapi import Request

from piigate import __version__
from piigate.api.devices import DeviceCookies
from piigate.api.metrics import Metrics
from piigate.api.monitoring import Monitoring, open_monitoring
from piigate.api.risk import open_context_risk
from piigate.api.upkeep import PolicyWatch, Purge, refresh_keys
from piigate.audit.bus import EventBus
from piigate.audit.log import AuditLog
from piigate.clock import Clock, SystemClock
from piigate.config import ConfigError, Settings
from piigate.crypto.keyring import Keyring, OpenedKeyring, open_keyring
from piigate.errors import PolicyError, ServiceUnavailable
from piigate.factors.approval.ceremony import Approvals
from piigate.factors.checks import code_checks
from piigate.factors.enrollment import FactorEnrollment
from piigate.factors.fresh import FreshGrants
from piigate.factors.push.ceremony import PushCeremony
from piigate.factors.push.relay import WebhookRelay
from piigate.factors.sms.ceremony import SmsCeremony
from piigate.factors.sms.codes import SmsCheck
from piigate.factors.sms.numbers import NumberDigests
from piigate.factors.sms.port import SmsSender
from piigate.factors.sms.providers import open_sender
from piigate.factors.webauthn.ceremony import WebAuthnCeremonies, WebAuthnCheck
from piigate.factors.webauthn.protocol import RelyingParty, relying_party
from piigate.files import exposed
from piigate.gateway.http.config import HttpGatewayConfig, find_gateway_config
from piigate.identity import ApiKeyCache, ApiKeyPrincipal, JwtValidator
from piigate.identity.login import Logins
from piigate.identity.oidc import OidcClient, idp_clients
from piigate.identity.tickets import LoginTickets
from piigate.model import Method
from piigate.policy.holder import PolicyHolder
from piigate.risk.engine import ContextRisk
from piigate.risk.geo import MaxMindLocator, announce_locator, open_locator
from piigate.risk.port import RiskFeed
from piigate.risk.recorded import RecordedRisk
from piigate.risk.reports import ActivityReports
from piigate.stepup.engine import Engine
from piigate.stepup.grants import KeyringGrantVerifier
from piigate.stepup.login import LoginFlow
from piigate.stepup.verification import Verifier
from piigate.store import Database, Store
from piigate.store.counters import Counters
from piigate.store.ports import SqlChallenges, SqlGrantLedger
from piigate.store.redis_counters import RedisCounters

if TYPE_CHECKING:
    from piigate.gateway.http.forward_auth import ForwardAuth

__all__ = ["Services", "get_services"]

log = structlog.get_logger("piigate.service")


def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:  # pragma: no cover - only before start-up
        raise ServiceUnavailable("the service is starting")
    return cast(Services, services)


class Services:
    """One node's parts, all declared here, opened in order by ``start``; ``stop`` closes."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        policy: PolicyHolder | None = None,
        forward_auth: bool = True,
    ) -> None:
        """``forward_auth``: serve ``/v1/forward-auth`` (not in ``piigate gateway http``)."""
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics()
        self._given_policy = policy
        self._with_forward_auth = forward_auth
        self._tasks: list[asyncio.Task[None]] = []
        # The parts, opened by start()'s steps in this order.
        self.policy: PolicyHolder
        self.db: Database
        self.store: Store
        # Rate limits and short locks: in the database, or in Redis when nodes share one.
        self.redis_counters: RedisCounters | None
        self.counters: Counters
        self.keyring: Keyring
        self.bus: EventBus
        self.audit: AuditLog
        self.geo: MaxMindLocator
        self.context_risk: ContextRisk  # the risk engine, and the RiskFeed the edges feed
        self.risk: RecordedRisk  # context_risk, plus what piigate recorded (a denied push)
        self.risk_feed: RiskFeed  # what the routes tell the risk engine after the fact
        self.reports: ActivityReports  # "this wasn't me": an alert, and the subject's risk raised
        self.challenges: SqlChallenges  # one repository, shared by the engine and the ceremonies
        self.engine: Engine
        self.api_keys: ApiKeyCache
        self.jwt: JwtValidator | None
        self.oidc: OidcClient | None  # the console's sign-in at the IdP (identity/oidc.py)
        self.logins: Logins
        self.login: LoginFlow  # POST /v1/login decided as action login (stepup/login.py)
        self.devices: DeviceCookies  # the piigate_device cookie (api/devices.py)
        self.verifier: Verifier
        self.fresh: FreshGrants  # a person's own step-ups (factor changes, approving)
        self.enrollment: FactorEnrollment
        self.webauthn: WebAuthnCeremonies
        self.approvals: Approvals
        self.sms_sender: SmsSender
        self.sms: SmsCeremony
        self.push_relay: WebhookRelay | None
        self.push: PushCeremony
        # The gate of /v1/forward-auth; None without a gateway.http section.
        self.forward_auth: ForwardAuth | None = None
        self.policy_watch: PolicyWatch
        self.purge: Purge
        self.monitoring: Monitoring  # the alert desk (``monitoring.desk``), sinks, fan-out

    async def start(self) -> None:
        """Open the parts, each step on those before it. The configuration is checked before
        anything is opened; the start is audited and the background tasks run last."""
        given = self._given_policy
        self.policy = given if given is not None else _policy_file(self.settings)
        relying = _relying_party(self.settings)
        gateway = self._gateway_config()
        self.geo = open_locator(self.settings.risk, announce=False)
        await self._open_store()
        opened = await self._open_keyring()
        await self._open_audit()
        await self._open_engine()
        self._open_identity()
        self._open_verification(relying)
        self._open_sms()
        self._open_push()
        self._open_forward_auth(gateway)
        await self._announce(opened)
        self.monitoring = await open_monitoring(self)
        self._start_background()

    async def _open_store(self) -> None:
        settings = self.settings
        self.db = Database.open(settings.store_url)
        # One line for each data path that others may read or write (made before piigate
        # created them private, or loosened since).
        for path, mode in exposed((settings.data_dir, *self.db.files)):
            log.warning("data_not_private", path=str(path.resolve()), mode=f"{mode:04o}")
        await self.db.upgrade()
        self.store = Store(self.db)
        self.redis_counters = RedisCounters(settings.redis_url) if settings.redis_url else None
        self.counters = self.redis_counters or self.store

    async def _open_keyring(self) -> OpenedKeyring:
        """The deployment's keys from the store (created on its first start, or moved in from
        this node's file keyring of an earlier version), opened with the master key."""
        settings = self.settings
        opened = await open_keyring(
            self.store,
            settings.master_key_spec(),
            legacy_dir=settings.data_dir / "keyring",
            clock=self.clock,
        )
        self.keyring = opened.keyring
        return opened

    async def _open_audit(self) -> None:
        self.bus = EventBus()
        writer_process = self.settings.audit_writer == "process"
        self.audit = AuditLog(self.db, self.clock, self.bus, writer_process=writer_process)
        await self.audit.start()

    async def _open_engine(self) -> None:
        self.context_risk = await open_context_risk(self)
        self.risk = RecordedRisk(self.context_risk, self.store, self.policy, bus=self.bus)
        self.risk_feed = self.context_risk
        self.reports = ActivityReports(store=self.store, audit=self.audit, policy=self.policy)
        # With the audit log as writer, a new challenge is inserted in the same group commit as
        # its decision's audit event; everyone else only reads challenges.
        self.challenges = SqlChallenges(self.store, self.keyring, self.audit)
        self.engine = Engine(
            policy=self.policy,
            risk=self.risk,
            grants=KeyringGrantVerifier(self.keyring, self.settings.issuer),
            ledger=SqlGrantLedger(self.store),
            challenges=self.challenges,
            audit=self.audit,
            clock=self.clock,
        )

    def _open_identity(self) -> None:
        self.api_keys = ApiKeyCache(self._load_api_key)
        # Bearer JWTs, and the console's sign-in, at the configured identity provider.
        self.jwt, self.oidc = idp_clients(
            self.settings.identity, self.settings.public_url, self.policy.level_for_acr
        )
        logins = self.metrics.logins
        self.logins = Logins(
            store=self.store,
            counters=self.counters,
            policy=self.policy,
            audit=self.audit,
            clock=self.clock,
            session_ttl=self.settings.session_ttl,
            count=lambda outcome: logins.labels(outcome.value).inc(),
            address_key=self.context_risk.address_key,
        )
        self.login = LoginFlow(self.logins, self.engine, LoginTickets(self.store))
        self.devices = DeviceCookies(self.keyring)

    def _open_verification(self, relying: RelyingParty) -> None:
        """The verification pipeline, factor enrollment, and the ceremonies without adapters
        (WebAuthn, approval by another person)."""
        self.verifier = Verifier(
            store=self.store,
            challenges=self.challenges,
            keyring=self.keyring,
            checks=code_checks(self.store, self.keyring, self.audit),
            policy=self.policy,
            audit=self.audit,
            clock=self.clock,
            issuer=self.settings.issuer,
        )
        self.fresh = FreshGrants(
            keyring=self.keyring,
            issuer=self.settings.issuer,
            challenges=self.challenges,
            policy=self.policy,
            audit=self.audit,
            clock=self.clock,
        )
        self.enrollment = FactorEnrollment(
            store=self.store,
            keyring=self.keyring,
            policy=self.policy,
            audit=self.audit,
            clock=self.clock,
            fresh=self.fresh,
        )
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
            challenges=self.challenges,
            fresh=self.fresh,
            policy=self.policy,
            clock=self.clock,
        )

    def _open_sms(self) -> None:
        # The provider from the settings (the store's outbox by default).
        self.sms_sender = open_sender(
            self.settings.sms, db=self.db, keyring=self.keyring, clock=self.clock
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

    def _open_push(self) -> None:
        # Devices poll; a relay (when configured) only wakes them sooner.
        relay_url = self.settings.push_relay_url
        self.push_relay = WebhookRelay(relay_url) if relay_url else None
        self.push = PushCeremony(
            store=self.store,
            counters=self.counters,
            challenges=self.challenges,
            keyring=self.keyring,
            policy=self.policy,
            audit=self.audit,
            clock=self.clock,
            verifier=self.verifier,
            enrollment=self.enrollment,
            public_url=self.settings.public_url,
            relay=self.push_relay,
        )

    def _gateway_config(self) -> HttpGatewayConfig | None:
        """``gateway.http`` of the configuration file (else the policy file), read against the
        policy: forward-auth's routes. None when there is none; a section that cannot be read
        stops the start, as a policy that cannot be read does."""
        source = self.settings.config_path or self.settings.policy_path
        compiled = self.policy.current
        if not self._with_forward_auth or source is None or compiled is None:
            return None
        config = find_gateway_config(source, compiled)
        for warning in config.warnings if config is not None else ():
            log.warning("gateway_config_warning", warning=warning)
        return config

    def _open_forward_auth(self, config: HttpGatewayConfig | None) -> None:
        """The gate of ``/v1/forward-auth`` (``gateway/http/forward_auth.py``)."""
        if config is not None:
            # Here, not at the top: the gateway's edge code imports the API's (its callers).
            from piigate.gateway.http.forward_auth import ForwardAuth

            self.forward_auth = ForwardAuth.of_node(self, config)

    async def _announce(self, opened: OpenedKeyring) -> None:
        """Audit the start (and keys it created or moved into the store); report whether a
        policy is in force."""
        if opened.created:
            await self.audit.record("keyring_created", data={"kids": list(opened.created)})
        if opened.imported:
            await self.audit.record("keyring_imported", data={"kids": list(opened.imported)})
        announce_locator(self.geo)
        compiled = self.policy.current
        self.metrics.policy_loaded.set(1 if compiled else 0)
        started = {"version": __version__, "policy": compiled.digest if compiled else None}
        await self.audit.record("service_started", data={**started, "pid": os.getpid()})

    def _start_background(self) -> None:
        followers = [self.forward_auth.reload] if self.forward_auth is not None else []
        self.policy_watch = PolicyWatch(
            self.policy, audit=self.audit, metrics=self.metrics, followers=followers
        )
        self.purge = Purge(self.store, self.clock)
        self._tasks.append(asyncio.create_task(refresh_keys(self.keyring), name="piigate-keys"))
        if self.policy.path is not None:
            self._tasks.append(asyncio.create_task(self.policy_watch.run(), name="piigate-policy"))
        self._tasks.append(asyncio.create_task(self.purge.run(), name="piigate-purge"))
        self._tasks.extend(self.monitoring.tasks())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.forward_auth is not None:
            await self.forward_auth.aclose()
        for idp in (self.jwt, self.oidc):
            if idp is not None:
                await idp.aclose()
        await self.sms_sender.aclose()
        if self.push_relay is not None:
            await self.push_relay.aclose()
        if self.redis_counters is not None:
            await self.redis_counters.aclose()
        await self.audit.stop()
        self.risk.close()
        self.geo.close()
        self.bus.close()
        await self.db.close()

    def request_reload(self) -> None:
        """Ask for a policy reload now (SIGHUP)."""
        self.policy_watch.request()

    async def reload_policy(self) -> bool:
        """Reload the policy file now: True when the new policy is in force."""
        return await self.policy_watch.reload()

    async def _load_api_key(self, digest: bytes) -> ApiKeyPrincipal | None:
        row = await self.store.find_api_key(digest)
        if row is None:
            return None
        return ApiKeyPrincipal(row.id, row.name, frozenset(row.roles), frozenset(row.scopes))


def _policy_file(settings: Settings) -> PolicyHolder:
    if settings.policy_path is None:
        raise PolicyError(["no policy: pass --config FILE or set PIIGATE_POLICY"])
    return PolicyHolder.from_file(settings.policy_path)


def _relying_party(settings: Settings) -> RelyingParty:
    """WebAuthn's relying party: the public URL's host; the origin is its scheme://host:port."""
    try:
        return relying_party(settings.public_url)
    except ValueError as exc:
        raise ConfigError([f"public_url: {exc}"]) from exc
