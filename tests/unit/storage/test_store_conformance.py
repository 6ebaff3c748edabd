"""The Store's contract on every backend: memory, SQLite and a real etcd run the same tests.

Durable backends (SQLite, etcd) are also reopened: every acknowledged write comes back with its
resourceVersion, and revisions go on increasing after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.backend import Backend, MemoryBackend
from controlplane.storage.store import open_backend
from ketch.api import errors
from ketch.testing.etcd import Etcd
from ketch.v1 import core_pb2

REGISTRY = Registry()

Opener = Callable[[], Backend]


def _pod(name: str, phase: str = "") -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.spec.containers.add(name="c", command=["true"])
    pod.status.phase = phase
    return pod


@pytest.fixture(params=["memory", "sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def backend_opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """A function that opens the same store again each time it is called."""
    if request.param == "memory":
        return MemoryBackend
    if request.param == "sqlite":
        return lambda: open_backend("sqlite", tmp_path / "data")
    etcd: Etcd = request.getfixturevalue("etcd")
    return lambda: open_backend(etcd.url, tmp_path / "data")


@pytest.fixture
def durable(backend_opener: Opener) -> Opener:
    if backend_opener is MemoryBackend:
        pytest.skip("the memory backend keeps nothing across a restart")
    return backend_opener


class Stores:
    """Stores opened in a test, all stopped at its end."""

    def __init__(self, opener: Opener) -> None:
        self.opener = opener
        self.open: list[Store] = []

    async def start(self) -> Store:
        store = Store(self.opener(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
        await store.start()
        self.open.append(store)
        return store

    async def restart(self, store: Store) -> Store:
        await store.stop()
        self.open.remove(store)
        return await self.start()


@pytest.fixture
async def stores(backend_opener: Opener) -> AsyncIterator[Stores]:
    s = Stores(backend_opener)
    yield s
    for store in s.open:
        await store.stop()


async def test_create_update_delete_with_increasing_revisions(stores: Stores) -> None:
    store = await stores.start()
    a = await store.write("Pod", "default/a", _pod("a"), create=True)
    assert a is not None
    b = await store.write("Pod", "default/a", _pod("a", "Running"), expect_rv=a.rv)
    assert b is not None and b.rv > a.rv
    assert store.get("Pod", "default/a").obj.status.phase == "Running"  # type: ignore[union-attr]
    assert store.get("Pod", "default/a").obj.metadata.resource_version == str(b.rv)  # type: ignore[union-attr]
    await store.write("Pod", "default/a", None)
    assert store.get("Pod", "default/a") is None
    assert store.revision > b.rv


async def test_compare_and_swap_conflicts_and_create_twice_are_refused(stores: Stores) -> None:
    store = await stores.start()
    a = await store.write("Pod", "default/a", _pod("a"), create=True)
    assert a is not None
    await store.write("Pod", "default/a", _pod("a", "Running"), expect_rv=a.rv)
    with pytest.raises(errors.Conflict):
        await store.write("Pod", "default/a", _pod("a", "Failed"), expect_rv=a.rv)
    with pytest.raises(errors.AlreadyExists):
        await store.write("Pod", "default/a", _pod("a"), create=True)
    with pytest.raises(errors.NotFound):
        await store.write("Pod", "default/missing", None)
    assert store.get("Pod", "default/a").obj.status.phase == "Running"  # type: ignore[union-attr]


async def test_many_concurrent_writes_are_grouped_and_in_order(stores: Stores) -> None:
    store = await stores.start()
    seen: list[int] = []
    store.add_listener(lambda events: seen.extend(ev.rev for ev in events))
    await asyncio.gather(*(store.write("Pod", f"default/p-{i}", _pod(f"p-{i}"), create=True) for i in range(400)))
    assert store.count("Pod") == 400
    assert seen == sorted(seen) and len(seen) == 400


async def test_every_acknowledged_write_is_back_after_a_restart(stores: Stores, durable: Opener) -> None:
    store = await stores.start()
    # More objects than one page of etcd's range read and one etcd transaction hold.
    await asyncio.gather(*(store.write("Pod", f"default/p-{i}", _pod(f"p-{i}"), create=True) for i in range(700)))
    updated = await store.write("Pod", "default/p-1", _pod("p-1", "Running"))
    assert updated is not None
    # One group commit that writes and then deletes one key: the deletion wins.
    s1 = store.stage("Pod", "default/gone", _pod("gone"), create=True)
    s2 = store.stage("Pod", "default/gone", None)
    await store.commit([s1, s2])
    await store.write("Pod", "default/p-2", None)
    before = store.revision
    rvs = {e.key: e.rv for e in store.list("Pod")}

    store = await stores.restart(store)
    assert store.revision == before
    assert {e.key: e.rv for e in store.list("Pod")} == rvs
    assert store.get("Pod", "default/p-1").obj.status.phase == "Running"  # type: ignore[union-attr]
    assert store.get("Pod", "default/gone") is None and store.get("Pod", "default/p-2") is None
    after = await store.write("Pod", "default/new", _pod("new"), create=True)
    assert after is not None and after.rv > before


async def test_a_conflict_after_a_restart_is_still_a_conflict(stores: Stores, durable: Opener) -> None:
    store = await stores.start()
    a = await store.write("Pod", "default/a", _pod("a"), create=True)
    assert a is not None
    await store.write("Pod", "default/a", _pod("a", "Running"), expect_rv=a.rv)
    store = await stores.restart(store)
    with pytest.raises(errors.Conflict):
        await store.write("Pod", "default/a", _pod("a", "Failed"), expect_rv=a.rv)
