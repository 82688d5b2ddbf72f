"""Events from other nodes on the bus (``publish_remote``), which ``local_only`` subscribers do
not see, and the fan-out's message format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from piigate.audit.bus import EventBus
from piigate.audit.fanout import parse_message
from piigate.model import AuditEvent

T0 = datetime(2026, 5, 4, tzinfo=UTC)


def event(seq: int) -> AuditEvent:
    return AuditEvent("login", T0, "alice", {}, seq=seq)


async def test_local_only_subscribers_see_this_nodes_events_only() -> None:
    bus = EventBus()
    everything, own = bus.subscribe(), bus.subscribe(local_only=True)
    bus.publish(event(1))
    bus.publish_remote(event(2))
    bus.publish(event(3))
    assert [e.seq for e in everything.drain()] == [1, 2, 3]
    assert [e.seq for e in own.drain()] == [1, 3]


async def test_a_full_queue_drops_its_subscriber_for_remote_events_too() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=1)
    bus.publish_remote(event(1))
    bus.publish_remote(event(2))
    assert slow.lagged and bus.subscriber_count == 0 and bus.dropped_subscribers == 1


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("n0123456789abcdef 5", ("n0123456789abcdef", [5])),
        ("n0123456789abcdef 5,6,700", ("n0123456789abcdef", [5, 6, 700])),
        ("n0123456789abcdef", None),
        ("n0123456789abcdef ", None),
        ("x0123456789abcdef 5", None),
        ("n0123456789abcdef 5,-1", None),
        ("n0123456789abcdef 5,,6", None),
        ("n0123456789abcdef " + ",".join(["1"] * 201), None),  # more than a message carries
        ("n0123456789abcdef 99999999999999999999", None),  # beyond a seq
        ('n0123456789abcdef {"seq": 5}', None),
    ],
)
def test_relay_messages_are_read_strictly(text: str, parsed: object) -> None:
    assert parse_message(text) == parsed
