"""The signals piigate records (``denied_push``, ``reported_activity``) without a query per
decision: store reads at most once per refresh interval (other nodes' evidence), this node's own
at once from the event bus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from piigate.audit.bus import EventBus
from piigate.factors import CeremonyPurpose, CeremonyState
from piigate.model import AccessRequest, Action, AuditEvent, Subject
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.risk.port import CarriedRisk
from piigate.risk.recorded import RECORDED_SIGNALS, RecordedRisk, RecordedSignal
from piigate.store import Database, Store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
POLICY = PolicyHolder(
    compile_policy(
        load_policy_text(
            "version: 1\nlevels: {aal1: {acr: a1}}\nrules: []\nrisk: {denied_push: 35}\n"
        )
    )
)


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def read(subject: str = "alice") -> AccessRequest:
    return AccessRequest(Subject(subject), Action.READ)


class CountingStore:
    """The store, counting its reads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads = 0

    async def recent_ceremonies(self, **kw: object) -> object:
        self.reads += 1
        return await self.store.recent_ceremonies(**kw)  # type: ignore[arg-type]


def counted(
    store: CountingStore,
    policy: PolicyHolder,
    signals: tuple[RecordedSignal, ...] = RECORDED_SIGNALS,
) -> RecordedRisk:
    """Recorded signals over a store that counts its reads."""
    return RecordedRisk(
        CarriedRisk(),
        store,  # type: ignore[arg-type]
        policy,
        signals=signals,
        monotonic=Ticks(),
    )


async def deny_push(store: Store, id: str, subject: str, at: datetime) -> None:
    await store.open_ceremony(
        id=id, subject_id=subject, purpose="push", now=at, expires_at=at + timedelta(minutes=2)
    )
    assert await store.close_ceremony(id, new="denied", now=at)


async def test_other_nodes_denials_count_after_the_refresh_interval(db: Database) -> None:
    store = CountingStore(Store(db))
    ticks = Ticks()
    risk = RecordedRisk(CarriedRisk(), store, POLICY, monotonic=ticks)  # type: ignore[arg-type]
    assert (await risk.assess(read(), now=T0)).signals == ()
    await deny_push(store.store, "psh_1", "alice", T0)  # by another node
    for _ in range(20):  # decisions within the interval: no further reads
        assert (await risk.assess(read(), now=T0)).signals == ()
    assert store.reads == 1  # one query for every signal's evidence
    ticks.now += 1.0
    assessed = await risk.assess(read(), now=T0 + timedelta(seconds=1))
    assert assessed.score == 35 and [s.name for s in assessed.signals] == ["denied_push"]
    assert store.reads == 2
    assert (await risk.assess(read("bob"), now=T0)).signals == ()
    # An hour later the denial no longer counts.
    later = T0 + timedelta(hours=1, seconds=2)
    assert (await risk.assess(read(), now=later)).signals == ()


async def test_this_nodes_denials_count_at_once(db: Database) -> None:
    bus = EventBus()
    ticks = Ticks()
    risk = RecordedRisk(CarriedRisk(), Store(db), POLICY, bus=bus, monotonic=ticks)
    try:
        assert (await risk.assess(read(), now=T0)).signals == ()
        bus.publish(AuditEvent("alert", T0, "alice", {"kind": "push_denied"}, seq=7))
        bus.publish(AuditEvent("alert", T0, "bob", {"kind": "something_else"}, seq=8))
        assert (await risk.assess(read(), now=T0)).signal_names == {"denied_push"}
        assert (await risk.assess(read("bob"), now=T0)).signals == ()
    finally:
        risk.close()
    assert bus.subscriber_count == 0


async def report(store: Store, seq: int, subject: str, at: datetime) -> None:
    await store.open_ceremony(
        id=f"cer_rep_{seq}",
        subject_id=subject,
        purpose="reported_activity",
        now=at,
        expires_at=at + timedelta(days=1),
        data={"event_seq": seq, "event_type": "decision"},
    )


async def test_reports_by_the_subject_raise_their_risk_for_the_window(db: Database) -> None:
    store = Store(db)
    ticks = Ticks()
    risk = RecordedRisk(CarriedRisk(), store, POLICY, monotonic=ticks)
    await report(store, 41, "alice", T0)  # on another node
    assessed = await risk.assess(read(), now=T0 + timedelta(seconds=5))
    assert assessed.score == 40 and [s.name for s in assessed.signals] == ["reported_activity"]
    assert assessed.signals[0].detail == (
        "1 event(s) reported by the subject as not theirs in the last 24 h"
    )
    assert (await risk.assess(read("bob"), now=T0)).signals == ()
    ticks.now += 1.0
    later = T0 + timedelta(days=1, seconds=1)
    assert (await risk.assess(read(), now=later)).signals == ()


async def test_both_recorded_signals_add_up_capped_at_100(db: Database) -> None:
    store = Store(db)
    heavy = PolicyHolder(
        compile_policy(
            load_policy_text(
                "version: 1\nlevels: {aal1: {acr: a1}}\nrules: []\n"
                "risk: {denied_push: 70, reported_activity: {weight: 45, window: 2h}}\n"
            )
        )
    )
    risk = RecordedRisk(CarriedRisk(), store, heavy, monotonic=Ticks())
    await deny_push(store, "psh_1", "alice", T0)
    await report(store, 42, "alice", T0 - timedelta(hours=1))
    assessed = await risk.assess(read(), now=T0)
    assert assessed.score == 100
    assert [(s.name, s.weight) for s in assessed.signals] == [
        ("denied_push", 70),
        ("reported_activity", 45),
    ]
    # The policy's window (2 h) holds, not the default day.
    risk = RecordedRisk(CarriedRisk(), store, heavy, monotonic=Ticks())
    assessed = await risk.assess(read(), now=T0 + timedelta(hours=1, minutes=1))
    assert [s.name for s in assessed.signals] == []


async def test_this_nodes_reports_count_at_once(db: Database) -> None:
    bus = EventBus()
    risk = RecordedRisk(CarriedRisk(), Store(db), POLICY, bus=bus, monotonic=Ticks())
    try:
        assert (await risk.assess(read(), now=T0)).signals == ()
        event = {"kind": "reported_by_subject", "event_seq": 3, "event_type": "decision"}
        bus.publish(AuditEvent("alert", T0, "alice", event, seq=9))
        assert (await risk.assess(read(), now=T0)).signal_names == {"reported_activity"}
        assert (await risk.assess(read("bob"), now=T0)).signals == ()
    finally:
        risk.close()


async def test_one_read_serves_every_signal_each_with_its_purpose_states_and_window(
    db: Database,
) -> None:
    store = CountingStore(Store(db))
    raw = store.store
    windows = PolicyHolder(
        compile_policy(
            load_policy_text(
                "version: 1\nlevels: {aal1: {acr: a1}}\nrules: []\n"
                "risk: {denied_push: 30, reported_activity: {weight: 20, window: 2h}}\n"
            )
        )
    )
    now = T0 + timedelta(hours=3)
    # Push denials: within the hour (counts), approved (not a denial), two hours ago (too old).
    await deny_push(raw, "psh_1", "alice", now - timedelta(minutes=30))
    await deny_push(raw, "psh_2", "alice", now - timedelta(minutes=50))
    await deny_push(raw, "psh_old", "alice", now - timedelta(hours=2))
    await raw.open_ceremony(
        id="psh_ok", subject_id="alice", purpose="push", now=now, expires_at=now + timedelta(1)
    )
    assert await raw.close_ceremony("psh_ok", new="approved", now=now)
    # Reports, in any state: within the policy's two hours (counts), three hours ago (too old).
    await report(raw, 41, "alice", now - timedelta(minutes=90))
    await report(raw, 42, "bob", now - timedelta(minutes=10))
    await report(raw, 43, "alice", now - timedelta(hours=3))
    risk = counted(store, windows)
    alice = await risk.assess(read(), now=now)
    assert [(s.name, s.weight, s.detail) for s in alice.signals] == [
        ("denied_push", 30, "2 push approval(s) denied in the last 60 min"),
        (
            "reported_activity",
            20,
            "1 event(s) reported by the subject as not theirs in the last 2 h",
        ),
    ]
    bob = await risk.assess(read("bob"), now=now)
    assert [(s.name, s.detail) for s in bob.signals] == [
        ("reported_activity", "1 event(s) reported by the subject as not theirs in the last 2 h")
    ]
    assert store.reads == 1


async def test_signals_of_one_purpose_each_count_their_own_states(db: Database) -> None:
    """Two signals over push ceremonies, one counting denials, one any answer, read at once."""
    store = CountingStore(Store(db))
    answered = RecordedSignal(
        "answered_push", CeremonyPurpose.PUSH, (CeremonyState.APPROVED, CeremonyState.DENIED),
        "answered_push", 10, 600, "push(es) answered",
    )  # fmt: skip
    signals = (RECORDED_SIGNALS[0], answered)
    await deny_push(store.store, "psh_1", "alice", T0)
    await store.store.open_ceremony(
        id="psh_2", subject_id="alice", purpose="push", now=T0, expires_at=T0 + timedelta(1)
    )
    assert await store.store.close_ceremony("psh_2", new="approved", now=T0)
    await store.store.open_ceremony(  # still open: neither
        id="psh_3", subject_id="alice", purpose="push", now=T0, expires_at=T0 + timedelta(1)
    )
    risk = counted(store, POLICY, signals)
    assessed = await risk.assess(read(), now=T0 + timedelta(minutes=1))
    assert [(s.name, s.detail) for s in assessed.signals] == [
        ("denied_push", "1 push approval(s) denied in the last 60 min"),
        ("answered_push", "2 push(es) answered in the last 10 min"),
    ]
    assert store.reads == 1
    # Past the narrower window only the wider one counts.
    risk = counted(store, POLICY, signals)
    assessed = await risk.assess(read(), now=T0 + timedelta(minutes=11))
    assert [s.name for s in assessed.signals] == ["denied_push"]
