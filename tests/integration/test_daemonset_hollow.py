"""Hollow nodes (ketch-agent --hollow) against a real API server: they register as Ready Nodes
with Leases, a DaemonSet runs (simulated) on every one of them and updates across them, batch pods
on them succeed after their `sleep`, and when the hollow agent stops heartbeating its nodes are
found lost; a pod the node lifecycle controller marked not Ready is reported Ready again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.daemonset.controller import DaemonSetController
from controlplane.controllers.nodelifecycle import NodeLifecycleController
from controlplane.controllers.options import ControllerOptions, NodeLifecycleOptions
from ketch.api import meta
from nodeagent.hollow import HollowNodes, hollow_names
from tests.conftest import eventually

from .cp_helpers import pod, running
from .test_daemonset_controller import daemonset, set_template_version

N = 20
# Long beside the 0.5 s heartbeats: a loaded machine that stalls the event loop for a while must not
# find the nodes lost before the test stops their heartbeats.
GRACE = 6.0


async def test_hollow_nodes_run_a_daemonset_and_are_lost_together(api: TestAPIServer) -> None:
    c = api.local
    stop = asyncio.Event()
    hollow = HollowNodes(api.address, hollow_names("hollow", N), labels={"pool": "sim"}, heartbeat_interval=0.5,
                         tls=api.admin_tls)
    task = asyncio.create_task(hollow.run(stop))
    options = ControllerOptions(node_lifecycle=NodeLifecycleOptions(monitor_grace_period=GRACE))
    try:
        async def nodes_ready() -> bool:
            nodes, _ = await c.list("Node")
            return len(nodes) == N and all(meta.condition_true(n.status.conditions, "Ready") for n in nodes)

        await eventually(nodes_ready, what="the hollow nodes to be Ready")
        nodes, _ = await c.list("Node")
        assert nodes[0].metadata.labels["pool"] == "sim"
        leases, _ = await c.list("Lease", "kube-node-lease")
        assert len(leases) == N

        async with running(c, DaemonSetController, NodeLifecycleController, options=options):
            await c.create(daemonset())

            async def ds(**want: int) -> bool:
                st = (await c.get("DaemonSet", "agentd", "default")).status
                return all(getattr(st, k) == v for k, v in want.items())

            await eventually(lambda: ds(desired_number_scheduled=N, number_ready=N, number_available=N),
                             what="a ready daemon pod on every hollow node")
            await set_template_version(c, "agentd", "2")
            await eventually(lambda: ds(observed_generation=2, updated_number_scheduled=N, number_available=N),
                             timeout=20, what="the update across the hollow nodes")

            await c.create(pod("batch", node_name="hollow-0003", extra_spec={"restartPolicy": "Never"}))
            job_pod = pod("sleeper", node_name="hollow-0004")
            job_pod.spec.containers[0].command[:] = ["sleep", "0.5"]
            await c.create(job_pod)

            async def phases() -> dict[str, Any]:
                out = {}
                for name in ("batch", "sleeper"):
                    out[name] = (await c.get("Pod", name, "default")).status.phase
                return out

            await eventually(lambda: _eq(phases(), {"batch": "Succeeded", "sleeper": "Succeeded"}),
                             what="batch pods to succeed")

            stop.set()  # the hollow agent goes away: no more heartbeats

            async def lost() -> bool:
                nodes, _ = await c.list("Node")
                return all(meta.find_condition(n.status.conditions, "Ready").status == "Unknown" for n in nodes)

            await eventually(lost, timeout=GRACE + 20, what="every hollow node to be found lost")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_running_pod_marked_not_ready_by_the_control_plane_is_ready_again(api: TestAPIServer) -> None:
    """As a kubelet's status manager rewrites its own status over the node lifecycle controller's
    MarkPodsNotReady once its node is back; without it, a node that missed heartbeats under load
    left its pods not Ready for good."""
    c = api.local
    stop = asyncio.Event()
    hollow = HollowNodes(api.address, hollow_names("hollow", 1), heartbeat_interval=0.5, tls=api.admin_tls)
    task = asyncio.create_task(hollow.run(stop))
    try:
        steady = pod("steady", node_name="hollow-0000")
        steady.spec.containers[0].command[:] = ["sleep", "3600"]
        await c.create(steady)

        async def ready() -> bool:
            p = await c.get("Pod", "steady", "default")
            return p.status.phase == "Running" and meta.condition_true(p.status.conditions, "Ready")

        await eventually(ready, what="the pod to run and be Ready")
        p = await c.get("Pod", "steady", "default")
        meta.set_condition(p.status.conditions, "Ready", "False", "NodeStatusUnknown", now=time.time())
        await c.update_status(p)
        await eventually(ready, what="the hollow node to report the pod Ready again")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _eq(value: Any, want: Any) -> bool:
    return (await value) == want
