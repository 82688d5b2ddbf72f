"""Every node's events on every node's bus: the fan-out between nodes of one deployment.

Each node sends the seqs of the events it commits over a relay (``store/event_relay.py``: Redis
pub/sub, or PostgreSQL ``LISTEN``/``NOTIFY``) as ``<node id> <seq>,<seq>,...``; the others
read those events from the shared store and publish them on their own bus as remote events
(``EventBus.publish_remote``), where live feeds see them and ``local_only`` subscribers (the
alert desk, this sender) do not. A node ignores its own echoes. Only seqs cross the relay: no
event data, and a receiver never takes an event's content from a message.

A relay that fails is retried with back-off; meanwhile nothing is lost that matters: the events
are in the store, and readers that must see every event (``GET /v1/events/stream``) read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from piigate.audit.bus import EventBus, SubscriberLagged, SubscriptionClosed
from piigate.audit.log import AuditLog
from piigate.store.db import StoreUnavailable
from piigate.store.event_relay import EventRelay

__all__ = ["FanOut", "FanOutCounts", "parse_message"]

_logger = logging.getLogger(__name__)

_NODE = re.compile(r"n[0-9a-f]{16}")
_MAX_SEQS: Final = 200  # per message: well under NOTIFY's 8000-byte payload
_BACKLOG = 10_000
_RETRY_MIN, _RETRY_MAX = 0.5, 30.0


@dataclass(slots=True)
class FanOutCounts:
    sent: int = 0  # messages published
    received: int = 0  # events from other nodes put on this bus
    failures: int = 0  # relay failures (each followed by a retry)


def parse_message(text: str) -> tuple[str, list[int]] | None:
    """``(node id, seqs)`` of a relay message; None for anything malformed."""
    node, sep, rest = text.partition(" ")
    if not sep or not _NODE.fullmatch(node):
        return None
    parts = rest.split(",")
    if not 0 < len(parts) <= _MAX_SEQS or not all(p.isdigit() and len(p) < 19 for p in parts):
        return None
    return node, [int(p) for p in parts]


class FanOut:
    """This node's end of the fan-out: a sender and a receiver task over one relay."""

    def __init__(self, *, bus: EventBus, audit: AuditLog, relay: EventRelay) -> None:
        self.bus = bus
        self.audit = audit
        self.relay = relay
        self.node_id = "n" + secrets.token_hex(8)
        self.counts = FanOutCounts()
        self.listening = asyncio.Event()  # set once the receiver has subscribed

    async def aclose(self) -> None:
        await self.relay.aclose()

    async def send(self) -> None:
        """Publish the seqs of this node's events as they commit, a batch at a time."""
        subscription = self.bus.subscribe(maxsize=_BACKLOG, local_only=True)
        try:
            while True:
                try:
                    first = await subscription.get()
                except SubscriberLagged:  # the skipped events are in the store
                    subscription = self.bus.subscribe(maxsize=_BACKLOG, local_only=True)
                    continue
                events = [first, *subscription.drain()]
                seqs = [e.seq for e in events if e.seq is not None]
                for start in range(0, len(seqs), _MAX_SEQS):
                    await self._publish(seqs[start : start + _MAX_SEQS])
        except SubscriptionClosed:
            return
        finally:
            subscription.close()

    async def _publish(self, seqs: Sequence[int]) -> None:
        message = f"{self.node_id} {','.join(map(str, seqs))}"
        try:
            await self.relay.publish(message)
        except StoreUnavailable as exc:
            self.counts.failures += 1
            _logger.warning("event fan-out: %s", exc.detail)
            return
        self.counts.sent += 1

    async def receive(self) -> None:
        """Put other nodes' events on this node's bus; listen again with back-off when the
        relay fails."""
        delay = _RETRY_MIN
        while True:
            try:
                listener = await self.relay.listen()
            except StoreUnavailable as exc:
                self._failed(exc, delay)
            else:
                self.listening.set()
                delay = _RETRY_MIN
                try:
                    async for text in listener.messages():
                        await self._take(text)
                except StoreUnavailable as exc:
                    self._failed(exc, delay)
                finally:
                    self.listening.clear()
                    with contextlib.suppress(Exception):
                        await listener.aclose()
            await asyncio.sleep(delay)
            delay = min(_RETRY_MAX, delay * 2)

    def _failed(self, exc: StoreUnavailable, delay: float) -> None:
        self.counts.failures += 1
        _logger.warning("event fan-out: %s; listening again in %.1f s", exc.detail, delay)

    async def _take(self, text: str) -> None:
        parsed = parse_message(text)
        if parsed is None:
            _logger.warning("event fan-out: a malformed message was ignored")
            return
        node, seqs = parsed
        if node == self.node_id:
            return  # our own echo: these are on our bus already
        try:
            events = await self.audit.events_at(seqs)
        except StoreUnavailable:
            self.counts.failures += 1
            return  # live feeds find them in the store on their next read
        for event in events:
            self.bus.publish_remote(event)
        self.counts.received += len(events)
