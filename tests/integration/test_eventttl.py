"""Events expire by themselves, as kube-apiserver's etcd lease makes them (--event-ttl): the
store deletes an Event its TTL after its last write, watchers see it go, a repeat that bumps
lastTimestamp keeps it, and a restart keeps the deadlines."""

from __future__ import annotations

import time
from pathlib import Path

from controlplane.apiserver.testing import TestAPIServer
from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.store import open_backend
from ketch.api import timeutil
from ketch.client.clientset import Batch
from ketch.v1 import core_pb2
from tests.conftest import eventually

TTL = 2.0


def event(name: str, last: float) -> core_pb2.Event:
    ev = core_pb2.Event(type="Normal", reason="Test", message=name)
    ev.metadata.name, ev.metadata.namespace = name, "default"
    ev.involved_object.kind, ev.involved_object.name = "Pod", "p"
    ev.first_timestamp = ev.last_timestamp = timeutil.format(last)
    return ev


async def names(api: TestAPIServer) -> set[str]:
    events, _ = await api.client.list("Event", "default")
    return {e.metadata.name for e in events}


async def test_expired_events_are_deleted_and_fresh_ones_kept() -> None:
    async with TestAPIServer(event_ttl=TTL) as api:
        now = time.time()
        batch = Batch()
        for i in range(20):
            batch.create(event(f"old-{i}", now - 7200))
        batch.create(event("soon", now))
        batch.create(event("fresh", now + 3600))
        seen: list[str] = []
        watch = api.client.watch("Event", "default", resource_version=str(api.store.revision))
        await api.client.batch(batch)

        async def old_gone() -> set[str] | bool:
            left = await names(api)
            return not any(n.startswith("old-") for n in left) and left

        left = await eventually(old_gone, timeout=10, what="expired events to be deleted")
        assert "fresh" in left
        await eventually(lambda: _names_are(api, {"fresh"}), timeout=10, what="the event to expire after its TTL")
        async for ev in watch:
            if ev.type == "DELETED":
                seen.append(ev.object.metadata.name)
            if "soon" in seen:
                break
        assert sorted(seen) == sorted([f"old-{i}" for i in range(20)] + ["soon"])


async def _names_are(api: TestAPIServer, want: set[str]) -> bool:
    return await names(api) == want


async def test_a_repeat_that_bumps_last_timestamp_keeps_the_event() -> None:
    async with TestAPIServer(event_ttl=TTL) as api:
        soon = time.time() - TTL + 1  # both would expire in a second
        repeated = await api.client.create(event("repeated", soon))
        repeated.last_timestamp = timeutil.format(time.time() + 3600)  # a repeat, much later
        repeated.count = 2
        await api.client.update(repeated)
        await api.client.create(event("sentinel", soon))
        # The store deletes in deadline order: once the sentinel is gone, the repeated Event's
        # first deadline has come and gone too.
        await eventually(lambda: _names_are(api, {"repeated"}), timeout=10, what="the sentinel to expire")


async def test_deadlines_are_kept_across_a_restart(tmp_path: Path) -> None:
    registry = Registry(event_ttl=TTL)

    def store() -> Store:
        return Store(open_backend("sqlite", tmp_path), registry.field_values, expiry_of=registry.expiry_of)

    first = store()
    await first.start()
    await first.write("Event", "default/old", event("old", time.time() - 3600), create=True)
    await first.write("Event", "default/new", event("new", time.time() + 3600), create=True)
    await first.stop()
    # Loaded again, they expire by their own timestamps, not by when the store started: the old
    # one goes at once, the new one stays.
    restarted = store()
    await restarted.start()
    try:
        await eventually(lambda: _gone(restarted, "default/old"), timeout=10, what="the old event to expire")
        assert restarted.get("Event", "default/new") is not None
    finally:
        await restarted.stop()


async def _gone(store: Store, key: str) -> bool:
    return store.get("Event", key) is None
