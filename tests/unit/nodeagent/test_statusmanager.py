"""The status manager against an in-process API server: batching, no-op skipping, conflicts,
an unreachable API, and the final deletes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controlplane.apiserver.testing import TestAPIServer
from ketch.api import errors
from ketch.client.clientset import Client
from ketch.v1 import core_pb2
from nodeagent.status import ContainerRun, PodRun, Terminated, compute_status
from nodeagent.statusmanager import StatusManager


class FlakyClient:
    """Delegates to a real client; the first `failures` batch calls raise Unavailable."""

    def __init__(self, inner: Client, failures: int = 0) -> None:
        self.inner = inner
        self.failures = failures
        self.batches = 0

    async def batch(self, batch: Any) -> Any:
        self.batches += 1
        if self.failures > 0:
            self.failures -= 1
            raise errors.Unavailable("the server is not reachable")
        return await self.inner.batch(batch)

    async def get(self, *args: Any, **kw: Any) -> Any:
        return await self.inner.get(*args, **kw)


@pytest.fixture
async def api() -> AsyncIterator[TestAPIServer]:
    async with TestAPIServer(grpc=False) as server:
        yield server


async def _make_pods(client: Client, n: int) -> list[core_pb2.Pod]:
    out = []
    for i in range(n):
        pod = core_pb2.Pod(api_version="v1", kind="Pod")
        pod.metadata.name, pod.metadata.namespace = f"p{i}", "default"
        pod.spec.node_name = "n1"
        pod.spec.restart_policy = "Never"
        pod.spec.containers.add(name="main", command=["true"])
        out.append(await client.create(pod))
    return out


class Harness:
    def __init__(self, client: Any, pods: list[core_pb2.Pod]) -> None:
        self.cache = {p.metadata.uid: p for p in pods}
        self.runs = {p.metadata.uid: PodRun(containers={"main": ContainerRun("main", state="running",
                                                                                started_at=1.0, ready=True,
                                                                                started=True)})
                     for p in pods}
        self.sm = StatusManager(client, self.cache.get, interval=0.01)
        for p in pods:
            self.sm.register(p.metadata.uid, lambda p=p: compute_status(p, self.runs[p.metadata.uid], "10.0.0.1"))


async def _phases(client: Client) -> dict[str, str]:
    pods, _ = await client.list("Pod")
    return {p.metadata.name: p.status.phase for p in pods}


async def test_many_pods_in_one_batch_and_nothing_when_unchanged(api: TestAPIServer) -> None:
    assert api.local is not None
    pods = await _make_pods(api.local, 20)
    h = Harness(api.local, pods)
    h.sm.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(h.sm.flushed(p.metadata.uid) for p in pods)), 5)
        assert h.sm.batches == 1 and h.sm.writes == 20
        assert set((await _phases(api.local)).values()) == {"Running"}
        # Marking again without any change writes nothing (the last write is newer than the cache).
        await asyncio.wait_for(asyncio.gather(*(h.sm.flushed(p.metadata.uid) for p in pods)), 5)
        assert h.sm.writes == 20
    finally:
        await h.sm.stop()


async def test_conflict_rereads_and_reapplies(api: TestAPIServer) -> None:
    assert api.local is not None
    [pod] = await _make_pods(api.local, 1)
    # Someone else writes the pod after our cache copy was taken: our CAS write conflicts.
    other = core_pb2.Pod()
    other.CopyFrom(pod)
    other.metadata.labels["touched"] = "yes"
    await api.local.update(other)
    h = Harness(api.local, [pod])
    h.sm.start()
    try:
        await asyncio.wait_for(h.sm.flushed(pod.metadata.uid), 5)
        stored = await api.local.get("Pod", "p0", "default")
        assert stored.status.phase == "Running"
        assert stored.metadata.labels["touched"] == "yes"
    finally:
        await h.sm.stop()


async def test_unreachable_api_is_retried_and_latest_state_wins(api: TestAPIServer) -> None:
    assert api.local is not None
    [pod] = await _make_pods(api.local, 1)
    flaky = FlakyClient(api.local, failures=2)
    h = Harness(flaky, [pod])
    h.sm.start()
    try:
        h.sm.mark(pod.metadata.uid)
        await asyncio.sleep(0)
        # The container finishes while the API is down: only the final state is written.
        run = h.runs[pod.metadata.uid]
        run.containers["main"] = ContainerRun("main", state="terminated", terminated=Terminated(0, 0, "Completed"))
        await asyncio.wait_for(h.sm.flushed(pod.metadata.uid), 10)
        assert flaky.batches >= 3
        assert (await _phases(api.local))["p0"] == "Succeeded"
        assert h.sm.writes == 1
    finally:
        await h.sm.stop()


async def test_final_delete_rides_in_a_batch(api: TestAPIServer) -> None:
    assert api.local is not None
    pods = await _make_pods(api.local, 3)
    h = Harness(api.local, pods)
    h.sm.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(h.sm.delete(p) for p in pods)), 5)
        assert await _phases(api.local) == {}
    finally:
        await h.sm.stop()


async def test_an_urgent_change_goes_at_once_and_a_routine_one_waits_for_the_interval(api: TestAPIServer) -> None:
    """A started container may exit a moment later (one write instead of two); a finished pod
    or a readiness change is what controllers wait for, so it does not wait."""
    assert api.local is not None
    routine, urgent = await _make_pods(api.local, 2)
    h = Harness(api.local, [routine, urgent])
    h.sm.interval = 30.0
    h.sm.start()
    try:
        h.sm.mark(routine.metadata.uid)
        h.sm.mark(urgent.metadata.uid, urgent=True)

        async def written(name: str) -> None:
            while (await _phases(api.local)).get(name) != "Running":
                await asyncio.sleep(0.01)

        await asyncio.wait_for(written("p1"), 5)
        assert (await _phases(api.local))["p0"] == "Pending"  # its 30 s are not over
        assert h.sm.batches == 1
        # flushed() is urgent too, and takes the routine change with it.
        await asyncio.wait_for(h.sm.flushed(routine.metadata.uid), 5)
        assert (await _phases(api.local))["p0"] == "Running"
    finally:
        await h.sm.stop()
