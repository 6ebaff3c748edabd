"""Pod GC against a real API server: pods of a deleted node are marked and force-deleted, and
terminated pods beyond the threshold go oldest first."""

from __future__ import annotations

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.podgc import PodGCController
from ketch.api import meta
from ketch.client.clientset import Batch
from tests.conftest import eventually

from .cp_helpers import create_node, exists, node, pod, running


async def test_pods_of_a_deleted_node_are_force_deleted(api: TestAPIServer) -> None:
    client = api.client
    await create_node(client, node("gone"))
    await create_node(client, node("stays"))
    batch = Batch()
    for name, node_name in (("run-0", "gone"), ("run-1", "gone"), ("done", "gone"), ("other", "stays")):
        batch.create(pod(name, node_name=node_name))
    await client.batch(batch)
    for name, phase in (("run-0", "Running"), ("run-1", "Running"), ("done", "Succeeded"), ("other", "Running")):
        p = await client.get("Pod", name, "default")
        p.status.phase = phase
        await client.update_status(p)
    # One pod was already terminating (its agent will never finish it).
    await client.delete("Pod", "run-1", "default")
    # Watch the pods' last states: the DisruptionTarget condition is written before deletion.
    seen: dict[str, object] = {}

    def make(ctx):
        return PodGCController(ctx, quarantine=0.2)

    async with running(client, make) as (gc,):
        gc.pods.add_handler(on_update=lambda old, new: seen.__setitem__(new.metadata.name, new))
        await client.delete("Node", "gone")

        async def pods_gone():
            return not any([await exists(client, "Pod", n, "default") for n in ("run-0", "run-1", "done")])

        await eventually(pods_gone, timeout=10, what="the vanished node's pods to be deleted")
        assert await exists(client, "Pod", "other", "default")
    last = seen["run-0"]
    assert last.status.phase == "Failed"
    cond = meta.find_condition(last.status.conditions, "DisruptionTarget")
    assert (cond.status, cond.reason, cond.message) == ("True", "DeletionByPodGC", "PodGC: node no longer exists")


async def test_terminated_pods_over_the_threshold_go_oldest_first(api: TestAPIServer) -> None:
    client = api.local
    batch = Batch()
    for i in range(5):
        batch.create(pod(f"t{i}"))
    await client.batch(batch)
    for i in range(5):
        p = await client.get("Pod", f"t{i}", "default")
        p.status.phase = "Failed" if i % 2 else "Succeeded"
        await client.update_status(p)
    await client.create(pod("live"))

    def make(ctx):
        return PodGCController(ctx, terminated_pod_gc_threshold=3, quarantine=0.2)

    async with running(client, make):
        async def trimmed():
            pods, _ = await client.list("Pod", "default")
            return len([p for p in pods if p.status.phase in ("Succeeded", "Failed")]) == 3

        await eventually(trimmed, timeout=10, what="terminated pods trimmed to the threshold")
        assert await exists(client, "Pod", "live", "default")


async def test_a_node_registered_again_within_the_quarantine_keeps_its_pods(api: TestAPIServer) -> None:
    client = api.local
    await create_node(client, node("flaky"))
    await client.create(pod("survivor", node_name="flaky"))

    def make(ctx):
        return PodGCController(ctx, quarantine=1.0)

    async with running(client, make) as (gc,):
        await client.delete("Node", "flaky")
        await eventually(lambda: "flaky" in gc.missing, timeout=5, what="the node to be quarantined")
        await create_node(client, node("flaky"))  # the agent registers it again
        await eventually(lambda: "flaky" not in gc.missing, timeout=5, what="the quarantine to be lifted")
        assert await exists(client, "Pod", "survivor", "default")
