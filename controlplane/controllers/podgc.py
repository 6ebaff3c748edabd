"""Pod GC: force-deletes pods that nothing else will ever finish, and caps terminated pods.

As Kubernetes' PodGC controller, in three parts:

* orphaned pods — bound to a Node that no longer exists. A node missing from the cache is
  quarantined first (Kubernetes' 40 s, so that an agent whose Node was deleted can register it
  again and keep its pods), then its absence is confirmed with a live GET; then every pod
  of that node not yet terminal is marked Failed with DisruptionTarget=True (reason
  DeletionByPodGC), so that Job controllers replace it, and all of them are deleted with grace 0
  (pods stuck terminating on the vanished node included). Pods with finalizers only get their
  deletionTimestamp: the server keeps them until the finalizers are gone.
* terminating pods on an out-of-service node (taint node.kubernetes.io/out-of-service, Ready not
  True) are force-deleted the same way.
* terminated pods (Succeeded or Failed) beyond `terminated-pod-gc-threshold` (Kubernetes'
  default 12500; 0 disables) are deleted oldest first (evicted ones before the others).

Kubernetes runs these on a 20 s timer; here the informers drive them: the work is keyed by node
("node:NAME", queued when a node goes, or when a pod is seen bound to a node the cache lacks)
and "terminated" (queued when the terminated count passes the threshold). Each sync writes in
batches.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ketch.api import errors, meta, timeutil
from ketch.api.meta import key_of
from ketch.client.cache import NODE_NAME_INDEX, DeletedFinalStateUnknown, by_node_name, copy_of
from ketch.client.clientset import Batch
from ketch.v1 import core_pb2

from .base import Controller, ControllerContext

log = logging.getLogger(__name__)

OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"
TERMINATED_KEY = "terminated"
NODE_PREFIX = "node:"
GONE_NODE_MESSAGE = "PodGC: node no longer exists"


# -- pure ----------------------------------------------------------------------------------------


def is_terminated(pod: core_pb2.Pod) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


def out_of_service(node: core_pb2.Node) -> bool:
    """A NotReady node an administrator declared out of service: its terminating pods may go."""
    if meta.condition_true(node.status.conditions, "Ready"):
        return False
    return any(t.key == OUT_OF_SERVICE_TAINT and t.effect == "NoExecute" for t in node.spec.taints)


def terminated_to_delete(pods: list[Any], threshold: int) -> list[Any]:
    """The terminated pods beyond the threshold: evicted first, then oldest first."""
    if threshold <= 0:
        return []
    terminated = [p for p in pods if is_terminated(p)]
    excess = len(terminated) - threshold
    if excess <= 0:
        return []
    terminated.sort(key=lambda p: (p.status.reason != "Evicted",
                                   timeutil.parse(p.metadata.creation_timestamp), p.metadata.name))
    return terminated[:excess]


def mark_failed_for_gone_node(pod: core_pb2.Pod, now: float) -> Any | None:
    """The pod's status write before force-deletion (None when it is already terminal)."""
    if is_terminated(pod):
        return None
    new = copy_of(pod)
    new.status.phase = "Failed"
    meta.set_condition(new.status.conditions, "DisruptionTarget", "True", "DeletionByPodGC",
                       GONE_NODE_MESSAGE, now=now)
    return new


# -- the controller ------------------------------------------------------------------------------


class PodGCController(Controller):
    name = "podgc"

    def __init__(self, ctx: ControllerContext, terminated_pod_gc_threshold: int | None = None,
                 quarantine: float | None = None) -> None:
        super().__init__(ctx)
        opts = ctx.options.podgc
        self.quarantine = quarantine if quarantine is not None else opts.quarantine
        # Nodes seen missing, by name: when (monotonic) their quarantine ends.
        self.missing: dict[str, float] = {}
        self.threshold = (terminated_pod_gc_threshold if terminated_pod_gc_threshold is not None
                          else opts.terminated_pod_gc_threshold)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.nodes = ctx.informers.informer(core_pb2.Node)
        self.pods.add_indexer(NODE_NAME_INDEX, by_node_name)
        self.terminated: set[str] = set()
        self.pods.add_handler(self.add_pod, self.update_pod, self.delete_pod)
        self.nodes.add_handler(self.add_node, self.update_node, self.delete_node)

    # -- handlers ---------------------------------------------------------------------------------

    def add_pod(self, pod: core_pb2.Pod) -> None:
        k = key_of(pod)
        if is_terminated(pod):
            self.terminated.add(k)
            if 0 < self.threshold < len(self.terminated):
                self.queue.add(TERMINATED_KEY)
        else:
            self.terminated.discard(k)
        node_name = pod.spec.node_name
        if not node_name:
            return
        node = self.nodes.get("", node_name)
        if node is None or (pod.metadata.deletion_timestamp and out_of_service(node)):
            self.queue.add(NODE_PREFIX + node_name)

    def update_pod(self, old: Any, new: Any) -> None:
        self.add_pod(new)

    def delete_pod(self, obj: Any) -> None:
        pod = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        if pod is not None:
            self.terminated.discard(key_of(pod))

    def add_node(self, node: core_pb2.Node) -> None:
        self.missing.pop(node.metadata.name, None)  # (back) in the cache: no quarantine running
        if out_of_service(node):
            self.queue.add(NODE_PREFIX + node.metadata.name)

    def update_node(self, old: Any, new: Any) -> None:
        self.add_node(new)

    def delete_node(self, obj: Any) -> None:
        node = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        name = node.metadata.name if node is not None else obj.key
        self.queue.add(NODE_PREFIX + name)

    # -- sync -------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        if key == TERMINATED_KEY:
            await self.gc_terminated()
        elif key.startswith(NODE_PREFIX):
            await self.gc_node(key[len(NODE_PREFIX):])

    async def gc_terminated(self) -> None:
        victims = terminated_to_delete(self.pods.list(), self.threshold)
        victims = [p for p in victims if not p.metadata.deletion_timestamp]
        if not victims:
            return
        log.info("podgc: deleting %d terminated pods over the threshold of %d", len(victims), self.threshold)
        await self._force_delete(victims)

    async def gc_node(self, node_name: str) -> None:
        pods = self.pods.by_index(NODE_NAME_INDEX, node_name)
        if not pods:
            self.missing.pop(node_name, None)
            return
        node = self.nodes.get("", node_name)
        if node is not None:
            self.missing.pop(node_name, None)
            if out_of_service(node):
                terminating = [p for p in pods if p.metadata.deletion_timestamp]
                if terminating:
                    log.info("podgc: force-deleting %d terminating pods on out-of-service node %s",
                             len(terminating), node_name)
                    await self._force_delete(terminating)
            return
        # Absent from the cache: after a quarantine, make sure it is really gone before touching
        # its pods.
        now_mono = time.monotonic()
        until = self.missing.setdefault(node_name, now_mono + self.quarantine)
        if now_mono < until:
            self.queue.add_after(NODE_PREFIX + node_name, until - now_mono)
            return
        try:
            await self.client.get("Node", node_name)
            self.missing.pop(node_name, None)
            return  # it exists; the cache will catch up
        except errors.NotFound:
            pass
        self.missing.pop(node_name, None)
        log.info("podgc: force-deleting %d pods of vanished node %s", len(pods), node_name)
        now = self.clock.now()
        batch = Batch()
        marked: list[Any] = []
        ready: list[Any] = []
        for p in pods:
            new = mark_failed_for_gone_node(p, now)
            if new is None:
                ready.append(p)
            else:
                batch.update_status(new)
                marked.append(p)
        conflicts = False
        for p, out in zip(marked, await self.client.batch(batch), strict=True):
            if out.error is None:
                ready.append(p)
            elif not isinstance(out.error, errors.NotFound):
                log.debug("podgc: marking %s failed: %s", key_of(p), out.error)
                conflicts = True
        await self._force_delete(ready)
        if conflicts:
            raise errors.Conflict(f"some pods of node {node_name} changed; retrying")

    async def _force_delete(self, pods: list[Any]) -> None:
        if not pods:
            return
        batch = Batch()
        for p in pods:
            batch.delete("Pod", p.metadata.name, p.metadata.namespace, grace_period_seconds=0, uid=p.metadata.uid)
        failed = [(p, out.error) for p, out in zip(pods, await self.client.batch(batch), strict=True)
                  if out.error is not None and not isinstance(out.error, errors.NotFound | errors.Conflict)]
        if failed:
            p, err = failed[0]
            raise errors.StatusError(f"deleting {len(failed)} pods failed, first {key_of(p)}: {err}")
