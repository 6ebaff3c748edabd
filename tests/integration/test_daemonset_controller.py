"""The DaemonSet controller against a real API server, with the agents simulated through the API:
one pod per eligible node that follows joins, leaves and label changes; rolling updates that
never exceed maxUnavailable (or, surging, never lose availability); OnDelete; rollback without
restarts; failed and surplus pods; revision history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.daemonset.controller import DaemonSetController
from ketch.api import errors, manifest, meta
from ketch.client.clientset import Client
from ketch.client.informer import Informer
from ketch.v1 import apps_pb2
from tests.conftest import eventually

from .cp_helpers import create_node, node, running

BROKEN = "broken"  # a pod label the simulated agents never make Ready


class FakeAgents:
    """Plays every node's agent through the API: a bound pod becomes Running and Ready (unless
    labelled broken), and a pod being deleted is finished off (grace 0) a little later."""

    def __init__(self, client: Client, stop_delay: float = 0.2) -> None:
        self.client = client
        self.stop_delay = stop_delay  # how long a deleted pod stays Terminating, as a process stops
        self.stopped: set[str] = set()
        self.pods = Informer(client, "Pod")
        self.todo: asyncio.Queue[str] = asyncio.Queue()
        self.pods.add_handler(lambda p: self.todo.put_nowait(meta.key_of(p)),
                              lambda _o, p: self.todo.put_nowait(meta.key_of(p)))
        self.tasks: list[asyncio.Task[None]] = []

    async def _work(self) -> None:
        while True:
            key = await self.todo.get()
            ns, name = meta.split_key(key)
            pod = self.pods.get(ns, name)
            if pod is None or not pod.spec.node_name:
                continue
            try:
                if pod.metadata.deletion_timestamp:
                    if pod.metadata.uid not in self.stopped:
                        self.stopped.add(pod.metadata.uid)
                        asyncio.get_running_loop().call_later(self.stop_delay, self.todo.put_nowait, key)
                        continue
                    await self.client.delete("Pod", name, ns, grace_period_seconds=0, uid=pod.metadata.uid)
                elif pod.status.phase == "Pending":
                    upd = Pod_copy(pod)
                    upd.status.phase = "Running"
                    ready = "False" if pod.metadata.labels.get(BROKEN) else "True"
                    meta.set_condition(upd.status.conditions, "Ready", ready)
                    await self.client.update_status(upd)
            except errors.NotFound:
                pass
            except errors.Conflict:
                await asyncio.sleep(0.01)  # let the cache catch up, then look again
                self.todo.put_nowait(key)

    async def __aenter__(self) -> FakeAgents:
        self.tasks = [self.pods.start(), asyncio.create_task(self._work())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def Pod_copy(pod: Any) -> Any:
    out = type(pod)()
    out.CopyFrom(pod)
    return out


def daemonset(name: str = "agentd", node_selector: dict[str, str] | None = None, strategy: str = "RollingUpdate",
              max_unavailable: int | str | None = None, max_surge: int | str | None = None,
              history_limit: int | None = None, version: str = "1") -> apps_pb2.DaemonSet:
    update: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        update["rollingUpdate"] = {k: v for k, v in (("maxUnavailable", max_unavailable),
                                                     ("maxSurge", max_surge)) if v is not None}
    doc: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": update,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "d", "image": "x", "command": ["sleep", "3600"],
                                         "env": [{"name": "VERSION", "value": version}]}],
                         "restartPolicy": "Always", "nodeSelector": node_selector or {}},
            },
        },
    }
    if history_limit is not None:
        doc["spec"]["revisionHistoryLimit"] = history_limit
    return manifest.from_dict(doc)  # type: ignore[return-value]


@asynccontextmanager
async def cluster(client: Client, nodes: dict[str, dict[str, str]]) -> AsyncIterator[Informer]:
    """Nodes, the DaemonSet controller and the simulated agents; yields a Pod informer to look at."""
    for name, labels in nodes.items():
        await create_node(client, node(name, labels=labels))
    watch = Informer(client, "Pod")
    task = watch.start()
    try:
        async with running(client, DaemonSetController), FakeAgents(client):
            await watch.wait_for_sync(10)
            yield watch
    finally:
        await watch.stop()
        del task


def live(pods: Informer) -> list[Any]:
    return [p for p in pods.list() if not p.metadata.deletion_timestamp]


def placement(pods: Informer) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in live(pods):
        out.setdefault(p.spec.node_name, []).append(p.metadata.name)
    return out


def ready_nodes(pods: Informer) -> set[str]:
    return {p.spec.node_name for p in live(pods) if meta.condition_true(p.status.conditions, "Ready")}


async def set_template_version(client: Client, name: str, version: str, broken: bool = False) -> None:
    ds = await client.get("DaemonSet", name, "default")
    ds.spec.template.spec.containers[0].env[0].value = version
    if broken:
        ds.spec.template.metadata.labels[BROKEN] = "yes"
    else:
        ds.spec.template.metadata.labels.pop(BROKEN, None)
    await client.update(ds)


async def test_one_pod_per_eligible_node_follows_labels_joins_and_leaves(api: TestAPIServer) -> None:
    c = api.local
    web = {"role": "web"}
    async with cluster(c, {"a": web, "b": web, "c": {}}) as pods:
        await c.create(daemonset(node_selector=web))
        await eventually(lambda: ready_nodes(pods) == {"a", "b"}, what="a ready pod on a and b")
        pod = live(pods)[0]
        assert pod.metadata.labels["pod-template-generation"] == "1"
        assert pod.metadata.labels["controller-revision-hash"]
        assert meta.controller_ref(pod).kind == "DaemonSet"
        tolerated = {(t.key, t.effect) for t in pod.spec.tolerations}
        assert ("node.kubernetes.io/unreachable", "NoExecute") in tolerated
        assert ("node.kubernetes.io/unschedulable", "NoSchedule") in tolerated

        async def status(**want: int) -> bool:
            st = (await c.get("DaemonSet", "agentd", "default")).status
            return all(getattr(st, k) == v for k, v in want.items())

        await eventually(lambda: status(desired_number_scheduled=2, current_number_scheduled=2, number_ready=2,
                                        number_available=2, updated_number_scheduled=2, number_unavailable=0,
                                        number_misscheduled=0, observed_generation=1),
                         what="the status to count two ready pods")

        await c.patch("Node", "c", {"metadata": {"labels": {"role": "web"}}})
        await eventually(lambda: ready_nodes(pods) == {"a", "b", "c"}, what="node c to get a pod once labelled")
        await c.patch("Node", "a", {"metadata": {"labels": {"role": "db"}}})
        await eventually(lambda: set(placement(pods)) == {"b", "c"}, what="node a to lose its pod")
        await create_node(c, node("d", labels=web))
        await eventually(lambda: ready_nodes(pods) == {"b", "c", "d"}, what="the node that joined to get a pod")
        await c.delete("Node", "b")
        await eventually(lambda: not any(p.spec.node_name == "b" for p in pods.list()),
                         what="the pod of the node that left to go")
        await eventually(lambda: status(desired_number_scheduled=2, number_ready=2),
                         what="the desired count to follow")
        assert all(len(v) == 1 for v in placement(pods).values())


async def _roll_and_watch(c: Client, pods: Informer, nodes: set[str], version: str) -> tuple[int, int]:
    """Change the template and watch the rollout: (max nodes without a ready pod, max pods on a node)."""
    worst_unavailable = 0
    worst_per_node = 0
    done = asyncio.Event()

    def check(*_: Any) -> None:
        nonlocal worst_unavailable, worst_per_node
        worst_unavailable = max(worst_unavailable, len(nodes - ready_nodes(pods)))
        worst_per_node = max([worst_per_node, *(len(v) for v in placement(pods).values())])
        current = [p for p in live(pods) if p.metadata.labels.get("pod-template-generation") != "1"]
        if {p.spec.node_name for p in current if meta.condition_true(p.status.conditions, "Ready")} == nodes \
                and len(live(pods)) == len(nodes):
            done.set()

    pods.add_handler(check, check, check)
    await set_template_version(c, "agentd", version)
    await asyncio.wait_for(done.wait(), 20)
    return worst_unavailable, worst_per_node


async def test_rolling_update_never_exceeds_max_unavailable(api: TestAPIServer) -> None:
    c = api.local
    nodes = {f"n{i}": {} for i in range(5)}
    async with cluster(c, nodes) as pods:
        await c.create(daemonset(max_unavailable=2))
        await eventually(lambda: ready_nodes(pods) == set(nodes), what="a ready pod everywhere")
        worst, per_node = await _roll_and_watch(c, pods, set(nodes), "2")
        assert 1 <= worst <= 2
        assert per_node == 1
        revs, _ = await c.list("ControllerRevision", "default")
        assert sorted(r.revision for r in revs) == [1, 2]
        ds = await c.get("DaemonSet", "agentd", "default")
        current = max(revs, key=lambda r: r.revision)
        assert all(p.metadata.labels["controller-revision-hash"] == current.metadata.labels["controller-revision-hash"]
                   for p in live(pods))
        assert ds.metadata.annotations["deprecated.daemonset.template.generation"] == "2"


async def test_surge_brings_the_new_pod_up_before_the_old_goes(api: TestAPIServer) -> None:
    c = api.local
    nodes = {f"n{i}": {} for i in range(3)}
    async with cluster(c, nodes) as pods:
        await c.create(daemonset(max_unavailable=0, max_surge=1))
        await eventually(lambda: ready_nodes(pods) == set(nodes), what="a ready pod everywhere")
        worst, per_node = await _roll_and_watch(c, pods, set(nodes), "2")
        assert worst == 0
        assert per_node == 2


async def test_surge_with_min_ready_seconds_does_not_stall(api: TestAPIServer) -> None:
    """Issue 14, item 1: once the surged pod is Ready, nothing but the clock says when it is
    available; the rollout must go on by itself, node after node, one surge at a time."""
    c = api.local
    nodes = {f"n{i}": {} for i in range(2)}
    async with cluster(c, nodes) as pods:
        ds = daemonset(max_unavailable=0, max_surge=1)
        ds.spec.min_ready_seconds = 2
        await c.create(ds)

        async def available(n: int) -> bool:
            return (await c.get("DaemonSet", "agentd", "default")).status.number_available == n

        # Old pods still within minReadySeconds are unavailable and would be replaced at once.
        await eventually(lambda: available(len(nodes)), what="every pod available")
        worst, per_node = await _roll_and_watch(c, pods, set(nodes), "2")
        assert worst == 0
        assert per_node == 2
        await eventually(lambda: available(len(nodes)), what="every new pod available")


async def test_on_delete_changes_nothing_until_a_pod_is_deleted(api: TestAPIServer) -> None:
    c = api.local
    nodes = {f"n{i}": {} for i in range(3)}
    async with cluster(c, nodes) as pods:
        await c.create(daemonset(strategy="OnDelete"))
        await eventually(lambda: ready_nodes(pods) == set(nodes), what="a ready pod everywhere")
        before = {p.metadata.name for p in live(pods)}
        await set_template_version(c, "agentd", "2")

        async def observed(gen: int, updated: int) -> bool:
            st = (await c.get("DaemonSet", "agentd", "default")).status
            return st.observed_generation == gen and st.updated_number_scheduled == updated

        await eventually(lambda: observed(2, 0), what="the controller to see generation 2")
        assert {p.metadata.name for p in live(pods)} == before
        victim = sorted(before)[0]
        await c.delete("Pod", victim, "default")
        await eventually(lambda: len(ready_nodes(pods)) == 3 and victim not in {p.metadata.name for p in pods.list()},
                         what="a replacement pod")
        fresh = [p for p in live(pods) if p.metadata.name not in before]
        assert len(fresh) == 1 and fresh[0].metadata.labels["pod-template-generation"] == "2"
        await eventually(lambda: observed(2, 1), what="one updated pod counted")


async def test_rollback_reuses_the_old_revision_without_restarting_matching_pods(api: TestAPIServer) -> None:
    c = api.local
    nodes = {f"n{i}": {} for i in range(3)}
    async with cluster(c, nodes) as pods:
        await c.create(daemonset(max_unavailable=1))
        await eventually(lambda: ready_nodes(pods) == set(nodes), what="a ready pod everywhere")
        v1_pods = {p.metadata.name for p in live(pods)}
        v1_hash = live(pods)[0].metadata.labels["controller-revision-hash"]
        # A bad update: its pods never become ready, so the rollout stalls after one node.
        await set_template_version(c, "agentd", "2", broken=True)
        await eventually(lambda: any(p.metadata.labels.get(BROKEN) for p in live(pods)),
                         what="one pod of the bad revision")
        await asyncio.sleep(0.5)  # give a (wrong) controller the chance to go further
        assert sum(1 for p in live(pods) if p.metadata.labels.get(BROKEN)) == 1
        assert len(v1_pods & {p.metadata.name for p in live(pods)}) == 2
        # Undo: the template goes back to version 1.
        await set_template_version(c, "agentd", "1")
        await eventually(lambda: ready_nodes(pods) == set(nodes) and not any(
            p.metadata.labels.get(BROKEN) for p in live(pods)), what="the bad pod replaced")
        survivors = v1_pods & {p.metadata.name for p in live(pods)}
        assert len(survivors) == 2, "pods that already matched the old template were restarted"
        assert all(p.metadata.labels["controller-revision-hash"] == v1_hash for p in live(pods))
        revs, _ = await c.list("ControllerRevision", "default")
        by_hash = {r.metadata.labels["controller-revision-hash"]: r.revision for r in revs}
        assert by_hash[v1_hash] == 3  # the old revision renumbered as the newest
        assert len(revs) == 2


async def test_failed_pod_is_replaced_and_extra_pods_removed(api: TestAPIServer) -> None:
    c = api.local
    async with cluster(c, {"a": {}, "b": {}}) as pods:
        await c.create(daemonset())
        await eventually(lambda: ready_nodes(pods) == {"a", "b"}, what="a ready pod everywhere")
        victim = next(p for p in live(pods) if p.spec.node_name == "a")
        failed = Pod_copy(victim)
        failed.status.phase = "Failed"
        await c.update_status(failed)
        await eventually(lambda: ready_nodes(pods) == {"a", "b"}
                         and victim.metadata.name not in {p.metadata.name for p in pods.list()},
                         what="the failed pod replaced")

        async def failed_event() -> bool:
            events, _ = await c.list("Event", "default")
            return any(e.reason == "FailedDaemonPod" and victim.metadata.name in e.message for e in events)

        await eventually(failed_event, what="the FailedDaemonPod event (events are written in batches)")

        # A second pod on node b (an orphan the DaemonSet adopts): the newer one goes.
        extra = Pod_copy(next(p for p in live(pods) if p.spec.node_name == "b"))
        keep = extra.metadata.name
        extra.metadata.Clear()
        extra.metadata.name, extra.metadata.namespace = "extra", "default"
        extra.metadata.labels["app"] = "agentd"
        extra.ClearField("status")
        await c.create(extra)
        await eventually(lambda: [p.metadata.name for p in pods.list() if p.spec.node_name == "b"] == [keep],
                         what="the surplus pod on b to go")


async def test_revision_history_limit(api: TestAPIServer) -> None:
    c = api.local
    async with cluster(c, {"a": {}}) as pods:
        await c.create(daemonset(history_limit=1, max_unavailable=1))
        for version in ("2", "3", "4"):
            await set_template_version(c, "agentd", version)
            await eventually(lambda v=version: [p.metadata.labels.get("pod-template-generation") for p in live(pods)
                                                if meta.condition_true(p.status.conditions, "Ready")]
                             == [str(int(v))], what=f"version {version} rolled out")

        async def revisions() -> list[int]:
            revs, _ = await c.list("ControllerRevision", "default")
            return sorted(r.revision for r in revs)

        await eventually(lambda: _eq(revisions(), [3, 4]), what="only the current and one old revision kept")


async def _eq(value: Any, want: Any) -> bool:
    return (await value) == want
