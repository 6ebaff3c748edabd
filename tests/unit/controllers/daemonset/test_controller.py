"""One DaemonSet sync on cached state (an in-memory API server, a fake clock): what it deletes and
creates, and when it looks again. A pod that is Ready but not yet Ready for minReadySeconds turns
available with no event to say so; unless the sync re-queues the DaemonSet for that moment, a
surging rollout waits for an event that never comes (issue 14, item 1). Table-driven."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.base import ControllerContext
from controlplane.controllers.daemonset import history
from controlplane.controllers.daemonset.controller import AVAILABILITY_SLACK, DaemonSetController
from ketch.api import errors, manifest, meta, timeutil
from ketch.client.informer import InformerFactory
from ketch.testing.fake_clock import FakeClock
from ketch.v1 import apps_pb2
from tests.integration.cp_helpers import create_node, node

T0 = 1_700_000_000.0
NS = "default"
DS = "agentd"
KEY = f"{NS}/{DS}"
LONG_AGO = -10_000.0


@dataclass(frozen=True)
class P:
    """A pod of the DaemonSet: on `node`, of the new template or the old, Ready since `ready_at`
    (an offset from now; None: not Ready)."""

    name: str
    node: str
    new: bool
    ready_at: float | None = LONG_AGO


@dataclass(frozen=True)
class Case:
    name: str
    pods: tuple[P, ...]
    max_surge: int | None = None
    max_unavailable: int | None = None
    min_ready_seconds: int = 3
    nodes: tuple[str, ...] = ("a", "b")
    # expected
    deleted: tuple[str, ...] = ()
    created_on: tuple[str, ...] = ()
    requeue_in: float | None = None  # the earliest delayed re-queue of the DaemonSet


SURGE = {"max_surge": 1, "max_unavailable": 0}

CASES = [
    Case("surge: a new pod Ready 1 s of 3 holds the rollout and is looked at again when available",
         pods=(P("a-old", "a", False), P("a-new", "a", True, ready_at=-1), P("b-old", "b", False)),
         **SURGE, requeue_in=2 + AVAILABILITY_SLACK),  # type: ignore[arg-type]
    Case("surge: once the new pod is available the old one goes (manage; the next sync surges on)",
         pods=(P("a-old", "a", False), P("a-new", "a", True, ready_at=-3.5), P("b-old", "b", False)),
         **SURGE, deleted=("a-old",)),  # type: ignore[arg-type]
    Case("surge: a surged pod not Ready yet waits for its Ready event, not for the clock",
         pods=(P("a-old", "a", False), P("a-new", "a", True, ready_at=None), P("b-old", "b", False)),
         **SURGE),  # type: ignore[arg-type]
    Case("without surge: a new pod Ready 1 s of 3 is looked at again when available",
         pods=(P("a-new", "a", True, ready_at=-1), P("b-old", "b", False)),
         max_unavailable=1, requeue_in=2 + AVAILABILITY_SLACK),
    Case("everything updated and available: no re-queue",
         pods=(P("a-new", "a", True), P("b-new", "b", True)), **SURGE),  # type: ignore[arg-type]
]


def _daemonset(case: Case, version: str) -> apps_pb2.DaemonSet:
    ru = {k: v for k, v in (("maxSurge", case.max_surge), ("maxUnavailable", case.max_unavailable)) if v is not None}
    return manifest.from_dict({  # type: ignore[return-value]
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": DS, "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": DS}},
            "minReadySeconds": case.min_ready_seconds,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": ru},
            "template": {"metadata": {"labels": {"app": DS}}, "spec": {
                "restartPolicy": "Always",
                "containers": [{"name": "d", "image": "x", "command": ["sleep", "3600"],
                                "env": [{"name": "VERSION", "value": version}]}]}},
        },
    })


async def _make_pod(client: Any, ds: apps_pb2.DaemonSet, p: P, hash_: str, generation: str) -> None:
    created = await client.create(manifest.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": p.name, "namespace": NS,
                     "labels": {"app": DS, "controller-revision-hash": hash_, "pod-template-generation": generation},
                     "ownerReferences": [meta_ref(ds)]},
        "spec": {"nodeName": p.node, "restartPolicy": "Always",
                 "containers": [{"name": "d", "image": "x", "command": ["sleep", "3600"]}]},
    }))
    created.status.phase = "Running"
    if p.ready_at is not None:
        meta.set_condition(created.status.conditions, "Ready", "True")
        cond = meta.find_condition(created.status.conditions, "Ready")
        assert cond is not None
        cond.last_transition_time = timeutil.format(T0 + p.ready_at)
    await client.update_status(created)


def meta_ref(ds: apps_pb2.DaemonSet) -> dict[str, Any]:
    return manifest.message_to_dict(meta.owner_ref_for(ds))


@pytest.fixture
async def world() -> AsyncIterator[tuple[TestAPIServer, FakeClock]]:
    clock = FakeClock(T0)
    async with TestAPIServer(grpc=False, clock=clock.now) as api:
        yield api, clock


async def _setup(api: TestAPIServer, clock: FakeClock,
                 case: Case) -> tuple[DaemonSetController, list[tuple[str, float]]]:
    client = api.local
    assert client is not None
    for name in case.nodes:
        await create_node(client, node(name))
    await client.create(_daemonset(case, "1"))
    ds = await client.get("DaemonSet", DS, NS)
    ds.spec.CopyFrom(_daemonset(case, "2").spec)
    ds = await client.update(ds)
    new_hash = history.compute_hash(ds.spec.template, history.collision_count(ds))
    for p in case.pods:  # old pods were created long before the new ones (a different oldest)
        clock.set(T0 + (-5 if p.new else LONG_AGO))
        await _make_pod(client, ds, p, new_hash if p.new else "old", "2" if p.new else "1")
    clock.set(T0)
    informers = InformerFactory(client)
    controller = DaemonSetController(ControllerContext(client=client, informers=informers, clock=clock))
    delays: list[tuple[str, float]] = []
    add_after = controller.queue.add_after

    def recording(item: str, delay: float) -> None:
        delays.append((item, delay))
        add_after(item, delay)

    controller.queue.add_after = recording  # type: ignore[method-assign]
    informers.start()
    assert await informers.wait_for_sync(5)
    return controller, delays


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_sync(world: tuple[TestAPIServer, FakeClock], case: Case) -> None:
    api, clock = world
    client = api.local
    assert client is not None
    controller, delays = await _setup(api, clock, case)
    try:
        before = {p.metadata.name: p for p in (await client.list("Pod", NS))[0]}
        await controller.sync(KEY)
        after = {p.metadata.name: p for p in (await client.list("Pod", NS))[0]
                 if not p.metadata.deletion_timestamp}
        assert sorted(set(before) - set(after)) == sorted(case.deleted)
        assert sorted(p.spec.node_name for n, p in after.items() if n not in before) == sorted(case.created_on)
        waits = [d for k, d in delays if k == KEY]
        if case.requeue_in is None:
            assert waits == []
        else:
            assert waits, "never looked at again: the rollout waits for an event that never comes"
            assert min(waits) == pytest.approx(case.requeue_in, abs=0.01)
    finally:
        controller.queue.shutdown()
        await controller.ctx.informers.stop()


async def test_a_pod_turning_ready_requeues_after_min_ready_seconds(world: tuple[TestAPIServer, FakeClock]) -> None:
    """Kubernetes' updatePod: a pod of the DaemonSet that changed to Ready re-queues it after
    minReadySeconds plus a second, whatever the sync that follows decides."""
    api, clock = world
    case = Case("", pods=(P("a-new", "a", True, ready_at=None),), **SURGE)  # type: ignore[arg-type]
    controller, delays = await _setup(api, clock, case)
    try:
        client = api.local
        assert client is not None
        old = await client.get("Pod", "a-new", NS)
        new = type(old)()
        new.CopyFrom(old)
        meta.set_condition(new.status.conditions, "Ready", "True")
        new.metadata.resource_version = old.metadata.resource_version + "1"
        controller.update_pod(old, new)
        assert (KEY, 3 + 1) in delays
        delays.clear()
        controller.update_pod(new, _bumped(new))  # Ready to Ready: nothing new to wait for
        assert delays == []
    finally:
        controller.queue.shutdown()
        await controller.ctx.informers.stop()


def _bumped(pod: Any) -> Any:
    out = type(pod)()
    out.CopyFrom(pod)
    out.metadata.resource_version = pod.metadata.resource_version + "2"
    return out


NODE_CHANGES = [
    # (what changed, enqueues the DaemonSet)
    ("a label", lambda n: n.metadata.labels.__setitem__("zone", "b"), True),
    ("a taint", lambda n: n.spec.taints.add(key="dedicated", value="db", effect="NoSchedule"), True),
    ("the Ready condition", lambda n: meta.set_condition(n.status.conditions, "Ready", "False"), False),
    ("cordoned", lambda n: setattr(n.spec, "unschedulable", True), False),
    ("a heartbeat", lambda n: setattr(n.metadata, "resource_version", "99"), False),
]


@pytest.mark.parametrize("what,change,enqueues", NODE_CHANGES, ids=[c[0] for c in NODE_CHANGES])
async def test_a_node_update_enqueues_only_when_labels_or_taints_change(
        world: tuple[TestAPIServer, FakeClock], what: str, change: Any, enqueues: bool) -> None:
    """Kubernetes' shouldIgnoreNodeUpdate: what decides where daemon pods run is a node's labels
    and taints; its conditions and cordoning reach the DaemonSet only as taints."""
    api, clock = world
    controller, _ = await _setup(api, clock, Case("", pods=()))
    try:
        client = api.local
        assert client is not None
        old = await client.get("Node", "a")
        while len(controller.queue):  # what the informers' initial adds queued
            item = await controller.queue.get()
            assert item is not None
            controller.queue.done(item)
        new = type(old)()
        new.CopyFrom(old)
        change(new)
        controller.update_node(old, new)
        assert bool(len(controller.queue)) == enqueues
    finally:
        controller.queue.shutdown()
        await controller.ctx.informers.stop()


async def test_observed_generation_is_raised_even_when_creating_pods_failed(
        world: tuple[TestAPIServer, FakeClock]) -> None:
    """Kubernetes' syncDaemonSet writes the status with updateObservedGen=true after
    updateDaemonSet whatever it returned (only unsatisfied expectations keep the old
    observedGeneration): a template whose pods are refused still shows its generation observed,
    so `rollout status` reports the pods, not "waiting for the spec update to be observed"."""
    api, clock = world
    controller, _ = await _setup(api, clock, Case("", pods=()))
    refused = errors.Forbidden('pods "agentd-x" is forbidden: exceeded quota')

    async def refuse(*_args: Any) -> Exception:
        return refused

    controller._create_pods = refuse  # type: ignore[method-assign]
    try:
        client = api.local
        assert client is not None
        with pytest.raises(errors.Forbidden):
            await controller.sync(KEY)
        ds = await client.get("DaemonSet", DS, NS)
        assert ds.metadata.generation == 2
        assert ds.status.observed_generation == 2
        assert ds.status.desired_number_scheduled == 2 and ds.status.current_number_scheduled == 0
    finally:
        controller.queue.shutdown()
        await controller.ctx.informers.stop()


async def test_a_pod_without_a_target_node_is_left_alone(world: tuple[TestAPIServer, FakeClock]) -> None:
    """Kubernetes' getNodesToDaemonPods skips a pod whose target node GetTargetNodeName cannot
    tell (no nodeName, no matchFields metadata.name): not deleted, not counted. The scheduler
    may yet bind it, and then it counts on its node."""
    api, clock = world
    controller, _ = await _setup(api, clock, Case("", pods=(P("a-new", "a", True), P("b-new", "b", True))))
    try:
        client = api.local
        assert client is not None
        ds = await client.get("DaemonSet", DS, NS)
        await client.create(manifest.from_dict({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "unbound", "namespace": NS, "labels": {"app": DS}, "ownerReferences": [meta_ref(ds)]},
            "spec": {"restartPolicy": "Always", "containers": [{"name": "d", "image": "x", "command": ["sleep", "1"]}]},
        }))
        assert await controller.ctx.informers.wait_for_sync(5)
        for _ in range(50):
            if controller.pods.get(NS, "unbound") is not None:
                break
            await asyncio.sleep(0.01)
        await controller.sync(KEY)
        pod = await client.get("Pod", "unbound", NS)
        assert not pod.metadata.deletion_timestamp
        ds = await client.get("DaemonSet", DS, NS)
        assert (ds.status.desired_number_scheduled, ds.status.current_number_scheduled,
                ds.status.number_misscheduled) == (2, 2, 0)
    finally:
        controller.queue.shutdown()
        await controller.ctx.informers.stop()
