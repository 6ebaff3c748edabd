"""The Store when its backend fails a commit, and past its quota.

A failed commit must fail that batch and everything staged on top of it, leave no trace of
either (not in reads, not in later commits), never reuse a revision, refuse writes with the
backend's own error until a probe succeeds, and then write again. Past the quota only the
writes that delete or finish deleting an object go through.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.backend import Record
from ketch.api import errors
from ketch.v1 import core_pb2

from ...conftest import eventually


class FlakyBackend:
    """Keeps committed records in a dict; fails every write while `failing` is set. A commit
    can be held at `gate` (it runs in the store's writer thread, as SQLite's does)."""

    blocking = True
    max_records = max_bytes = max_record_bytes = 0

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.revision = 0
        self.failing: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.used_bytes = 0

    def load(self) -> tuple[int, list[Record]]:
        return 0, []

    def commit(self, records: list[Record], revision: int) -> None:
        self.entered.set()
        self.gate.wait(10)
        if self.failing is not None:
            raise self.failing
        for r in records:
            if r.data is None:
                self.rows.pop((r.kind, r.key), None)
            else:
                self.rows[(r.kind, r.key)] = (r.rv, r.data)
        self.revision = revision

    def probe(self, revision: int) -> None:
        if self.failing is not None:
            raise self.failing

    def wants_compaction(self) -> bool:
        return False

    def compact(self) -> int:
        return 0

    def close(self) -> None:
        return None


def _ns(name: str) -> core_pb2.Namespace:
    ns = core_pb2.Namespace()
    ns.metadata.name = name
    return ns


def _pod(name: str, phase: str = "") -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.spec.containers.add(name="c", command=["true"])
    pod.status.phase = phase
    return pod


@pytest.fixture
async def flaky() -> tuple[Store, FlakyBackend, list[bool]]:
    backend = FlakyBackend()
    store = Store(backend, Registry().field_values, probe_interval=0.05)  # type: ignore[arg-type]
    health: list[bool] = []
    store.add_health_listener(health.append)
    await store.start()
    yield store, backend, health
    backend.failing = None
    backend.gate.set()
    await store.stop()


async def test_a_failed_commit_fails_what_was_staged_on_it_and_leaves_no_trace(flaky) -> None:  # type: ignore[no-untyped-def]
    store, backend, health = flaky
    await store.write("Namespace", "default", _ns("default"), create=True)
    before = store.revision

    # A create is being committed (held in the writer thread) when an update of the same pod
    # is staged on top of it; then the disk fills and the commit fails.
    backend.gate.clear()
    backend.entered.clear()
    create = asyncio.create_task(store.write("Pod", "default/p", _pod("p"), create=True))
    await asyncio.get_running_loop().run_in_executor(None, backend.entered.wait, 5)
    update = asyncio.create_task(store.write("Pod", "default/p", _pod("p", "Running")))
    await asyncio.sleep(0)
    assert store.latest("Pod", "default/p") is not None  # staged: the update could build on it
    backend.failing = sqlite3.OperationalError("database or disk is full")
    backend.gate.set()

    for task in (create, update):
        with pytest.raises(errors.InternalError, match="database or disk is full"):
            await task
    assert store.latest("Pod", "default/p") is None  # nothing staged survives
    assert store.get("Pod", "default/p") is None
    assert not store.healthy and health == [False]
    # Refused meanwhile, with the real error; reads go on.
    with pytest.raises(errors.InternalError, match="database or disk is full"):
        await store.write("Pod", "default/q", _pod("q"), create=True)
    assert store.get("Namespace", "default") is not None

    backend.failing = None
    await eventually(lambda: store.healthy, timeout=5, what="the store to write again")
    assert health == [False, True]
    created = await store.write("Pod", "default/p", _pod("p"), create=True)
    assert created is not None and created.rv > before + 2  # the failed revisions are not reused
    # The backend holds exactly what was acknowledged: the namespace and the last create.
    assert set(backend.rows) == {("Namespace", "default"), ("Pod", "default/p")}
    assert backend.rows[("Pod", "default/p")][0] == created.rv
    stored = core_pb2.Pod.FromString(backend.rows[("Pod", "default/p")][1])
    assert stored.status.phase == ""


async def test_past_the_quota_only_deletions_go_through(flaky) -> None:  # type: ignore[no-untyped-def]
    store, backend, _ = flaky
    store.quota_bytes = 1000
    await store.write("Namespace", "default", _ns("default"), create=True)
    await store.write("Pod", "default/a", _pod("a"), create=True)
    held = _pod("b")
    held.metadata.finalizers.append("example.com/hold")
    await store.write("Pod", "default/b", held, create=True)

    backend.used_bytes = 5000
    with pytest.raises(errors.InternalError, match="etcdserver: mvcc: database space exceeded"):
        await store.write("Pod", "default/c", _pod("c"), create=True)
    with pytest.raises(errors.InternalError, match="database space exceeded"):
        await store.write("Pod", "default/a", _pod("a", "Running"))
    # Deleting, marking for deletion and finishing a deletion all go through.
    await store.write("Pod", "default/a", None)
    marked = _pod("b")
    marked.metadata.finalizers.append("example.com/hold")
    marked.metadata.deletion_timestamp = "2026-01-01T00:00:00Z"
    await store.write("Pod", "default/b", marked)
    released = _pod("b")
    released.metadata.deletion_timestamp = "2026-01-01T00:00:00Z"
    await store.write("Pod", "default/b", released)
    await store.write("Pod", "default/b", None)
    assert store.healthy  # a quota is not a failure: reads and deletions are served

    backend.used_bytes = 100
    assert await store.write("Pod", "default/c", _pod("c"), create=True) is not None


class BoundedBackend(FlakyBackend):
    """A backend that takes at most 3 records a transaction (as etcd's --max-txn-ops bounds a
    Txn) and fails the transaction numbered `fail_at`."""

    max_records = 3

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.fail_at = -1

    def commit(self, records: list[Record], revision: int) -> None:
        self.sizes.append(len(records))
        if len(self.sizes) - 1 == self.fail_at:
            raise OSError("the backend went away")
        assert [r.rv for r in records] == sorted(r.rv for r in records)
        assert all(r.rv > self.revision for r in records), "transactions out of revision order"
        super().commit(records, revision)


async def test_a_batch_past_the_backends_limit_is_cut_and_reads_show_what_is_durable() -> None:
    backend = BoundedBackend()
    store = Store(backend, Registry().field_values, probe_interval=0.05)  # type: ignore[arg-type]
    await store.start()
    await asyncio.gather(*(store.write("Pod", f"default/p-{i}", _pod(f"p-{i}"), create=True) for i in range(8)))
    assert max(backend.sizes) <= 3 and sum(backend.sizes) == 8
    assert store.count("Pod") == 8
    # One staged batch of 5 cut into transactions of 3 and 2: the second fails.
    backend.sizes.clear()
    backend.fail_at = 1
    staged = [store.stage("Pod", f"default/q-{i}", _pod(f"q-{i}"), create=True) for i in range(5)]
    with pytest.raises(errors.InternalError, match="the backend went away"):
        await store.commit(staged)
    assert backend.sizes == [3, 2]
    # What the backend holds, reads show: the first three, no more.
    durable = sorted(k for (kind, k) in backend.rows if k.startswith("default/q-"))
    assert durable == ["default/q-0", "default/q-1", "default/q-2"]
    assert sorted(e.key for e in store.list("Pod") if e.key.startswith("default/q-")) == durable
    await eventually(lambda: store.healthy, what="the store to write again")
    await store.stop()
