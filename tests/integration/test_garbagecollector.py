"""The garbage collector against a real API server: background, foreground and orphan deletion
of a Job with pods, dangling owners, and owners that are partly gone."""

from __future__ import annotations

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.garbagecollector import GarbageCollector
from ketch.api import manifest
from ketch.client.clientset import Batch, Client
from ketch.v1 import meta_pb2
from tests.conftest import eventually

from .cp_helpers import create_node, exists, job, node, pod, running


async def _job_with_pods(client: Client, name: str, n: int = 3, node_name: str = "") -> tuple:
    j = await client.create(job(name))
    batch = Batch()
    for i in range(n):
        batch.create(pod(f"{name}-{i}", owner=j, node_name=node_name))
    outs = await client.batch(batch)
    assert all(o.error is None for o in outs)
    return j, [o.object for o in outs]


async def _pod_names(client: Client) -> set[str]:
    pods, _ = await client.list("Pod", "default")
    return {p.metadata.name for p in pods}


async def test_background_deletion_removes_the_pods(api: TestAPIServer) -> None:
    client = api.client
    async with running(client, GarbageCollector) as (gc,):
        assert isinstance(gc, GarbageCollector)
        bg, _ = await _job_with_pods(client, "bg")
        await _job_with_pods(client, "keep")
        await client.delete("Job", "bg", "default", propagation_policy="Background")

        async def only_kept():
            return await _pod_names(client) == {"keep-0", "keep-1", "keep-2"}

        await eventually(only_kept, timeout=10, what="the deleted job's pods to go")
        # The owner is remembered gone; the pods, which own nothing, are not.
        assert list(gc.absent) == [bg.metadata.uid]


async def test_foreground_deletion_waits_for_blocking_pods(api: TestAPIServer) -> None:
    client = api.local
    async with running(client, GarbageCollector):
        _, pods = await _job_with_pods(client, "fg", node_name="n1")
        for p in pods:  # running on a node: their deletion is graceful and takes a while
            p.status.phase = "Running"
            await client.update_status(p)
        await client.delete("Job", "fg", "default", propagation_policy="Foreground")

        async def pods_terminating():
            listed, _ = await client.list("Pod", "default")
            return len(listed) == 3 and all(p.metadata.deletion_timestamp for p in listed)

        await eventually(pods_terminating, timeout=10, what="the pods to be deleted gracefully")
        j = await client.get("Job", "fg", "default")
        assert j.metadata.deletion_timestamp and "foregroundDeletion" in j.metadata.finalizers
        # The agent would finish them; here they are removed with grace 0.
        for p in pods:
            await client.delete("Pod", p.metadata.name, "default", grace_period_seconds=0)

        async def job_gone():
            return not await exists(client, "Job", "fg", "default")

        await eventually(job_gone, timeout=10, what="the job to go once its pods are gone")


async def test_orphan_deletion_keeps_the_pods_without_the_reference(api: TestAPIServer) -> None:
    client = api.client
    async with running(client, GarbageCollector):
        await _job_with_pods(client, "or")
        await client.delete("Job", "or", "default", propagation_policy="Orphan")

        async def job_gone():
            return not await exists(client, "Job", "or", "default")

        await eventually(job_gone, timeout=10, what="the job to go")
        pods, _ = await client.list("Pod", "default")
        assert {p.metadata.name for p in pods} == {"or-0", "or-1", "or-2"}
        assert all(not p.metadata.owner_references for p in pods)


async def test_dangling_owner_and_partly_gone_owners(api: TestAPIServer) -> None:
    client = api.local
    async with running(client, GarbageCollector):
        alive = await client.create(job("alive"))
        ghost = meta_pb2.OwnerReference(api_version="batch/v1", kind="Job", name="ghost",
                                        uid="00000000-0000-0000-0000-000000000001")
        orphaned = pod("orphaned")
        orphaned.metadata.owner_references.append(ghost)
        shared = pod("shared", owner=alive)
        shared.metadata.owner_references[0].controller = False
        shared.metadata.owner_references.append(ghost)
        await client.create(orphaned)
        await client.create(shared)
        # A Lease owned by a Node (cluster-scoped owner of a namespaced dependent) is kept.
        n = await create_node(client, node("n1"))
        lease = manifest.from_dict({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                    "metadata": {"name": "n1", "namespace": "kube-node-lease"},
                                    "spec": {"holderIdentity": "n1"}})
        lease.metadata.owner_references.append(meta_pb2.OwnerReference(
            api_version="v1", kind="Node", name="n1", uid=n.metadata.uid))
        await client.create(lease)

        async def settled():
            if await exists(client, "Pod", "orphaned", "default"):
                return False
            p = await client.get("Pod", "shared", "default")
            return [r.name for r in p.metadata.owner_references] == ["alive"]

        await eventually(settled, timeout=10, what="the dangling reference to be handled")
        assert await exists(client, "Lease", "n1", "kube-node-lease")
        await client.delete("Node", "n1")

        async def lease_gone():
            return not await exists(client, "Lease", "n1", "kube-node-lease")

        await eventually(lease_gone, timeout=10, what="the node's lease to go with it")


async def test_owner_created_after_its_dependent_is_not_mistaken_for_gone(api: TestAPIServer) -> None:
    """The dependent reaches the GC first; a live GET finds the owner, so nothing is deleted."""
    client = api.local
    j = await client.create(job("late"))
    async with running(client, GarbageCollector) as (gc,):
        # Simulate the owner missing from the cache: look the states up with an empty cache.
        gc.informers["Job"].store.remove("default/late")
        p = await client.create(pod("late-0", owner=j))
        states = await gc._owner_states([("k", "Pod", p)])
        assert states[j.metadata.uid].value == "solid"
    with_pod = await client.get("Pod", "late-0", "default")
    assert with_pod.metadata.owner_references[0].uid == j.metadata.uid


async def test_keys_of_vanished_objects_are_dropped(api: TestAPIServer) -> None:
    async with running(api.local, GarbageCollector) as (gc,):
        keys = ["Pod:default/nothing-here", "Nope:x"]
        for k in keys:  # as if earlier writes for them had failed
            gc.queue.rate_limiter.when(k)
        assert all(gc.queue.num_requeues(k) == 1 for k in keys)
        revision = api.store.revision
        await gc.process(keys)
        # Nothing to decide for objects no cache holds (or kinds nobody serves): no write, no
        # re-queue, and their back-off history is forgotten.
        assert [gc.queue.num_requeues(k) for k in keys] == [0, 0]
        assert len(gc.queue) == 0 and not gc.queue._delayed
        assert api.store.revision == revision
