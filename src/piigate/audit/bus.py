"""In-process fan-out of committed audit events (feeds ``GET /v1/events/stream``).

Two sources: this node's own commits (:meth:`EventBus.publish`, from the audit log) and the
events other nodes committed, fanned in by ``audit/fanout.py`` (:meth:`EventBus.publish_remote`).
A subscriber sees both unless it subscribes ``local_only`` (what must happen once per event
across the nodes: raising alerts, relaying to the other nodes).

Each subscriber has its own bounded queue, so one slow reader never slows the audit log or the
other readers. A subscriber whose queue overflows is dropped: it still receives what was queued,
then :class:`SubscriberLagged` tells it the last seq it saw, so it can catch up from the store
(``AuditLog.list_events(after=...)``) and subscribe again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from types import TracebackType

from piigate.model import AuditEvent

__all__ = ["EventBus", "SubscriberLagged", "Subscription", "SubscriptionClosed"]


class SubscriberLagged(Exception):
    """The subscriber fell behind and was dropped; events after ``last_seq`` were not sent."""

    def __init__(self, last_seq: int | None) -> None:
        super().__init__(f"subscriber fell behind after seq {last_seq}")
        self.last_seq = last_seq


class SubscriptionClosed(Exception):
    """The subscription (or the whole bus) was closed."""


_WAKE = object()


class Subscription:
    """An async iterator of events; use as ``async with bus.subscribe() as sub: async for ...``."""

    def __init__(
        self,
        bus: EventBus,
        *,
        maxsize: int,
        types: frozenset[str],
        local_only: bool = False,
        where: Callable[[AuditEvent], bool] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._bus = bus
        self._queue: asyncio.Queue[AuditEvent | object] = asyncio.Queue(maxsize)
        self.types = types
        self.local_only = local_only
        self.where = where
        self.last_seq: int | None = None
        self.lagged = False
        self.closed = False

    def wants(self, event: AuditEvent) -> bool:
        if self.types and event.type not in self.types:
            return False
        if self.where is None:
            return True
        try:
            return self.where(event)
        except Exception:  # queued: the subscriber's own handling of it will say what fails
            return True

    def offer(self, event: AuditEvent) -> bool:
        """Queue ``event`` without waiting; False (and the subscriber is lagged) when full."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True
            return False
        return True

    async def get(self) -> AuditEvent:
        while True:
            if self._queue.empty():
                if self.lagged:
                    raise SubscriberLagged(self.last_seq)
                if self.closed:
                    raise SubscriptionClosed
            item = await self._queue.get()
            if isinstance(item, AuditEvent):
                self.last_seq = item.seq
                return item

    def drain(self) -> list[AuditEvent]:
        """The events queued so far, without waiting (for readers that poll between requests)."""
        events: list[AuditEvent] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return events
            if isinstance(item, AuditEvent):
                self.last_seq = item.seq
                events.append(item)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus._remove(self)
        # Wake a reader waiting on an empty queue; a full one sees the flag once drained.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_WAKE)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> AuditEvent:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventBus:
    """Publishes each committed event to every subscriber that wants its type."""

    def __init__(self, *, default_maxsize: int = 1000) -> None:
        self._subscribers: list[Subscription] = []
        self._default_maxsize = default_maxsize
        self.dropped_subscribers = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(
        self,
        *,
        types: Iterable[str] = (),
        maxsize: int | None = None,
        local_only: bool = False,
        where: Callable[[AuditEvent], bool] | None = None,
    ) -> Subscription:
        """Events of ``types`` (all when empty); ``local_only``: this node's own only;
        ``where``: only those it accepts, asked of each as it is published, in the publisher's
        turn (so it must be quick; one that raises counts as accepted)."""
        subscription = Subscription(
            self,
            maxsize=self._default_maxsize if maxsize is None else maxsize,
            types=frozenset(types),
            local_only=local_only,
            where=where,
        )
        self._subscribers.append(subscription)
        return subscription

    def publish(self, event: AuditEvent) -> None:
        """An event this node committed. Never blocks: a subscriber that cannot take the event
        is dropped and told."""
        self._deliver(event, remote=False)

    def publish_remote(self, event: AuditEvent) -> None:
        """An event another node committed (not offered to ``local_only`` subscribers)."""
        self._deliver(event, remote=True)

    def _deliver(self, event: AuditEvent, *, remote: bool) -> None:
        for subscription in list(self._subscribers):
            if remote and subscription.local_only:
                continue
            if subscription.wants(event) and not subscription.offer(event):
                self._remove(subscription)
                self.dropped_subscribers += 1

    def close(self) -> None:
        """End every subscription (their iterators stop after what is queued)."""
        for subscription in list(self._subscribers):
            subscription.close()

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)
