"""A large Batch is staged a slice per turn of the event loop (a scheduler's hundreds of bindings,
a hollow agent's statuses held the API server's loop for up to 220 ms at 10,000 pods), into one
commit that keeps its place: writes staged meanwhile commit with it, never before it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from google.protobuf import any_pb2

from controlplane.apiserver.authn import LOOPBACK
from controlplane.apiserver.bootstrap import ensure_default_namespaces
from controlplane.apiserver.chain import RequestChain
from controlplane.apiserver.nodeproxy import NodeProxy
from controlplane.apiserver.service import BATCH_OPS_PER_TURN, APIService
from controlplane.apiserver.watch import WatchHub
from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.backend import MemoryBackend, Record
from ketch.v1 import api_pb2, core_pb2

OPS = 5 * BATCH_OPS_PER_TURN


class CountingBackend(MemoryBackend):
    """Keeps nothing, but records each transaction's keys."""

    def __init__(self) -> None:
        self.transactions: list[list[str]] = []

    def commit(self, records: list[Record], revision: int) -> None:
        self.transactions.append([r.key for r in records])


@asynccontextmanager
async def serving() -> AsyncIterator[tuple[RequestChain, Store, CountingBackend]]:
    registry = Registry()
    backend = CountingBackend()
    store = Store(backend, registry.field_values, parsed_on_read=registry.parsed_on_read())
    await store.start()
    hub = WatchHub(store)
    proxy = NodeProxy(store)
    chain = RequestChain(APIService(store, hub, registry=registry), proxy)
    await ensure_default_namespaces(chain)
    try:
        yield chain, store, backend
    finally:
        hub.close_all()
        await proxy.close()
        await store.stop()


def pod(name: str) -> any_pb2.Any:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    c = p.spec.containers.add()
    c.name, c.command[:] = "c", ["true"]
    out = any_pb2.Any()
    out.Pack(p)
    return out


def rv_of(response: api_pb2.ObjectResponse) -> int:
    p = core_pb2.Pod()
    response.object.Unpack(p)
    return int(p.metadata.resource_version)


def creates(names: list[str]) -> api_pb2.BatchRequest:
    return api_pb2.BatchRequest(ops=[api_pb2.BatchOp(create=api_pb2.CreateRequest(object=pod(n))) for n in names])


async def test_a_large_batch_lets_a_request_in_and_they_commit_together_in_order() -> None:
    async with serving() as (chain, _store, backend):
        big = asyncio.create_task(chain.unary("Batch", creates([f"b{i}" for i in range(OPS)]), LOOPBACK))
        await asyncio.sleep(0)  # the batch has staged its first slice and yielded
        single = await chain.unary("Create", api_pb2.CreateRequest(object=pod("single")), LOOPBACK)
        out = await big
        assert all(r.code == 0 for r in out.results), [r.message for r in out.results if r.code]
        rvs = [rv_of(r.response) for r in out.results]
        single_rv = rv_of(single)
        assert rvs == sorted(rvs) and len(set(rvs)) == OPS
        assert rvs[0] < single_rv < rvs[-1], "the single create was staged while the batch was, not after it"
        # One transaction holds the whole batch and the write staged in its middle.
        together = [t for t in backend.transactions if "default/single" in t]
        assert len(together) == 1 and sum("default/b" in k for k in together[0]) == OPS
        listed = await chain.unary("List", api_pb2.ListRequest(kind="Pod", namespace="default"), LOOPBACK)
        assert len(listed.items) == OPS + 1


async def test_a_write_staged_during_the_batch_on_its_object_commits_after_it() -> None:
    async with serving() as (chain, store, backend):
        big = asyncio.create_task(chain.unary("Batch", creates([f"b{i}" for i in range(OPS)]), LOOPBACK))
        await asyncio.sleep(0)
        # b0 exists only as staged by the open batch: a delete of it is staged on top of it.
        gone = await chain.unary("Delete", api_pb2.DeleteRequest(kind="Pod", namespace="default", name="b0"), LOOPBACK)
        out = await big
        assert gone.deleted and out.results[0].code == 0
        written = [k for t in backend.transactions for k in t]
        assert written.count("default/b0") == 2, "created, then deleted"
        assert store.latest("Pod", "default/b0") is None
        assert store.latest("Pod", f"default/b{OPS - 1}") is not None


async def test_a_batch_cancelled_while_staging_commits_what_it_staged_and_holds_nothing_up() -> None:
    async with serving() as (chain, store, _backend):
        big = asyncio.create_task(chain.unary("Batch", creates([f"b{i}" for i in range(OPS)]), LOOPBACK))
        await asyncio.sleep(0)
        big.cancel()
        try:
            await big
        except asyncio.CancelledError:
            pass
        # The open commit was sealed: a later write is not held behind it.
        after = await asyncio.wait_for(
            chain.unary("Create", api_pb2.CreateRequest(object=pod("after")), LOOPBACK), timeout=5)
        assert rv_of(after) > 0
        staged = [n for n in (f"default/b{i}" for i in range(OPS)) if store.latest("Pod", n) is not None]
        assert BATCH_OPS_PER_TURN <= len(staged) < OPS, "the first slice was committed, the rest never staged"
        assert staged == [f"default/b{i}" for i in range(len(staged))]


async def test_a_small_batch_is_staged_in_one_turn() -> None:
    async with serving() as (chain, _store, _backend):
        small = asyncio.create_task(chain.unary("Batch", creates([f"s{i}" for i in range(BATCH_OPS_PER_TURN)]),
                                                LOOPBACK))
        await asyncio.sleep(0)
        single = await chain.unary("Create", api_pb2.CreateRequest(object=pod("single")), LOOPBACK)
        out = await small
        assert max(rv_of(r.response) for r in out.results) < rv_of(single)


async def test_a_large_batch_that_stages_nothing_holds_nothing_up() -> None:
    async with serving() as (chain, store, _backend):
        empty = any_pb2.Any()
        empty.Pack(core_pb2.Pod(metadata={"name": "nocontainers", "namespace": "default"}))
        refused = api_pb2.BatchRequest(ops=[api_pb2.BatchOp(create=api_pb2.CreateRequest(object=empty))] * OPS)
        out = await asyncio.wait_for(chain.unary("Batch", refused, LOOPBACK), timeout=5)
        assert all(r.code != 0 and "containers" in r.message for r in out.results)
        after = await asyncio.wait_for(
            chain.unary("Create", api_pb2.CreateRequest(object=pod("after")), LOOPBACK), timeout=5)
        assert rv_of(after) > 0 and store.latest("Pod", "default/nocontainers") is None
