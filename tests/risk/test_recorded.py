"""The signals piigate records (``denied_push``, ``reported_activity``) without a query per
decision: store reads at most once per refresh interval (other nodes' evidence), this node's own
at once from the event bus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from piigate.audit.bus import EventBus
from piigate.model import AccessRequest, Action, AuditEvent, Subject
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.risk.port import CarriedRisk
from piigate.risk.recorded import RECORDED_SIGNALS, RecordedRisk
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

    async def list_ceremonies(self, **kw: object) -> object:
        self.reads += 1
        return await self.store.list_ceremonies(**kw)  # type: ignore[arg-type]


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
    per_refresh = len(RECORDED_SIGNALS)  # one query for each signal's evidence
    assert store.reads == per_refresh
    ticks.now += 1.0
    assessed = await risk.assess(read(), now=T0 + timedelta(seconds=1))
    assert assessed.score == 35 and [s.name for s in assessed.signals] == ["denied_push"]
    assert store.reads == 2 * per_refresh
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
