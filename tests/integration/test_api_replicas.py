"""The API on two control planes sharing one etcd, one of which has not yet heard of the other's
latest writes: its answers are still those of the latest state. A read is served after a quorum
read; a write that this replica's view would refuse (NotFound, AlreadyExists, a resourceVersion
it has not seen) is decided again once it has caught up; a watch from a resourceVersion made on
the other replica waits for it instead of answering 410."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.apiserver.bootstrap import ensure_default_namespaces
from controlplane.apiserver.local import LocalTransport
from controlplane.apiserver.service import APIService
from controlplane.apiserver.watch import WatchHub
from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.store import open_backend
from ketch.api import errors
from ketch.client.clientset import Client
from ketch.testing.etcd import Etcd
from ketch.v1 import secret_pb2

REGISTRY = Registry()


@dataclass
class Replica:
    store: Store
    hub: WatchHub
    client: Client

    def deafen(self) -> asyncio.Task[None]:
        """Stop hearing the other replica (its etcd watch is cut); returns what to await."""
        assert self.store._follower is not None
        self.store._follower.cancel()
        return self.store._follower

    def hear_again(self) -> None:
        self.store._follower = asyncio.create_task(self.store._follow_loop())


@pytest.fixture
async def pair(etcd: Etcd, tmp_path: Path) -> AsyncIterator[tuple[Replica, Replica]]:
    out = []
    for _ in range(2):
        store = Store(open_backend(etcd.url, tmp_path), REGISTRY.field_values)
        await store.start()
        hub = WatchHub(store)
        service = APIService(store, hub, registry=REGISTRY)
        out.append(Replica(store, hub, Client(LocalTransport(service))))
    await ensure_default_namespaces(LocalTransport(APIService(out[0].store, out[0].hub, registry=REGISTRY)).chain)
    for r in out:
        await r.store.sync()
    yield out[0], out[1]
    for r in out:
        r.hub.close_all()
        await r.store.stop()


def _secret(name: str, value: str = "1") -> secret_pb2.Secret:
    s = secret_pb2.Secret()
    s.metadata.name, s.metadata.namespace = name, "default"
    s.data["v"] = value.encode()
    return s


async def _deaf(b: Replica) -> None:
    with pytest.raises(asyncio.CancelledError):
        await b.deafen()


async def test_a_lagging_replica_reads_and_writes_as_the_latest_state(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    await _deaf(b)
    created = await a.client.create(_secret("s"))
    # A get, a list and an update with the new resourceVersion through b wait for b to catch up.
    get = asyncio.create_task(b.client.get("Secret", "s", "default"))
    changed = _secret("s", "2")
    changed.metadata.resource_version = created.metadata.resource_version
    update = asyncio.create_task(b.client.update(changed))
    await asyncio.sleep(0)  # both are waiting for the quorum read to be applied
    assert not get.done() and not update.done()
    b.hear_again()
    async with asyncio.timeout(30):
        got, updated = await get, await update
    assert got.metadata.resource_version == created.metadata.resource_version
    assert updated.data["v"] == b"2"
    items, _ = await b.client.list("Secret", "default")
    assert [o.metadata.resource_version for o in items] == [updated.metadata.resource_version]

    # Deleted on a, made again at once on b (which has not heard of the deletion): made.
    await _deaf(b)
    await a.client.delete("Secret", "s", "default")
    recreate = asyncio.create_task(b.client.create(_secret("s", "3")))
    await asyncio.sleep(0.2)
    b.hear_again()
    async with asyncio.timeout(30):
        again = await recreate
    assert again.data["v"] == b"3" and int(again.metadata.resource_version) > int(updated.metadata.resource_version)
    # What really is not there is still NotFound, and a stale resourceVersion still a Conflict.
    with pytest.raises(errors.NotFound):
        await b.client.get("Secret", "nothing", "default")
    stale = _secret("s", "4")
    stale.metadata.resource_version = created.metadata.resource_version
    with pytest.raises(errors.Conflict):
        await b.client.update(stale)


async def test_a_watch_from_a_revision_made_on_the_other_replica_waits_for_it(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    await _deaf(b)
    first = await a.client.create(_secret("w1"))
    events: list[str] = []

    async def follow() -> None:
        async for ev in b.client.watch("Secret", "default", resource_version=first.metadata.resource_version):
            if ev.type != "BOOKMARK":
                events.append(f"{ev.type} {ev.object.metadata.name}")
                return

    watching = asyncio.create_task(follow())
    await a.client.create(_secret("w2"))
    await asyncio.sleep(0.2)
    b.hear_again()
    async with asyncio.timeout(30):
        await watching
    assert events == ["ADDED w2"]
