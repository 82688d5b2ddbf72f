"""A node's monitoring, wired from its settings: the alert desk and its sinks, the counting of
step-ups for ``/metrics``, and the fan-out of events between nodes.

``Services.start`` opens it once the audit log has its first event (the deployment's name for
a shared Redis channel comes from it); its tasks run with the node's other background tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from piigate.api.metrics import EventCounts
from piigate.audit.bus import EventBus, SubscriberLagged, SubscriptionClosed
from piigate.audit.desk import AlertDesk
from piigate.audit.fanout import FanOut
from piigate.audit.sink_settings import AlertSettings
from piigate.audit.sinks import JsonLinesSink, QueuedSink, SyslogSink
from piigate.audit.webhook import WebhookSink
from piigate.store.alerts import AlertStore
from piigate.store.event_relay import open_relay

if TYPE_CHECKING:
    from piigate.api.services import Services

__all__ = ["Monitoring", "open_monitoring", "open_sinks"]


class Monitoring:
    """The alert desk, the sinks it feeds, and the fan-out (None on a single SQLite node)."""

    def __init__(self, desk: AlertDesk, counts: EventCounts, fanout: FanOut | None) -> None:
        self.desk = desk
        self.counts = counts
        self.fanout = fanout

    def tasks(self) -> list[asyncio.Task[None]]:
        """The monitoring's task, started (:meth:`run`)."""
        return [asyncio.create_task(self.run(), name="piigate-monitoring")]

    async def run(self) -> None:
        """The alert watcher, the step-up counter and the fan-out's sender and receiver, until
        cancelled; then the sinks and the relay are closed."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.desk.run(), name="piigate-alerts")
                group.create_task(count_events(self.desk.bus, self.counts), name="piigate-count")
                if self.fanout is not None:
                    group.create_task(self.fanout.send(), name="piigate-fanout-send")
                    group.create_task(self.fanout.receive(), name="piigate-fanout-receive")
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the sinks (alerts still queued are not sent) and the relay."""
        for sink in self.desk.sinks:
            await sink.aclose()
        if self.fanout is not None:
            await self.fanout.aclose()


def open_sinks(settings: AlertSettings) -> list[QueuedSink]:
    """The sinks ``service.alerts`` configures, in a fixed order."""
    sinks: list[QueuedSink] = []
    if settings.webhook is not None:
        sinks.append(WebhookSink(settings.webhook))
    if settings.jsonl is not None:
        sinks.append(JsonLinesSink(settings.jsonl))
    if settings.syslog is not None:
        sinks.append(SyslogSink(settings.syslog))
    return sinks


async def open_monitoring(services: Services) -> Monitoring:
    """Monitoring for a node whose store, audit log and metrics are open."""
    counts = services.metrics.events
    sinks = open_sinks(services.settings.alerts)
    desk = AlertDesk(
        rows=AlertStore(services.db),
        audit=services.audit,
        bus=services.bus,
        clock=services.clock,
        sinks=sinks,
        count=counts.alert_raised,
    )
    counts.sinks = lambda: _sink_counts(sinks)
    first = await services.audit.events_at([1])
    deployment = (first[0].hash or "")[:16] if first else "default"
    relay = open_relay(services.db, services.settings.redis_url, deployment=deployment)
    fanout = None
    if relay is not None:
        fanout = FanOut(bus=services.bus, audit=services.audit, relay=relay)
        relayed = fanout.counts
        counts.fanout = lambda: {
            "sent": relayed.sent,
            "received": relayed.received,
            "failures": relayed.failures,
        }
    return Monitoring(desk, counts, fanout)


def _sink_counts(sinks: list[QueuedSink]) -> Mapping[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for sink in sinks:
        found[(sink.name, "delivered")] = sink.counts.delivered
        found[(sink.name, "dropped")] = sink.counts.dropped
        found[(sink.name, "failed")] = sink.counts.failed
    return found


async def count_events(bus: EventBus, counts: EventCounts) -> None:
    """Count this node's step-up results as they commit (``piigate_stepups_total``)."""
    types = EventCounts.STEPUP_TYPES
    subscription = bus.subscribe(types=types, maxsize=10_000, local_only=True)
    try:
        while True:
            try:
                counts.observe(await subscription.get())
            except SubscriberLagged:
                subscription = bus.subscribe(types=types, maxsize=10_000, local_only=True)
    except SubscriptionClosed:
        return
    finally:
        with contextlib.suppress(Exception):
            subscription.close()
