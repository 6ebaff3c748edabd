"""Event TTL against a real API server: expired Events are deleted, fresh ones kept."""

from __future__ import annotations

import time

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.eventttl import EventTTLController
from ketch.api import timeutil
from ketch.client.clientset import Batch
from ketch.v1 import core_pb2
from tests.conftest import eventually

from .cp_helpers import running


def event(name: str, last: float) -> core_pb2.Event:
    ev = core_pb2.Event(type="Normal", reason="Test", message=name)
    ev.metadata.name, ev.metadata.namespace = name, "default"
    ev.involved_object.kind, ev.involved_object.name = "Pod", "p"
    ev.first_timestamp = ev.last_timestamp = timeutil.format(last)
    return ev


async def test_expired_events_are_deleted_and_fresh_ones_kept(api: TestAPIServer) -> None:
    client = api.client
    now = time.time()
    batch = Batch()
    for i in range(20):
        batch.create(event(f"old-{i}", now - 7200))
    batch.create(event("soon", now))
    batch.create(event("fresh", now + 3600))
    await client.batch(batch)

    def make(ctx):
        return EventTTLController(ctx, ttl=2)

    async with running(client, make):
        async def names():
            events, _ = await client.list("Event", "default")
            return {e.metadata.name for e in events}

        async def old_gone():
            left = await names()
            return not any(n.startswith("old-") for n in left) and left

        left = await eventually(old_gone, timeout=10, what="expired events to be deleted")
        assert "fresh" in left

        async def soon_gone():
            return await names() == {"fresh"}

        await eventually(soon_gone, timeout=10, what="the event to expire after its TTL")


async def test_the_ttl_controller_caches_stamps_not_events(api: TestAPIServer) -> None:
    """Events are the most numerous objects: the controller's informer keeps a small stamp of
    each (what the TTL needs), not the Event (several KB parsed)."""
    from controlplane.controllers.eventttl import Stamp

    client = api.client
    now = time.time()
    batch = Batch()
    for i in range(50):
        batch.create(event(f"e-{i}", now))
    await client.batch(batch)
    async with running(client, lambda ctx: EventTTLController(ctx, ttl=3600)) as (ctrl,):
        cached = await eventually(lambda: len(ctrl.events.store) == 50 and ctrl.events.store.list(),
                                  what="the informer to list the events")
        assert all(isinstance(s, Stamp) for s in cached)
        got = ctrl.events.get("default", "e-7")
        assert got is not None and got.metadata.uid and abs(got.last_seen - now) < 2
