"""Event TTL: Events older than the TTL (Kubernetes' --event-ttl, default 1 h) are deleted.

Kubernetes stores Events with an etcd lease of one hour from their last write; Ketch's store has
no leases, so this controller does it: each Event is queued with add_after at its expiry (its
last write: lastTimestamp, else eventTime, else creationTimestamp, plus the TTL; a repeat that
bumps lastTimestamp pushes the expiry back), and the Events whose time has come are deleted in
rounds, one Batch per round. The TTL is `EventTTLOptions.ttl` in seconds.

Events are the most numerous objects (one or more per pod, kept an hour), so the informer keeps
only a Stamp of each (its name, uid and last write), through a transform, not the Event.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

from ketch.api import errors, timeutil
from ketch.api.meta import key_of, split_key
from ketch.client.clientset import Batch

from .base import ControllerContext
from .batching import BatchingController

log = logging.getLogger(__name__)



# -- pure ----------------------------------------------------------------------------------------


def last_seen(event: Any) -> float:
    """When the Event was last written (the moment its TTL counts from)."""
    for stamp in (event.last_timestamp, event.event_time, event.metadata.creation_timestamp):
        if stamp:
            try:
                return timeutil.parse(stamp)
            except ValueError:
                continue
    return 0.0


def expires_in(event: Any, ttl: float, now: float) -> float:
    """Seconds until the Event expires (≤ 0: delete it now)."""
    return last_seen(event) + ttl - now


@dataclass(frozen=True, slots=True)
class StampMeta:
    namespace: str
    name: str
    uid: str
    resource_version: str
    owner_references: tuple[()] = ()  # read by the informer's standard indexes


@dataclass(frozen=True, slots=True)
class Stamp:
    """What the TTL needs of an Event: a tenth of the memory of the Event itself."""

    metadata: StampMeta
    last_seen: float


def stamp(event: Any) -> Stamp:
    md = event.metadata
    return Stamp(StampMeta(sys.intern(md.namespace), md.name, md.uid, md.resource_version), last_seen(event))


# -- the controller ------------------------------------------------------------------------------


class EventTTLController(BatchingController):
    name = "event-ttl"

    def __init__(self, ctx: ControllerContext, ttl: float | None = None) -> None:
        super().__init__(ctx)
        self.ttl = ttl if ttl is not None else ctx.options.event_ttl.ttl
        self.events = ctx.informers.informer("Event", transform=stamp)
        self.events.add_handler(self.add_event, self.update_event, None)

    def _left(self, event: Stamp, now: float) -> float:
        return event.last_seen + self.ttl - now

    def add_event(self, event: Stamp) -> None:
        self.queue.add_after(key_of(event), self._left(event, self.clock.now()))

    def update_event(self, old: Any, new: Any) -> None:
        self.add_event(new)

    async def process(self, keys: list[str]) -> None:
        now = self.clock.now()
        batch = Batch()
        sent: list[str] = []
        for k in keys:
            event = self.events.get(*split_key(k))
            if event is None:
                continue
            left = self._left(event, now)
            if left > 0:
                self.queue.add_after(k, left)  # renewed since it was queued
                continue
            md = event.metadata
            batch.delete("Event", md.name, md.namespace, uid=md.uid)
            sent.append(k)
        if not sent:
            return
        failed = 0
        for k, out in zip(sent, await self.client.batch(batch), strict=True):
            if out.error is not None and not isinstance(out.error, errors.NotFound | errors.Conflict):
                failed += 1
                self.queue.add_rate_limited(k)
        log.debug("event-ttl: deleted %d expired events", len(sent) - failed)
