"""After a Job's and a DaemonSet's pods are gone, nothing in the control plane still holds them.

Every controller runs in-process against a real API server (the control plane's own set), a
fake kubelet runs the pods, and the workloads are deleted as a user deletes them. Then the whole
heap is walked: no string equal to one of the deleted pods' uids may be reachable from anything,
no map, set or queue may hold one's name or key (the watch window's history may, for its 75 s),
and no parsed Pod or Event of them may be alive. A cache keyed by uid or name that is never
emptied (an informer's index, the scheduler's tables, an event recorder's memory, an
expectation) would keep one per pod for good, and a
control plane that ran a thousand Jobs would then hold a thousand Jobs' pods. The memory a load
leaves behind is measured by bench/scale.py; this is the part of it that must be exactly nothing.
"""

from __future__ import annotations

import asyncio
import gc
from collections import deque
from typing import Any

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.manager import ControllerManager
from controlplane.controllers.options import ControllerOptions
from ketch.api import errors, manifest, timeutil
from ketch.client.clientset import Client
from ketch.v1 import api_pb2, batch_pb2, core_pb2
from tests.conftest import eventually

from .cp_helpers import create_node, node

PODS = 120  # the Job's
NODES = 3  # one DaemonSet pod each
NS = "default"


def job(name: str, pods: int) -> batch_pb2.Job:
    return manifest.from_dict({  # type: ignore[return-value]
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"parallelism": pods, "completions": pods, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}},
    })


def daemonset(name: str) -> Any:
    return manifest.from_dict({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}},
    })


async def play_kubelet(client: Client) -> None:
    """Bound pods go Running and Ready; a pod being deleted is removed at once (grace 0), as an
    agent does once its processes have exited."""
    while True:
        await _kubelet_pass(client)
        await asyncio.sleep(0.05)


async def _kubelet_pass(client: Client) -> None:
    """One look at every pod (its own call: the pods it read are not held while it sleeps)."""
    pods, _ = await client.list("Pod", NS)
    for pod in pods:
        try:
            if pod.metadata.deletion_timestamp:
                await client.delete("Pod", pod.metadata.name, NS, grace_period_seconds=0,
                                    uid=pod.metadata.uid)
            elif pod.spec.node_name and pod.status.phase == "Pending":
                now = timeutil.now()
                pod.status.phase = "Running"
                pod.status.start_time = now
                for kind in ("Initialized", "ContainersReady", "Ready"):
                    cond = pod.status.conditions.add()
                    cond.type, cond.status, cond.last_transition_time = kind, "True", now
                await client.update_status(pod)
        except (errors.NotFound, errors.Conflict):
            pass  # it changed meanwhile: the next pass sees it as it is now


def holders_of(needles: set[str], kinds: tuple[type, ...] = (object,)) -> dict[str, set[str]]:
    """Which of needles a reachable container of one of kinds holds (needles itself aside),
    each with its holders named by type (and, for a dict, some of its keys). The walk starts
    from everything the garbage collector tracks and goes on into what it does not: a dict or
    tuple of strings only is untracked, but reachable from whatever holds it; and a dict's
    string keys, which it does not show the garbage collector, are read from the dict."""
    found: dict[str, set[str]] = {}
    seen = {id(needles)}
    stack: list[Any] = gc.get_objects()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        refs = gc.get_referents(obj)
        if isinstance(obj, dict):
            refs += list(obj)  # a dict whose keys are all strings does not report them to gc
        for ref in refs:
            if type(ref) is str:
                if ref in needles and isinstance(obj, kinds):
                    found.setdefault(ref, set()).add(_describe(obj))
            elif id(ref) not in seen and type(ref) not in _LEAVES:
                stack.append(ref)
    return found


def messages_about(uids: set[str]) -> dict[str, set[str]]:
    """Parsed Pods and Events (kept in the store only as bytes) of these uids that anything
    still holds: an event recorder's loop held its last batch of Events until the next one.
    And watch messages that carry one: each stage of a watch stream (the server's handler, the
    request chain, the API service) held the last list it passed on until the next came."""
    found: dict[str, set[str]] = {}
    encoded = {uid.encode(): uid for uid in uids}
    for obj in gc.get_objects():
        if isinstance(obj, core_pb2.Pod) and obj.metadata.uid in uids:
            found.setdefault(obj.metadata.uid, set()).add("a parsed Pod")
        elif isinstance(obj, core_pb2.Event) and obj.involved_object.uid in uids:
            found.setdefault(obj.involved_object.uid, set()).add("a parsed Event about the pod")
        elif isinstance(obj, api_pb2.WatchEventList | api_pb2.WatchEvent):
            events = obj.events if isinstance(obj, api_pb2.WatchEventList) else [obj]
            for ev in events:
                for needle, uid in encoded.items():
                    if needle in ev.object.value:
                        found.setdefault(uid, set()).add(f"a {type(obj).__name__} that carries the pod")
    return found


_LEAVES = (int, float, bytes, bool, type(None))
MAPS_SETS_QUEUES = (dict, set, frozenset, deque)


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        return f"dict with keys {list(obj)[:3]!r}"
    return type(obj).__qualname__


async def test_deleted_workloads_leave_no_pod_uid_behind_in_any_controller() -> None:
    async with TestAPIServer(grpc=False) as api:
        client = api.local
        assert client is not None
        for i in range(NODES):
            await create_node(client, node(f"node-{i}", cpu="64", memory="64Gi", pods="110"))
        manager = ControllerManager(client, ControllerOptions())
        await manager.start()
        kubelet = asyncio.create_task(play_kubelet(client))
        try:
            await client.create(job("load", PODS))
            await client.create(daemonset("daemon"))

            async def all_ready() -> bool:
                j = await client.get("Job", "load", NS)
                ds = await client.get("DaemonSet", "daemon", NS)
                return j.status.ready == PODS and ds.status.number_ready == NODES
            await eventually(all_ready, timeout=60, interval=0.2, what=f"{PODS + NODES} pods Ready")
            pods, _ = await client.list("Pod", NS)
            uids = {p.metadata.uid for p in pods}
            assert len(uids) == PODS + NODES
            names = {p.metadata.name for p in pods} | {f"{NS}/{p.metadata.name}" for p in pods}
            del pods

            await client.delete("Job", "load", NS, propagation_policy="Background")
            await client.delete("DaemonSet", "daemon", NS, propagation_policy="Background")

            async def no_pods() -> bool:
                return not (await client.list("Pod", NS))[0]
            await eventually(no_pods, timeout=60, interval=0.2, what="every pod to be deleted")

            # The controllers see the deletes through their watches, and forget in sweeps
            # (the event recorders one second after a burst): give them that, then none may remain.
            held: dict[str, set[str]] = {}

            def none_held() -> bool:
                held.clear()
                held.update(holders_of(uids))
                # A name or key may stay in the watch window's versions (75 s of history) and in
                # the last commit's list until the next one, but in no map, set or queue.
                held.update(holders_of(names, MAPS_SETS_QUEUES))
                held.update(messages_about(uids))
                return not held
            try:
                await eventually(none_held, timeout=30, interval=1.0,
                                 what="no pod uid held anywhere, no name or key in a map, set or queue")
            except AssertionError:
                by = sorted(set().union(*held.values()))
                raise AssertionError(f"{len(held)} uids, names or keys of the {PODS + NODES} deleted pods "
                                     f"still held, by: {by}") from None
        finally:
            kubelet.cancel()
            await asyncio.gather(kubelet, return_exceptions=True)
            await manager.stop()
