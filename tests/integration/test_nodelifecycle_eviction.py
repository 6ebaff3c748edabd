"""Node lifecycle and taint-based eviction against a real API server, with heartbeats written by
the test: a node whose Lease stops being renewed turns Unknown and tainted within the grace
period, its pods are marked not ready and evicted after their tolerationSeconds (daemon-style
pods that tolerate forever stay); heartbeats and Ready=True lift the taints; a node that reports
Ready=False is tainted not-ready; cordoning mirrors into a taint; and when every node is down at
once nothing is evicted (full disruption)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.nodelifecycle import NodeLifecycleController
from controlplane.controllers.options import ControllerOptions, NodeLifecycleOptions
from controlplane.controllers.tainteviction import TaintEvictionController
from ketch.api import errors, meta, timeutil
from ketch.client.clientset import Client
from ketch.v1 import coordination_pb2
from tests.conftest import eventually

from .cp_helpers import create_node, node, pod, running

GRACE = 1.0
EVICTION = 2  # the API server's default tolerationSeconds in these tests
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"


class Heartbeats:
    """Renews the Leases of the nodes in `alive` every 0.2 s, as agents do."""

    def __init__(self, client: Client, names: list[str]) -> None:
        self.client = client
        self.alive = set(names)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for name in self.alive:
            lease = coordination_pb2.Lease()
            lease.metadata.name, lease.metadata.namespace = name, "kube-node-lease"
            lease.spec.holder_identity, lease.spec.lease_duration_seconds = name, 40
            lease.spec.renew_time = timeutil.now(micro=True)
            await self.client.create(lease)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            for name in sorted(self.alive):
                await self.client.patch("Lease", name, {"spec": {"renewTime": timeutil.now(micro=True)}},
                                        namespace="kube-node-lease")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@asynccontextmanager
async def cluster(names: list[str]) -> AsyncIterator[tuple[Client, Heartbeats]]:
    async with TestAPIServer(grpc=False, default_toleration_seconds=EVICTION) as api:
        client = api.local
        assert client is not None
        for name in names:
            await create_node(client, node(name))
        beats = Heartbeats(client, names)
        await beats.start()
        options = ControllerOptions(node_lifecycle=NodeLifecycleOptions(monitor_grace_period=GRACE,
                                                                      startup_grace_period=2 * GRACE))
        try:
            async with running(client, NodeLifecycleController, TaintEvictionController, options=options):
                yield client, beats
        finally:
            await beats.stop()


async def running_pod(client: Client, name: str, node_name: str,
                      tolerations: list[dict[str, Any]] | None = None) -> Any:
    created = await client.create(pod(name, node_name=node_name, tolerations=tolerations))
    created.status.phase = "Running"
    meta.set_condition(created.status.conditions, "Ready", "True")
    return await client.update_status(created)


async def taints(client: Client, name: str) -> set[tuple[str, str]]:
    n = await client.get("Node", name)
    return {(t.key, t.effect) for t in n.spec.taints}


async def test_lost_node_is_tainted_its_pods_evicted_and_it_recovers() -> None:
    async with cluster(["a", "b"]) as (c, beats):
        job_pod = await running_pod(c, "job-pod", "a")
        forever = await running_pod(c, "daemon-pod", "a", tolerations=[
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}])
        other = await running_pod(c, "other", "b")
        assert any(t.key == UNREACHABLE and t.toleration_seconds == EVICTION for t in job_pod.spec.tolerations)
        await asyncio.sleep(2 * GRACE)
        assert await taints(c, "a") == set()  # heartbeats keep it healthy

        beats.alive.discard("a")
        lost_at = asyncio.get_running_loop().time()

        async def unknown() -> bool:
            ready = meta.find_condition((await c.get("Node", "a")).status.conditions, "Ready")
            return ready.status == "Unknown" and await taints(c, "a") == {(UNREACHABLE, "NoSchedule"),
                                                                         (UNREACHABLE, "NoExecute")}

        await eventually(unknown, timeout=5 * GRACE + 3, what="node a to turn Unknown and tainted")
        assert asyncio.get_running_loop().time() - lost_at >= GRACE - 0.25  # the last renewal was up to 0.2 s earlier
        n = await c.get("Node", "a")
        ready = meta.find_condition(n.status.conditions, "Ready")
        assert (ready.reason, ready.message) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
        assert all(t.time_added for t in n.spec.taints)
        for name in ("job-pod", "daemon-pod"):
            p = await c.get("Pod", name, "default")
            assert meta.find_condition(p.status.conditions, "Ready").status == "False"
        assert meta.condition_true((await c.get("Pod", "other", "default")).status.conditions, "Ready")

        async def evicted() -> bool:
            p = await c.get("Pod", "job-pod", "default")
            return bool(p.metadata.deletion_timestamp)

        await eventually(evicted, timeout=EVICTION + 5, what="the job pod to be evicted")
        p = await c.get("Pod", "job-pod", "default")
        cond = meta.find_condition(p.status.conditions, "DisruptionTarget")
        assert (cond.status, cond.reason) == ("True", "DeletionByTaintManager")
        assert not (await c.get("Pod", forever.metadata.name, "default")).metadata.deletion_timestamp
        assert not (await c.get("Pod", other.metadata.name, "default")).metadata.deletion_timestamp
        async def reasons() -> set[tuple[str, str]]:
            events, _ = await c.list("Event", "default")
            return {(e.reason, e.involved_object.name) for e in events}

        await eventually(lambda: _has(reasons(), {("TaintManagerEviction", "job-pod"), ("NodeNotReady", "a"),
                                                  ("NodeNotReady", "job-pod")}), what="the events")

        # The agent comes back: heartbeats, then Ready=True.
        beats.alive.add("a")
        n = await c.get("Node", "a")
        meta.set_condition(n.status.conditions, "Ready", "True", "KubeletReady", heartbeat=True)
        await c.update_status(n)
        await eventually(lambda: _is(taints(c, "a"), set()), timeout=5, what="the taints to go")


async def test_not_ready_from_the_agent_and_cordon_become_taints() -> None:
    async with cluster(["a", "b"]) as (c, _beats):
        n = await c.get("Node", "a")
        meta.set_condition(n.status.conditions, "Ready", "False", "KubeletNotReady", heartbeat=True)
        await c.update_status(n)
        await eventually(lambda: _is(taints(c, "a"), {(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")}),
                         what="not-ready taints")
        await c.patch("Node", "b", {"spec": {"unschedulable": True}})
        await eventually(lambda: _is(taints(c, "b"), {("node.kubernetes.io/unschedulable", "NoSchedule")}),
                         what="the unschedulable taint")
        await c.patch("Node", "b", {"spec": {"unschedulable": False}})
        await eventually(lambda: _is(taints(c, "b"), set()), what="the unschedulable taint to go")


async def test_no_eviction_when_every_node_is_down() -> None:
    async with cluster(["solo"]) as (c, beats):
        await running_pod(c, "victim", "solo")
        beats.alive.clear()

        async def unknown() -> bool:
            ready = meta.find_condition((await c.get("Node", "solo")).status.conditions, "Ready")
            return ready.status == "Unknown"

        await eventually(unknown, timeout=5 * GRACE + 3, what="the node to turn Unknown")
        await asyncio.sleep(EVICTION + 1)
        assert await taints(c, "solo") == {(UNREACHABLE, "NoSchedule")}
        assert not (await c.get("Pod", "victim", "default")).metadata.deletion_timestamp


async def test_a_small_zone_mostly_down_is_not_evicted() -> None:
    """Three of five nodes lost at once: after the first (tainted at once, at 0.1 node/s) the zone
    is partially disrupted, and a zone of at most 50 nodes then gets no NoExecute taint."""
    async with cluster(["a", "b", "c", "d", "e"]) as (c, beats):
        for name in ("a", "b", "c"):
            await running_pod(c, f"on-{name}", name)
        beats.alive -= {"a", "b", "c"}

        async def unknown() -> bool:
            for name in ("a", "b", "c"):
                ready = meta.find_condition((await c.get("Node", name)).status.conditions, "Ready")
                if ready.status != "Unknown":
                    return False
            return True

        await eventually(unknown, timeout=5 * GRACE + 3, what="the three nodes to turn Unknown")
        await asyncio.sleep(EVICTION + 1)
        tainted = [name for name in ("a", "b", "c") if (UNREACHABLE, "NoExecute") in await taints(c, name)]
        assert len(tainted) <= 1
        kept = [name for name in ("a", "b", "c")
                if not (await c.get("Pod", f"on-{name}", "default")).metadata.deletion_timestamp]
        assert len(kept) >= 2


TOLERATED = 3  # seconds: more than the up to 1 s a taint's whole-second timeAdded can lose


@pytest.mark.parametrize("with_toleration", [False, True], ids=["untolerated", "tolerated for a while"])
async def test_user_no_execute_taint_evicts(with_toleration: bool) -> None:
    async with cluster(["a", "b"]) as (c, _beats):
        tolerations = [{"key": "maint", "operator": "Exists", "effect": "NoExecute",
                        "tolerationSeconds": TOLERATED}] if with_toleration else []
        await running_pod(c, "p", "a", tolerations=tolerations)
        n = await c.get("Node", "a")
        added = timeutil.now()
        n.spec.taints.add(key="maint", effect="NoExecute", time_added=added)
        await c.update(n)
        start = asyncio.get_running_loop().time()

        async def evicted() -> bool:
            try:
                return bool((await c.get("Pod", "p", "default")).metadata.deletion_timestamp)
            except errors.NotFound:
                return True

        await eventually(evicted, timeout=TOLERATED + 5, what="the pod to be evicted")
        if with_toleration:
            # Never before the toleration ran out, counted from the taint's timeAdded.
            assert time.time() >= timeutil.parse(added) + TOLERATED
        else:
            # At once: well before what any toleration would have allowed (a margin, not a speed).
            assert asyncio.get_running_loop().time() - start < TOLERATED


async def _is(value: Any, want: Any) -> bool:
    return (await value) == want


async def _has(value: Any, subset: set[Any]) -> bool:
    return subset <= (await value)
