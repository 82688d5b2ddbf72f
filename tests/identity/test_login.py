"""``identity.login.Logins`` over in-memory ports: what the HTTP tests (tests/api/test_api_login.py,
test_api_auth.py) do not reach — the metric outcomes, disabled users, the per-network throttle,
the one-check-at-a-time marker, and what a session's store row and audit events hold."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from piigate.clock import FixedClock
from piigate.crypto.secret import Secret
from piigate.errors import TooManyRequests, Unauthorized
from piigate.identity import hash_password
from piigate.identity.federation import FederatedLogin
from piigate.identity.login import LoginOutcome, Logins, session_token_hash
from piigate.identity.throttle import ThrottlePolicy, throttle_keys
from piigate.policy.holder import PolicyHolder
from piigate.store.sessions import SessionRow
from piigate.store.users import UserRow
from stepup_support import RecordingAudit

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"
PASSWORD = "correct horse battery staple"
WRONG = "Tr0ub4dor&3-not-it"
IP = "192.0.2.7"
IP_KEY = f"key-of-{len(IP)}"  # the keyed hash the audit shows instead of the address


@cache
def _hash() -> str:
    return hash_password(Secret(PASSWORD))


@dataclass
class MemoryLoginStore:
    users: dict[str, UserRow] = field(default_factory=dict)
    sessions: dict[str, SessionRow] = field(default_factory=dict)

    def add(self, name: str, *, disabled: bool = False) -> None:
        self.users[name] = UserRow(name, _hash(), ("clerk",), T0, disabled)

    async def get_user(self, username: str) -> UserRow | None:
        return self.users.get(username)

    async def create_session(
        self,
        token_hash: str,
        username: str,
        level: str | None,
        amr: Iterable[str],
        auth_time: datetime,
        expires_at: datetime,
        now: datetime,
        *,
        roles: Iterable[str] | None = None,
        issuer: str | None = None,
    ) -> SessionRow:
        kept = None if roles is None else tuple(roles)
        row = SessionRow(
            token_hash,
            username,
            level,
            tuple(amr),
            auth_time,
            now,
            expires_at,
            issuer=issuer,
            roles=kept,
        )
        self.sessions[token_hash] = row
        return row

    async def get_session(self, token_hash: str, now: datetime) -> SessionRow | None:
        row = self.sessions.get(token_hash)
        return row if row is not None and row.expires_at > now else None

    async def delete_session(self, token_hash: str) -> bool:
        return self.sessions.pop(token_hash, None) is not None


@dataclass
class MemoryCounters:
    """Fixed windows, as ``store.counters.SqlCounters`` keeps them."""

    windows: dict[str, tuple[int, datetime]] = field(default_factory=dict)

    async def hit(self, key: str, *, window_seconds: float, now: datetime, amount: int = 1) -> int:
        count, end = self.windows.get(key, (0, now))
        if end <= now:
            count, end = 0, now + timedelta(seconds=window_seconds)
        self.windows[key] = (count + amount, end)
        return count + amount

    async def active_until(self, key: str, now: datetime) -> datetime | None:
        count, end = self.windows.get(key, (0, now))
        return end if count > 0 and end > now else None

    async def reset(self, key: str) -> None:
        self.windows.pop(key, None)


@dataclass
class World:
    logins: Logins
    store: MemoryLoginStore
    counters: MemoryCounters
    audit: RecordingAudit
    clock: FixedClock
    outcomes: list[LoginOutcome]


@pytest.fixture
def world() -> World:
    store, counters, audit, clock = (
        MemoryLoginStore(),
        MemoryCounters(),
        RecordingAudit(),
        FixedClock(T0),
    )
    outcomes: list[LoginOutcome] = []
    logins = Logins(
        store=store,
        counters=counters,
        policy=PolicyHolder.from_file(str(EXAMPLE_POLICY)),
        audit=audit,
        clock=clock,
        session_ttl=3600,
        count=outcomes.append,
        throttle=ThrottlePolicy(free_failures=2, ip_free_failures=3),
        address_key=lambda ip: f"key-of-{len(ip)}",
    )
    store.add("alice")
    return World(logins, store, counters, audit, clock, outcomes)


async def test_a_login_opens_a_session_known_by_its_token_hash_only(world: World) -> None:
    opened = await world.logins.login("alice", Secret(PASSWORD), IP)
    assert opened.token is not None and len(opened.token) > 20
    assert opened.subject.id == "alice" and opened.subject.roles == {"clerk"}
    assert opened.session.level == "aal1"  # the policy's first level
    assert opened.session.amr == ("pwd",) and opened.session.auth_time == T0
    token_hash = session_token_hash(opened.token)
    assert list(world.store.sessions) == [token_hash]
    assert opened.session.id == token_hash[:16]
    assert world.store.sessions[token_hash].expires_at == T0 + timedelta(seconds=3600)
    assert world.outcomes == [LoginOutcome.OK]
    [event] = world.audit.of("login_succeeded")
    assert event == {"ip_key": IP_KEY, "session_id": token_hash[:16], "level": "aal1"}
    assert opened.token not in world.audit.text() and PASSWORD not in world.audit.text()

    found = await world.logins.session_for(opened.token)
    assert found is not None and found.token is None
    assert (found.subject, found.session) == (opened.subject, opened.session)


async def test_unknown_disabled_and_wrong_look_the_same(world: World) -> None:
    world.store.add("bob", disabled=True)
    details = []
    for name, password in (("alice", WRONG), ("nobody", PASSWORD), ("bob", PASSWORD)):
        with pytest.raises(Unauthorized) as caught:
            await world.logins.login(name, Secret(password), IP)
        details.append(caught.value.detail)
    assert details == ["invalid username or password"] * 3
    assert world.outcomes == [LoginOutcome.FAILED] * 3
    assert world.audit.of("login_failed") == [{"ip_key": IP_KEY}] * 3
    assert not world.store.sessions


async def test_a_session_ends_with_its_user_its_expiry_or_a_logout(world: World) -> None:
    opened = await world.logins.login("alice", Secret(PASSWORD), None)
    assert opened.token is not None
    token_hash = session_token_hash(opened.token)
    assert await world.logins.session_for("") is None
    assert await world.logins.session_for("x" * 257) is None
    world.store.add("alice", disabled=True)
    assert await world.logins.session_for(opened.token) is None
    world.store.add("alice")
    world.clock.advance(3600)
    assert await world.logins.session_for(opened.token) is None

    await world.logins.logout(opened.token)
    await world.logins.logout(opened.token)  # nothing left to end: not audited again
    assert world.audit.of("logout") == [{"session_id": token_hash[:16]}]
    assert opened.token not in world.audit.text()


async def test_failures_back_off_the_user_and_then_the_network(world: World) -> None:
    for _ in range(3):  # two free failures, the third starts a 2 s back-off
        with pytest.raises(Unauthorized):
            await world.logins.login("alice", Secret(WRONG), IP)
    with pytest.raises(TooManyRequests) as caught:
        await world.logins.login("alice", Secret(PASSWORD), IP)
    assert caught.value.retry_after == 2
    assert world.audit.of("login_throttled") == [{"ip_key": IP_KEY, "retry_after": 2}]
    # The network has had three failures too: its fourth, on another account, backs it off.
    world.store.add("carol")
    with pytest.raises(Unauthorized):
        await world.logins.login("carol", Secret(WRONG), IP)
    with pytest.raises(TooManyRequests):
        await world.logins.login("carol", Secret(PASSWORD), IP)
    # From another network, carol is not held back.
    assert (await world.logins.login("carol", Secret(PASSWORD), "198.51.100.1")).token
    world.clock.advance(2)
    assert (await world.logins.login("alice", Secret(PASSWORD), IP)).token
    user_key, _ = throttle_keys("alice", IP)
    assert user_key not in world.counters.windows  # a success clears the user's count
    assert world.outcomes.count(LoginOutcome.THROTTLED) == 2


async def test_a_check_already_running_for_the_user_refuses_a_second(world: World) -> None:
    user_key, _ = throttle_keys("alice", IP)
    marker = f"{user_key}:inflight"
    await world.counters.hit(marker, window_seconds=30, now=T0)  # another node is checking
    with pytest.raises(TooManyRequests) as caught:
        await world.logins.login("alice", Secret(PASSWORD), IP)
    assert caught.value.retry_after == 1
    assert world.outcomes == [LoginOutcome.THROTTLED]
    assert marker in world.counters.windows  # the running check clears it, not this one
    await world.counters.reset(marker)
    assert (await world.logins.login("alice", Secret(PASSWORD), IP)).token
    assert marker not in world.counters.windows


async def test_parallel_checks_of_one_user_run_one_at_a_time(world: World) -> None:
    results = await asyncio.gather(
        *(world.logins.login("alice", Secret(WRONG), IP) for _ in range(5)),
        return_exceptions=True,
    )
    kinds = sorted(type(r).__name__ for r in results)
    assert kinds.count("Unauthorized") == 1 and kinds.count("TooManyRequests") == 4


def federated(acr: str | None = "urn:piigate:aal2", subject: str = "dana") -> FederatedLogin:
    return FederatedLogin(
        issuer="https://idp.example",
        subject_id=subject,
        roles=frozenset({"security"}),
        acr=acr,
        amr=("pwd", "otp"),
        auth_time=T0 - timedelta(minutes=3),
    )


async def test_a_federated_session_needs_no_local_user_and_keeps_the_providers_word(
    world: World,
) -> None:
    opened = await world.logins.open_federated(federated(), IP)
    assert opened.token is not None
    assert opened.subject.id == "dana" and opened.subject.roles == {"security"}
    assert opened.session.level == "aal2"  # the policy maps the provider's acr
    assert opened.session.amr == ("pwd", "otp")
    assert opened.session.auth_time == T0 - timedelta(minutes=3)
    row = world.store.sessions[session_token_hash(opened.token)]
    assert (row.issuer, row.roles) == ("https://idp.example", ("security",))
    [event] = world.audit.of("login_succeeded")
    assert event["issuer"] == "https://idp.example" and event["level"] == "aal2"
    found = await world.logins.session_for(opened.token)
    assert found is not None
    assert (found.subject, found.session) == (opened.subject, opened.session)
    # An acr the policy does not map proves what a password proves: the first level.
    other = await world.logins.open_federated(federated("urn:other:loa"), IP)
    assert other.session.level == "aal1"


async def test_a_disabled_local_account_of_the_same_name_ends_a_federated_session(
    world: World,
) -> None:
    opened = await world.logins.open_federated(federated(subject="alice"), IP)
    assert opened.token is not None
    # alice is also a local user: the session's roles stay the provider's.
    found = await world.logins.session_for(opened.token)
    assert found is not None and found.subject.roles == {"security"}
    assert await world.logins.may_federate("alice") and await world.logins.may_federate("dana")
    world.store.add("alice", disabled=True)
    assert await world.logins.session_for(opened.token) is None
    assert not await world.logins.may_federate("alice")


async def test_failed_answers_from_the_provider_back_off_the_network(world: World) -> None:
    await world.logins.refuse_while_backed_off(IP)
    for _ in range(4):  # three free failures for the network, the fourth starts a back-off
        await world.logins.count_network_failure(IP, method="oidc", reason="state_mismatch")
    assert world.audit.of("login_failed")[-1] == {
        "ip_key": IP_KEY,
        "method": "oidc",
        "reason": "state_mismatch",
    }
    assert world.outcomes == [LoginOutcome.FAILED] * 4
    with pytest.raises(TooManyRequests) as caught:
        await world.logins.refuse_while_backed_off(IP)
    assert caught.value.retry_after == 2
    # The network's password logins wait too; another network does not.
    with pytest.raises(TooManyRequests):
        await world.logins.login("alice", Secret(PASSWORD), IP)
    await world.logins.refuse_while_backed_off("198.51.100.1")
    await world.logins.refuse_while_backed_off(None)  # no address: nothing to count it by


def test_a_federated_login_keeps_as_data_and_nothing_else_reads_as_one() -> None:
    login = federated()
    assert FederatedLogin.from_data(login.data()) == login
    for broken in (
        {**login.data(), "subject_id": ""},
        {**login.data(), "roles": "security"},
        {**login.data(), "amr": [1]},
        {**login.data(), "acr": 2},
        {**login.data(), "auth_time": True},
        {k: v for k, v in login.data().items() if k != "issuer"},
    ):
        assert FederatedLogin.from_data(broken) is None
