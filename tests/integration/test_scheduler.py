"""The scheduler against a real API server: binding, spreading, selectors, taints, capacity,
FailedScheduling and retry when a node appears."""

from __future__ import annotations

from collections import Counter

from controlplane.apiserver.testing import TestAPIServer
from controlplane.scheduler.scheduler import Scheduler
from ketch.api import meta
from ketch.client.clientset import Batch
from tests.conftest import eventually

from .cp_helpers import create_node, node, pod, running


async def _nodes_of(client, names=None) -> dict[str, str]:
    pods, _ = await client.list("Pod", "default")
    return {p.metadata.name: p.spec.node_name for p in pods if names is None or p.metadata.name in names}


async def test_binds_30_pods_spread_over_3_ready_nodes(api: TestAPIServer) -> None:
    client = api.client
    for i in range(3):
        await create_node(client, node(f"n{i}"))
    async with running(client, Scheduler):
        batch = Batch()
        for i in range(30):
            batch.create(pod(f"p{i}"))
        assert all(o.error is None for o in await client.batch(batch))

        async def all_bound():
            placed = await _nodes_of(client)
            return placed if len(placed) == 30 and all(placed.values()) else None

        placed = await eventually(all_bound, timeout=20, what="30 pods bound")
    assert Counter(placed.values()) == {"n0": 10, "n1": 10, "n2": 10}
    bound = await client.get("Pod", "p0", "default")
    assert meta.condition_true(bound.status.conditions, "PodScheduled")


async def test_node_selector_taints_readiness_and_capacity(api: TestAPIServer) -> None:
    client = api.local
    await create_node(client, node("plain", cpu="1"))
    await create_node(client, node("gpu", cpu="8", labels={"accel": "gpu"}))
    await create_node(client, node("tainted", cpu="8", taints=[{"key": "dedicated", "value": "db",
                                                                "effect": "NoSchedule"}]))
    await create_node(client, node("down", cpu="8", ready="False"))
    await create_node(client, node("cordoned", cpu="8", unschedulable=True))
    async with running(client, Scheduler):
        batch = Batch()
        batch.create(pod("wants-gpu", node_selector={"accel": "gpu"}))
        batch.create(pod("tolerates-db", tolerations=[{"key": "dedicated", "operator": "Equal",
                                                       "value": "db", "effect": "NoSchedule"}],
                         extra_spec={"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                             "nodeSelectorTerms": [{"matchFields": [
                                 {"key": "metadata.name", "operator": "In", "values": ["tainted"]}]}]}}}}))
        for i in range(2):
            batch.create(pod(f"big{i}", cpu="600m", node_selector={"kubernetes.io/hostname": "plain"}))
        batch.create(pod("other-scheduler", extra_spec={"schedulerName": "my-scheduler"}))
        await client.batch(batch)

        async def placed():
            got = await _nodes_of(client)
            return got if got["wants-gpu"] and got["tolerates-db"] and (got["big0"] or got["big1"]) else None

        got = await eventually(placed, timeout=15, what="pods placed")
        assert got["wants-gpu"] == "gpu"
        assert got["tolerates-db"] == "tainted"
        # Only one 600m pod fits in the 1-cpu node; the other waits, reported unschedulable.
        assert sorted([got["big0"], got["big1"]]) == ["", "plain"]
        waiting = "big1" if got["big0"] else "big0"

        async def unschedulable():
            p = await client.get("Pod", waiting, "default")
            c = meta.find_condition(p.status.conditions, "PodScheduled")
            return c if c is not None and c.status == "False" else None

        cond = await eventually(unschedulable, timeout=10, what="PodScheduled=False")
        assert cond.reason == "Unschedulable"
        assert cond.message == (
            "0/5 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node "
            "affinity/selector, 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) had "
            "untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable. preemption: 0/5 nodes "
            "are available: 1 No preemption victims found for incoming pod, 4 Preemption is not helpful for "
            "scheduling..")
        assert (await client.get("Pod", "other-scheduler", "default")).spec.node_name == ""


async def test_failed_scheduling_then_bound_when_a_node_appears(api: TestAPIServer) -> None:
    client = api.client
    await create_node(client, node("small", cpu="1"))
    async with running(client, Scheduler):
        await client.create(pod("needs-2-cpus", cpu="2"))

        async def failed_event():
            events, _ = await client.list("Event", "default")
            return [e for e in events if e.reason == "FailedScheduling"
                    and e.involved_object.name == "needs-2-cpus"]

        events = await eventually(failed_event, timeout=10, what="FailedScheduling event")
        assert events[0].type == "Warning"
        assert events[0].message == ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are "
                                     "available: 1 No preemption victims found for incoming pod..")

        await create_node(client, node("large", cpu="4"))

        async def bound():
            return (await client.get("Pod", "needs-2-cpus", "default")).spec.node_name

        assert await eventually(bound, timeout=10, what="pod bound after a node appeared") == "large"


async def test_room_freed_by_a_finished_pod_is_reused(api: TestAPIServer) -> None:
    client = api.local
    await create_node(client, node("only", pods="1"))
    async with running(client, Scheduler):
        await client.create(pod("first"))

        async def first_bound():
            return (await client.get("Pod", "first", "default")).spec.node_name

        await eventually(first_bound, timeout=10, what="first pod bound")
        await client.create(pod("second"))

        async def second_unschedulable():
            p = await client.get("Pod", "second", "default")
            c = meta.find_condition(p.status.conditions, "PodScheduled")
            return c is not None and c.status == "False" and c.message.startswith(
                "0/1 nodes are available: 1 Too many pods.")

        await eventually(second_unschedulable, timeout=10, what="second pod unschedulable")
        first = await client.get("Pod", "first", "default")
        first.status.phase = "Succeeded"
        await client.update_status(first)

        async def second_bound():
            return (await client.get("Pod", "second", "default")).spec.node_name

        assert await eventually(second_bound, timeout=10, what="second pod bound") == "only"


async def test_preferred_affinity_and_prefer_no_schedule_taints_steer_placement(api: TestAPIServer) -> None:
    """Soft rules move pods without excluding nodes: the preferred zone gets the pods that
    prefer it, the PreferNoSchedule node gets none of the others while the rest have room."""
    client = api.client
    await create_node(client, node("zone-a", labels={"zone": "a"}))
    await create_node(client, node("zone-b", labels={"zone": "b"}))
    await create_node(client, node("spot", taints=[{"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}]))
    prefer_b = {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 80, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}}]}}}
    async with running(client, Scheduler):
        batch = Batch()
        for i in range(4):
            batch.create(pod(f"b{i}", extra_spec=prefer_b))
        for i in range(6):
            batch.create(pod(f"any{i}"))
        assert all(o.error is None for o in await client.batch(batch))

        async def all_bound():
            placed = await _nodes_of(client)
            return placed if len(placed) == 10 and all(placed.values()) else None

        placed = await eventually(all_bound, timeout=20, what="10 pods bound")
    assert {placed[f"b{i}"] for i in range(4)} == {"zone-b"}
    assert "spot" not in placed.values()
