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
