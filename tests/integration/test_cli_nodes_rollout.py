"""cordon, uncordon, drain (with a fake agent finishing deletions), and rollout on a DaemonSet."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controlplane.apiserver.testing import TestAPIServer
from ketch.api import manifest, timeutil
from ketch.cli.factory import Factory
from ketch.cli.main import execute
from ketch.client.clientset import Client

from ..conftest import eventually
from .test_cli_support import CLI


async def make_node(client: Client, name: str) -> Any:
    node = manifest.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    created = await client.create(node)
    created.status.CopyFrom(manifest.from_dict({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                   "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": timeutil.now()}]}}).status)
    return await client.update_status(created)


async def make_pod(client: Client, name: str, node: str, owner: Any = None, phase: str = "Running") -> Any:
    md: dict[str, Any] = {"name": name, "namespace": "default", "labels": {"app": "x"}}
    if owner is not None:
        md["ownerReferences"] = [{"apiVersion": owner.api_version or "apps/v1", "kind": owner.kind or "DaemonSet",
                                  "name": owner.metadata.name, "uid": owner.metadata.uid, "controller": True}]
    pod = await client.create(manifest.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": md,
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 5,
                 "containers": [{"name": "c", "command": ["sleep", "100"]}]}}))
    pod.status.phase = phase
    return await client.update_status(pod)


@contextlib.asynccontextmanager
async def fake_agent(client: Client, seen: dict[str, list[str]]) -> AsyncIterator[None]:
    """Finishes graceful deletions as an agent would; records each pod's conditions when it does."""

    async def loop() -> None:
        async for ev in client.watch("Pod", "", allow_bookmarks=False):
            pod = ev.object
            if ev.type == "DELETED" or pod is None or not pod.metadata.deletion_timestamp:
                continue
            seen[pod.metadata.name] = [f"{c.type}={c.status}/{c.reason}" for c in pod.status.conditions]
            with contextlib.suppress(Exception):
                await client.delete("Pod", pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)

    task = asyncio.ensure_future(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


DS = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agentd}
spec:
  selector: {matchLabels: {app: agentd}}
  template:
    metadata: {labels: {app: agentd}}
    spec:
      containers: [{name: agentd, command: ["sleep", "3600"]}]
"""


async def test_cordon_and_uncordon(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await make_node(api.client, "node-1")
    assert (await cli("cordon", "node-1")).out == "node/node-1 cordoned\n"
    assert (await cli("cordon", "node-1")).out == "node/node-1 already cordoned\n"
    r = await cli("get", "nodes")
    assert r.out.splitlines()[1].split()[:2] == ["node-1", "Ready,SchedulingDisabled"]
    assert (await cli("uncordon", "node-1")).out == "node/node-1 uncordoned\n"
    assert not (await api.client.get("Node", "node-1")).spec.unschedulable
    r = await cli("cordon", "node-9")
    assert (r.code, r.err) == (1, 'Error from server (NotFound): nodes "node-9" not found\n')


async def test_drain_refuses_then_evicts(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    client = api.client
    await make_node(client, "node-1")
    await make_node(client, "node-2")
    await cli("apply", "-f", "-", stdin=DS)
    ds = await client.get("DaemonSet", "agentd", "default")
    await make_pod(client, "agentd-a", "node-1", owner=ds)
    await make_pod(client, "bare", "node-1")
    job = manifest.from_dict({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "uid": "x"}})
    job.metadata.uid = "job-uid"
    await make_pod(client, "work", "node-1", owner=job)
    await make_pod(client, "elsewhere", "node-2", owner=job)

    r = await cli("drain", "node-1")
    assert r.code == 1
    assert r.out == "node/node-1 cordoned\n"
    assert r.err.count("\n") == 1
    assert "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/agentd-a" in r.err
    assert "cannot delete Pods that declare no controller (use --force to override): default/bare" in r.err
    assert (await client.get("Node", "node-1")).spec.unschedulable

    seen: dict[str, list[str]] = {}
    async with fake_agent(client, seen):
        r = await cli("drain", "node-1", "--ignore-daemonsets", "--force", "--timeout", "20s")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0] == "node/node-1 already cordoned"
    assert "evicting pod default/work" in r.out and "evicting pod default/bare" in r.out
    assert "pod/work evicted" in r.out and r.out.endswith("node/node-1 drained\n")
    assert "Warning: ignoring DaemonSet-managed Pods: default/agentd-a" in r.err
    assert "DisruptionTarget=True/EvictionByEvictionAPI" in seen["work"]
    pods, _ = await client.list("Pod", "")
    assert sorted(p.metadata.name for p in pods) == ["agentd-a", "elsewhere"]


async def test_drain_times_out_naming_the_pods(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await make_node(api.client, "node-1")
    job = manifest.from_dict({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}})
    job.metadata.uid = "job-uid"
    await make_pod(api.client, "work", "node-1", owner=job)
    r = await cli("drain", "node-1", "--timeout", "500ms")  # no agent: the pod stays Terminating
    assert r.code == 1
    assert r.err.startswith('error: unable to drain node "node-1" due to error: error when waiting for pods to '
                            'terminate: "work" in namespace "default": global timeout reached: 500ms')


async def _revision(client: Client, ds: Any, number: int, command: list[str], cause: str = "") -> None:
    template = manifest.to_dict(ds)["spec"]["template"]
    template["spec"]["containers"][0]["command"] = command
    annotations = {"kubernetes.io/change-cause": cause} if cause else {}
    await client.create(manifest.from_dict({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": f"agentd-h{number}", "namespace": "default", "annotations": annotations,
                     "labels": {"app": "agentd", "controller-revision-hash": f"h{number}"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agentd",
                                          "uid": ds.metadata.uid, "controller": True}]},
        "data": {"spec": {"template": {**template, "$patch": "replace"}}}, "revision": number}))


async def _set_status(client: Client, **status: int) -> None:
    await client.patch("DaemonSet", "agentd", {"status": status}, namespace="default", patch_type="merge",
                       subresource="status")


async def test_rollout_status_prints_progress_until_done(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=DS)
    await _set_status(api.client, observedGeneration=1, desiredNumberScheduled=2, updatedNumberScheduled=0,
                      numberAvailable=2)
    out = io.StringIO()
    factory = Factory.with_client(api.client, out=out, err=io.StringIO())
    task = asyncio.ensure_future(execute(["rollout", "status", "ds/agentd", "--timeout", "20s"], factory))
    await eventually(lambda: len(out.getvalue().splitlines()) == 1, what="the first progress line")
    await _set_status(api.client, updatedNumberScheduled=1, numberAvailable=1)
    await eventually(lambda: len(out.getvalue().splitlines()) == 2, what="the second progress line")
    await _set_status(api.client, updatedNumberScheduled=2, numberAvailable=2)
    assert await asyncio.wait_for(task, 20) == 0
    assert out.getvalue().splitlines() == [
        'Waiting for daemon set "agentd" rollout to finish: 0 out of 2 new pods have been updated...',
        'Waiting for daemon set "agentd" rollout to finish: 1 out of 2 new pods have been updated...',
        'daemon set "agentd" successfully rolled out',
    ]


async def test_rollout_status_timeout_names_the_stuck_nodes(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=DS)
    ds = await api.client.get("DaemonSet", "agentd", "default")
    await _revision(api.client, ds, 1, ["sleep", "3600"])
    await make_node(api.client, "node-1")
    pod = await make_pod(api.client, "agentd-a", "node-1", owner=ds)
    pod.metadata.labels["app"] = "agentd"
    pod.metadata.labels["controller-revision-hash"] = "h1"
    await api.client.update(pod)
    await _set_status(api.client, observedGeneration=1, desiredNumberScheduled=2, updatedNumberScheduled=1,
                      numberAvailable=0)
    r = await cli("rollout", "status", "daemonset/agentd", "--timeout", "500ms")
    assert r.code == 1
    assert r.err == ('error: timed out waiting for the condition: daemon set "agentd" rollout is stuck: not '
                     'available on node node-1 (pod agentd-a Running); 1 node(s) without a daemon pod\n')


async def test_rollout_history_undo_restart(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await cli("apply", "-f", "-", stdin=DS)
    ds = await api.client.get("DaemonSet", "agentd", "default")
    await _revision(api.client, ds, 1, ["sleep", "1"], cause="first")
    await _revision(api.client, ds, 2, ["sleep", "3600"])
    r = await cli("rollout", "history", "ds/agentd")
    assert r.out == "daemonset.apps/agentd\nREVISION  CHANGE-CAUSE\n1         first\n2         <none>\n\n"
    r = await cli("rollout", "history", "ds/agentd", "--revision", "1")
    assert r.out.startswith("daemonset.apps/agentd with revision #1\nPod Template:\n")
    assert "      sleep\n      1\n" in r.out
    r = await cli("rollout", "undo", "ds/agentd", "--to-revision", "2")
    assert r.out == "daemonset.apps/agentd skipped rollback (current template already matches revision 2)\n"
    r = await cli("rollout", "undo", "ds/agentd")
    assert (r.code, r.out) == (0, "daemonset.apps/agentd rolled back\n")
    ds = await api.client.get("DaemonSet", "agentd", "default")
    assert list(ds.spec.template.spec.containers[0].command) == ["sleep", "1"]
    r = await cli("rollout", "undo", "ds/agentd", "--to-revision", "7")
    assert (r.code, r.err) == (1, "error: unable to find specified revision 7 in history\n")
    r = await cli("rollout", "restart", "ds/agentd")
    assert r.out == "daemonset.apps/agentd restarted\n"
    ds = await api.client.get("DaemonSet", "agentd", "default")
    assert "kubectl.kubernetes.io/restartedAt" in ds.spec.template.metadata.annotations
    r = await cli("rollout", "status", "job/pi")
    assert (r.code, r.err) == (1, "error: no status viewer has been implemented for Job\n")


@pytest.mark.parametrize("verb", ["status", "history", "undo", "restart"])
async def test_rollout_of_a_missing_daemonset(api: TestAPIServer, verb: str) -> None:
    r = await CLI(api.client)("rollout", verb, "ds/nope")
    assert (r.code, r.err) == (1, 'Error from server (NotFound): daemonsets.apps "nope" not found\n')
