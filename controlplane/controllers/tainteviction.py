"""Taint-based eviction (Kubernetes' taint-eviction-controller, the NoExecute taint manager).

A pod on a node with a NoExecute taint it does not tolerate is deleted at once; if every such
taint is tolerated and some of the tolerations used carry tolerationSeconds, the pod is deleted
when the smallest of them has passed since the taint's timeAdded (or since the pod was created,
if later). Before the delete the pod gets the condition DisruptionTarget=True, reason
DeletionByTaintManager, so that a Job counts it as disrupted and replaces it. Pods on an
unreachable node then stay Terminating (no agent confirms); the pod GC removes them with the Node.

The work queue holds node names: one sync evicts every due pod of a node in one batch and sets a
timer (add_after) for the next deadline. The API server gives every pod the default 300 s
not-ready/unreachable tolerations (`--pod-eviction-timeout`); daemon pods tolerate forever.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from ketch.api import errors, meta, scheduling, timeutil
from ketch.api.scheduling import NO_EXECUTE
from ketch.client.cache import NODE_NAME_INDEX, DeletedFinalStateUnknown, by_node_name, copy_of
from ketch.client.clientset import Batch
from ketch.v1 import core_pb2

from .base import Controller, ControllerContext

log = logging.getLogger(__name__)

COMPONENT = "taint-eviction-controller"
DISRUPTION_TARGET = "DisruptionTarget"
REASON = "DeletionByTaintManager"
MESSAGE = "Taint manager: deleting due to NoExecute taint"


def no_execute_taints(node: core_pb2.Node) -> list[core_pb2.Taint]:
    return [t for t in node.spec.taints if t.effect == NO_EXECUTE]


def eviction_time(pod: core_pb2.Pod, taints: Sequence[core_pb2.Taint], now: float,
                  first_seen: dict[tuple[str, str], float] | None = None) -> float | None:
    """When pod must go because of the node's NoExecute taints: now if one is not tolerated,
    the earliest (taint start + tolerationSeconds) over the tolerations used, or None (never)."""
    if not taints:
        return None
    all_tolerated, used = scheduling.matching_tolerations(taints, pod.spec.tolerations)
    if not all_tolerated:
        return now
    created = timeutil.parse(pod.metadata.creation_timestamp) if pod.metadata.creation_timestamp else 0.0
    deadline: float | None = None
    for taint, tol in used:
        if not tol.HasField("toleration_seconds"):
            continue
        if tol.toleration_seconds <= 0:
            return now
        if taint.time_added:
            start = timeutil.parse(taint.time_added)
        else:
            start = (first_seen or {}).get((taint.key, taint.value), now)
        at = max(start, created) + tol.toleration_seconds
        deadline = at if deadline is None else min(deadline, at)
    return deadline


def plan_evictions(pods: Iterable[Any], taints: Sequence[core_pb2.Taint], now: float,
                   first_seen: dict[tuple[str, str], float] | None = None) -> tuple[list[Any], float | None]:
    """(pods to evict now, the next eviction time among the others or None)."""
    due: list[Any] = []
    next_at: float | None = None
    for pod in pods:
        if pod.metadata.deletion_timestamp:
            continue
        at = eviction_time(pod, taints, now, first_seen)
        if at is None:
            continue
        if at <= now:
            due.append(pod)
        elif next_at is None or at < next_at:
            next_at = at
    return due, next_at


def with_disruption_target(pod: core_pb2.Pod, now: float) -> Any | None:
    """A copy of pod with DisruptionTarget=True set, or None if it already has it."""
    cond = meta.find_condition(pod.status.conditions, DISRUPTION_TARGET)
    if cond is not None and cond.status == "True" and cond.reason == REASON:
        return None
    upd = copy_of(pod)
    meta.set_condition(upd.status.conditions, DISRUPTION_TARGET, "True", REASON, MESSAGE, now=now)
    return upd


def _exec_taints_view(node: core_pb2.Node) -> tuple[tuple[str, str, str], ...]:
    return tuple((t.key, t.value, t.time_added) for t in node.spec.taints if t.effect == NO_EXECUTE)


class TaintEvictionController(Controller):
    name = "taint-eviction"
    workers = 4  # nodes evicted in parallel; each node's pods go in one batch

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.nodes = ctx.informers.informer(core_pb2.Node)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.pods.add_indexer(NODE_NAME_INDEX, by_node_name)
        self.recorder = ctx.recorder(COMPONENT)
        # When a taint without timeAdded was first seen, by node: (key, value) -> time.
        self.first_seen: dict[str, dict[tuple[str, str], float]] = {}
        self.nodes.add_handler(self.add_node, self.update_node, self.delete_node)
        self.pods.add_handler(self.add_pod, self.update_pod)

    # -- handlers ------------------------------------------------------------------------------

    def add_node(self, node: core_pb2.Node) -> None:
        if _exec_taints_view(node):
            self.enqueue(node.metadata.name)

    def update_node(self, old: Any, new: Any) -> None:
        if _exec_taints_view(old) != _exec_taints_view(new):
            self.enqueue(new.metadata.name)

    def delete_node(self, obj: Any) -> None:
        node = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        self.first_seen.pop(node.metadata.name, None)

    def _enqueue_pod_node(self, pod: core_pb2.Pod) -> None:
        name = pod.spec.node_name
        if not name or pod.metadata.deletion_timestamp:
            return
        node = self.nodes.get("", name)
        if node is not None and _exec_taints_view(node):
            self.enqueue(name)

    def add_pod(self, pod: core_pb2.Pod) -> None:
        self._enqueue_pod_node(pod)

    def update_pod(self, old: Any, new: Any) -> None:
        if old.spec.node_name != new.spec.node_name or list(old.spec.tolerations) != list(new.spec.tolerations):
            self._enqueue_pod_node(new)

    # -- sync ----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        node = self.nodes.get("", key)
        if node is None:
            return
        taints = no_execute_taints(node)
        if not taints:
            self.first_seen.pop(key, None)
            return
        now = self.clock.now()
        seen = self.first_seen.setdefault(key, {})
        for t in taints:
            seen.setdefault((t.key, t.value), now)
        due, next_at = plan_evictions(self.pods.by_index(NODE_NAME_INDEX, key), taints, now, seen)
        if next_at is not None:
            self.queue.add_after(key, next_at - now + 0.01)
        if due:
            await self._evict(key, due, now)

    async def _evict(self, node: str, pods: list[Any], now: float) -> None:
        """DisruptionTarget first (one batch), then delete the pods that got it (another)."""
        marked: list[Any] = []
        to_mark: list[Any] = []
        status_batch = Batch()
        for pod in pods:
            upd = with_disruption_target(pod, now)
            if upd is None:
                marked.append(pod)
            else:
                to_mark.append(pod)
                status_batch.update_status(upd)
        failed: Exception | None = None
        if to_mark:
            for pod, res in zip(to_mark, await self.client.batch(status_batch), strict=True):
                if res.error is None:
                    marked.append(pod)
                elif not isinstance(res.error, errors.NotFound):
                    failed = failed or res.error
        if marked:
            batch = Batch()
            for pod in marked:
                batch.delete("Pod", pod.metadata.name, namespace=pod.metadata.namespace, uid=pod.metadata.uid)
            for pod, res in zip(marked, await self.client.batch(batch), strict=True):
                ref = f"{pod.metadata.namespace}/{pod.metadata.name}"
                if res.error is None:
                    log.info("evicting pod %s from node %s (NoExecute taint)", ref, node)
                    self.recorder.event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {ref}")
                elif not isinstance(res.error, errors.NotFound | errors.Conflict):
                    failed = failed or res.error
        if failed is not None:
            raise failed
