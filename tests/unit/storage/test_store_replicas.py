"""Several control planes on one etcd: each applies the others' writes in order, exactly once,
with the same resourceVersions; reads after sync() see every acknowledged write; a write that
loses a race with another replica's fails alone and stores nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from aetcd.rpc import rpc_pb2, rpc_pb2_grpc

from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.store import RaceConflict, WatchEvent, open_backend
from ketch.api import errors, timeutil
from ketch.testing.etcd import Etcd
from ketch.v1 import core_pb2
from tests.conftest import eventually

REGISTRY = Registry()


def _pod(name: str, phase: str = "") -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.status.phase = phase
    return pod


class Replica:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.events: list[tuple[int, str, str, str]] = []  # (rv, type, key, phase)
        self.resets = 0
        store.add_listener(self._heard)
        store.add_reset_listener(self._reset)

    def _heard(self, events: list[WatchEvent]) -> None:
        for ev in events:
            phase = core_pb2.Pod.FromString(ev.entry.data).status.phase
            self.events.append((ev.rev, ev.type, ev.entry.key, phase))

    def _reset(self) -> None:
        self.resets += 1


@pytest.fixture
async def replicas(etcd: Etcd, tmp_path: Path) -> AsyncIterator[list[Replica]]:
    out: list[Replica] = []
    for _ in range(3):
        store = Store(open_backend(etcd.url, tmp_path), REGISTRY.field_values, probe_interval=0.05)
        await store.start()
        out.append(Replica(store))
    yield out
    for r in out:
        await r.store.stop()


async def test_a_read_after_sync_sees_every_write_acknowledged_on_another_replica(replicas: list[Replica]) -> None:
    a, b, _ = replicas
    for i in range(20):
        await a.store.write("Pod", f"default/p{i}", _pod(f"p{i}"), create=True)
        await b.store.sync()
        got = b.store.get("Pod", f"default/p{i}")
        assert got is not None and got.rv == a.store.get("Pod", f"default/p{i}").rv  # type: ignore[union-attr]
    await a.store.write("Pod", "default/p0", None)
    await b.store.sync()
    assert b.store.get("Pod", "default/p0") is None


async def test_every_replica_hears_every_write_in_one_order_exactly_once(replicas: list[Replica]) -> None:
    """Writes made through all three at once, creates, updates and deletes: each replica's
    listeners hear the same events with the same resourceVersions, increasing, none twice."""

    async def writer(r: Replica, name: str) -> None:
        key = f"default/{name}"
        for i in range(15):
            await r.store.write("Pod", key, _pod(name, f"step{i}"), create=(i == 0))
        await r.store.write("Pod", key, None)

    await asyncio.gather(*(writer(r, f"w{n}-{j}") for n, r in enumerate(replicas) for j in range(4)))
    for r in replicas:
        await r.store.sync()
    expected = replicas[0].events
    assert len(expected) == 3 * 4 * 16
    revs = [e[0] for e in expected]
    assert revs == sorted(revs) and len(set(revs)) == len(revs)
    for r in replicas[1:]:
        assert r.events == expected
    assert {r.store.revision for r in replicas} == {revs[-1]}


async def test_a_write_that_lost_a_race_fails_alone_and_is_made_again_on_fresh_state(replicas: list[Replica]) -> None:
    a, b, _ = replicas
    await a.store.write("Pod", "default/x", _pod("x"), create=True)
    await b.store.sync()
    base = b.store.get("Pod", "default/x")
    assert base is not None
    # a and b change it from the same version in the same instant: whichever commits second
    # loses, alone (b's other write in the same commit is made).
    staged_a = a.store.stage("Pod", "default/x", _pod("x", "A"))
    staged_b = b.store.stage("Pod", "default/x", _pod("x", "B"))
    other_b = b.store.stage("Pod", "default/y", _pod("y"), create=True)
    results = await asyncio.gather(a.store.commit([staged_a], each=True),
                                   b.store.commit([staged_b, other_b], each=True))
    assert results == [None, None]
    lost = [s for s in (staged_a, staged_b) if s.error is not None]
    assert len(lost) == 1 and isinstance(lost[0].error, RaceConflict) and other_b.error is None
    winner = "B" if lost[0] is staged_a else "A"
    for r in replicas:
        await r.store.sync()
        assert r.store.get("Pod", "default/x").obj.status.phase == winner  # type: ignore[union-attr]
        assert r.store.get("Pod", "default/y") is not None
    # Made again on what b now knows, it goes through.
    await b.store.write("Pod", "default/x", _pod("x", "B"), expect_rv=b.store.get("Pod", "default/x").rv)  # type: ignore[union-attr]
    # Two creates of one name: one is made, the other is AlreadyExists.
    first = a.store.stage("Pod", "default/same", _pod("same", "A"), create=True)
    second = b.store.stage("Pod", "default/same", _pod("same", "B"), create=True)
    outcome = await asyncio.gather(a.store.commit([first]), b.store.commit([second]), return_exceptions=True)
    assert sum(isinstance(o, errors.AlreadyExists) for o in outcome) == 1 and outcome.count(None) == 1
    for r in replicas:
        await r.store.sync()
    phases = {r.store.get("Pod", "default/same").obj.status.phase for r in replicas}  # type: ignore[union-attr]
    assert len(phases) == 1


async def test_a_write_numbered_behind_another_replica_takes_the_next_revision(replicas: list[Replica]) -> None:
    a, b, _ = replicas
    # b stages before it has heard of a's writes (its follower waits for the lock held here), so
    # the number it gives its write is one a has used.
    async with b.store._apply_lock:
        for i in range(5):
            await a.store.write("Pod", f"default/a{i}", _pod(f"a{i}"), create=True)
        staged = b.store.stage("Pod", "default/b", _pod("b"), create=True)
    assert staged.rev <= a.store.revision
    await b.store.commit([staged])
    assert staged.entry is not None
    assert staged.rev > a.store.get("Pod", "default/a4").rv  # type: ignore[union-attr]
    assert staged.entry.rv == staged.rev
    assert core_pb2.Pod.FromString(staged.entry.data).metadata.resource_version == str(staged.rev)
    await a.store.sync()
    assert a.store.get("Pod", "default/b").rv == staged.rev  # type: ignore[union-attr]
    revs = [e[0] for e in b.events]
    assert revs == sorted(revs) and len(set(revs)) == len(revs) == 6


async def test_deleted_and_made_again_in_one_transaction_is_heard_as_both(replicas: list[Replica]) -> None:
    a, b, _ = replicas
    await a.store.write("Pod", "default/d", _pod("d", "old"), create=True)
    gone = a.store.stage("Pod", "default/d", None)
    again = a.store.stage("Pod", "default/d", _pod("d", "new"), create=True)
    await a.store.commit([gone, again])
    await b.store.sync()
    tail = [e[:3] for e in b.events[-2:]]
    assert tail == [(gone.rev, "DELETED", "default/d"), (again.rev, "ADDED", "default/d")]


async def test_a_replica_whose_history_was_compacted_reloads_and_resets_its_watches(
        replicas: list[Replica], etcd: Etcd) -> None:
    a, b, _ = replicas
    await a.store.write("Pod", "default/keep", _pod("keep"), create=True)
    await a.store.write("Pod", "default/drop", _pod("drop"), create=True)
    await b.store.sync()
    assert b.store._follower is not None
    b.store._follower.cancel()  # b stops hearing etcd, as when cut off from it
    with pytest.raises(asyncio.CancelledError):
        await b.store._follower
    await a.store.write("Pod", "default/keep", _pod("keep", "changed"))
    await a.store.write("Pod", "default/drop", None)
    await a.store.write("Pod", "default/new", _pod("new"), create=True)
    channel = grpc.aio.insecure_channel(etcd.endpoint)
    kv = rpc_pb2_grpc.KVStub(channel)
    head = (await kv.Range(rpc_pb2.RangeRequest(key=b"/registry/", range_end=b"/registry0", limit=1))).header.revision
    await kv.Compact(rpc_pb2.CompactionRequest(revision=head))
    await channel.close()
    b.store._follower = asyncio.create_task(b.store._follow_loop())
    await eventually(lambda: b.resets == 1, 20)
    assert b.store.get("Pod", "default/keep").obj.status.phase == "changed"  # type: ignore[union-attr]
    assert b.store.get("Pod", "default/drop") is None
    assert b.store.get("Pod", "default/new") is not None
    assert b.store.revision == a.store.revision
    # ... and it follows again from there.
    await a.store.write("Pod", "default/after", _pod("after"), create=True)
    await b.store.sync()
    assert b.store.get("Pod", "default/after") is not None


def _event(name: str, count: int) -> core_pb2.Event:
    ev = core_pb2.Event(type="Normal", reason="Pulled", message="pulled", count=count)
    ev.metadata.name, ev.metadata.namespace = name, "default"
    ev.involved_object.kind, ev.involved_object.name = "Pod", "p"
    ev.last_timestamp = timeutil.now()
    return ev


async def test_packed_events_race_and_delete_across_replicas(etcd: Etcd, tmp_path: Path) -> None:
    """Events are packed (each read builds a new entry): a write is still decided against the
    version it was staged on, on every replica."""
    a, b = (Store(open_backend(etcd.url, tmp_path), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read(),
                  packed=REGISTRY.packed(), expiry_of=REGISTRY.expiry_of, probe_interval=0.05) for _ in range(2))
    await a.start()
    await b.start()
    try:
        key = "default/e"
        await a.write("Event", key, _event("e", 1), create=True)
        await b.sync()
        base = b.get("Event", key)
        assert base is not None and base.rv == a.get("Event", key).rv  # type: ignore[union-attr]
        staged_a = a.stage("Event", key, _event("e", 2), expect_rv=base.rv)
        staged_b = b.stage("Event", key, _event("e", 3), expect_rv=base.rv)
        await asyncio.gather(a.commit([staged_a], each=True), b.commit([staged_b], each=True))
        lost = [s for s in (staged_a, staged_b) if s.error is not None]
        assert len(lost) == 1 and isinstance(lost[0].error, RaceConflict)
        await a.sync()
        await b.sync()
        got_a, got_b = a.get("Event", key), b.get("Event", key)
        assert got_a is not None and got_b is not None and got_a.rv == got_b.rv
        assert core_pb2.Event.FromString(got_a.data).count == core_pb2.Event.FromString(got_b.data).count
        await b.write("Event", key, None, expect_rv=got_b.rv)
        await a.sync()
        assert a.get("Event", key) is None and a.count("Event") == 0
    finally:
        await a.stop()
        await b.stop()
