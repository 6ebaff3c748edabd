"""The scheduler: binds unbound pods to nodes, in bulk.

Handlers enqueue the keys of pods that need a node. Each round (controllers/batching.py) takes
every key that is ready (up to `round_size`), places the pods one after another against a
snapshot of the nodes built from the informer caches (pods already bound and not terminal, plus
our own binds not yet seen back from the watch: the "assumed" pods), scores the feasible nodes
(scoring.py: least allocation, preferred node affinity, PreferNoSchedule taints) and sends all
the binds — the pods/binding subresource, which refuses a pod that is bound already, so a pod is
never bound twice — in one Batch call, with a Scheduled event for each. The API server sets
PodScheduled=True on a binding.

A pod that fits nowhere gets a FailedScheduling event and PodScheduled=False/Unschedulable, and
is parked: it is retried when a node is added or changes in a way that matters, or when a bound
pod goes away or finishes (its room is freed) — never on a timer.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from dataclasses import dataclass, field
from typing import Any

from controlplane.controllers.base import ControllerContext
from controlplane.controllers.batching import BatchingController
from ketch import memtrim
from ketch.api import errors, meta
from ketch.api.meta import key_of, split_key
from ketch.client.cache import DeletedFinalStateUnknown, copy_of
from ketch.client.clientset import Batch
from ketch.v1 import core_pb2

from . import predicates, scoring
from .predicates import NodeInfo, Resources

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"
# Pods placed between two yields to the event loop: a round of 500 pods over 1,000 nodes must not
# hold the loop (and the API server's clients on it) for the whole round.
PODS_PER_TURN = 25
# Seconds without a round after which the parsed nodes are let go. A load's first round parses
# every node, and kept they outlived the load among its freed objects (docs/scale.md, the tenth
# day); the next round after a quiet spell parses them again (~10 ms at 1,000 nodes).
NODE_CACHE_IDLE = 30.0


def _is_terminal(pod: core_pb2.Pod) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


def _uid(pod: core_pb2.Pod) -> str:
    """The pod's uid as one string for every map that keys by it: each read of the message's
    field makes a new one (~85 bytes), and the scheduler keeps three maps per pod."""
    return sys.intern(pod.metadata.uid)


def _node_sched_view(node: core_pb2.Node) -> tuple[Any, ...]:
    """What of a Node matters for placement (heartbeats alone do not requeue anything)."""
    ready = meta.find_condition(node.status.conditions, "Ready")
    return (
        node.spec.unschedulable,
        tuple((t.key, t.value, t.effect) for t in node.spec.taints),
        tuple(sorted(node.metadata.labels.items())),
        tuple(sorted(node.status.allocatable.items())),
        tuple(sorted(node.status.capacity.items())),
        ready.status if ready is not None else "",
    )


@dataclass(frozen=True, slots=True, weakref_slot=True)
class _PodRequests:
    """A pod's requests and its non-zero requests (for scoring), shared by every pod that asks
    for the same: a Job's pods hold one, not two Resources and a tuple each. Never mutated."""

    req: Resources
    non_zero: Resources


def _shape(req: Resources, nz: Resources) -> tuple[Any, ...]:
    return (req.milli_cpu, req.memory, tuple(sorted(req.scalar.items())),
            nz.milli_cpu, nz.memory, tuple(sorted(nz.scalar.items())))


@dataclass
class _Assumed:
    key: str
    node: str
    requests: Resources
    non_zero: Resources


@dataclass
class _Usage:
    """What the bound, live pods of one node take from it."""

    requested: Resources = field(default_factory=Resources)
    non_zero_requested: Resources = field(default_factory=Resources)
    pod_count: int = 0


@dataclass
class _Placement:
    key: str
    pod: core_pb2.Pod
    node: str | None
    message: str = ""


class Scheduler(BatchingController):
    name = "scheduler"

    def __init__(self, ctx: ControllerContext, batch_size: int | None = None) -> None:
        super().__init__(ctx)
        self.round_size = batch_size or ctx.options.scheduler.batch_size
        self.recorder = ctx.recorder(SCHEDULER_NAME)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.nodes = ctx.informers.informer(core_pb2.Node)
        # Our binds the cache has not shown yet, by pod uid (Kubernetes' "assumed pods").
        self.assumed: dict[str, _Assumed] = {}
        # Keys of pods that fit nowhere, retried (oldest first) when the cluster changes.
        self.unschedulable: dict[str, None] = {}
        # The last FailedScheduling message per pod uid: repeats write nothing.
        self._last_failure: dict[str, str] = {}
        # What placement depends on, per pod uid: pods of one class fit or fail together.
        self._classes: dict[str, str] = {}
        # The last node chosen: ties rotate from there.
        self.last_node = ""
        # Parsed requests by pod uid: (requests, non-zero requests).
        self._requests: dict[str, _PodRequests] = {}
        self._request_shapes: weakref.WeakValueDictionary[tuple[Any, ...], _PodRequests] = (
            weakref.WeakValueDictionary())
        # What every bound, live pod takes from its node, kept current by the pod handlers (the
        # scheduler cache), so a round costs O(nodes), not O(pods).
        self._counted: dict[str, tuple[str, Resources, Resources]] = {}
        self._usage: dict[str, _Usage] = {}
        # Parsed allocatable per node, by (name, resourceVersion); let go NODE_CACHE_IDLE after
        # the last round.
        self._node_base: dict[str, tuple[str, NodeInfo]] = {}
        self._node_base_expiry: asyncio.TimerHandle | None = None
        self._node_base_due = 0.0  # loop time at which they go, unless another round comes
        # Where the next pod's search for feasible nodes starts (kube-scheduler's
        # nextStartNodeIndex): the search stops once enough nodes are found, so it rotates.
        self._next_start = 0
        self.pods.add_handler(self.add_pod, self.update_pod, self.delete_pod)
        self.nodes.add_handler(self.add_node, self.update_node, None)

    # -- handlers: only enqueue ------------------------------------------------------------------

    def _account(self, pod: core_pb2.Pod, gone: bool = False) -> None:
        """Keep the per-node totals: a bound, non-terminal pod counts on its node."""
        uid = _uid(pod)
        want = None
        if not gone and pod.spec.node_name and not _is_terminal(pod):
            req, nz = self._requests_of(pod)
            want = (sys.intern(pod.spec.node_name), req, nz)  # a node's pods share its name
        have = self._counted.get(uid)
        if have == want or (have is not None and want is not None and have[0] == want[0]):
            return
        if have is not None:
            usage = self._usage.get(have[0])
            if usage is not None:
                usage.pod_count -= 1
                if usage.pod_count <= 0:  # its last pod left: nothing to keep for the node
                    del self._usage[have[0]]
                else:
                    usage.requested.sub(have[1])
                    usage.non_zero_requested.sub(have[2])
            del self._counted[uid]
        if want is not None:
            usage = self._usage.get(want[0])
            if usage is None:
                usage = self._usage[want[0]] = _Usage()
            usage.requested.add(want[1])
            usage.non_zero_requested.add(want[2])
            usage.pod_count += 1
            self._counted[uid] = want

    def add_pod(self, pod: core_pb2.Pod) -> None:
        self._account(pod)
        if pod.spec.node_name:
            self.assumed.pop(pod.metadata.uid, None)
        elif predicates.needs_scheduling(pod, SCHEDULER_NAME):
            self.queue.add(key_of(pod))

    def update_pod(self, old: Any, new: Any) -> None:
        self._account(new)
        k = key_of(new)
        if new.spec.node_name:
            self.assumed.pop(new.metadata.uid, None)
            self.unschedulable.pop(k, None)
            self._last_failure.pop(new.metadata.uid, None)
            if not old.spec.node_name:
                return
            if _is_terminal(new) and not _is_terminal(old):
                self._retry_unschedulable()  # its room is free now
            return
        if not predicates.needs_scheduling(new, SCHEDULER_NAME):
            self.unschedulable.pop(k, None)
            return
        if k in self.unschedulable and old.spec == new.spec and old.metadata.labels == new.metadata.labels:
            return  # only status changed (our own PodScheduled=False write): nothing new to try
        self.queue.add(k)

    def delete_pod(self, obj: Any) -> None:
        pod = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        if pod is None:
            return
        self._account(pod, gone=True)
        uid = pod.metadata.uid
        self._requests.pop(uid, None)
        self._classes.pop(uid, None)
        self._last_failure.pop(uid, None)
        self.assumed.pop(uid, None)
        self.unschedulable.pop(key_of(pod), None)
        self.recorder.forget(uid)
        for per_pod in (self._counted, self._requests, self._classes, self.assumed):
            memtrim.release_if_emptied(per_pod)  # the last of a big Job's pods: its tables go too
        if pod.spec.node_name and not _is_terminal(pod):
            self._retry_unschedulable()

    def add_node(self, node: core_pb2.Node) -> None:
        self._retry_unschedulable()

    def update_node(self, old: Any, new: Any) -> None:
        if _node_sched_view(old) != _node_sched_view(new):
            self._retry_unschedulable()

    def _retry_unschedulable(self) -> None:
        if not self.unschedulable:
            return
        keys, self.unschedulable = self.unschedulable, {}
        for k in keys:
            self.queue.add(k)

    # -- one round ---------------------------------------------------------------------------------

    def _requests_of(self, pod: core_pb2.Pod) -> tuple[Resources, Resources]:
        uid = _uid(pod)
        cached = self._requests.get(uid)
        if cached is None:
            req, nz = predicates.pod_requests(pod), predicates.pod_requests(pod, non_zero=True)
            shape = _shape(req, nz)
            cached = self._request_shapes.get(shape)
            if cached is None:
                cached = self._request_shapes[shape] = _PodRequests(req, nz)
            self._requests[uid] = cached
        return cached.req, cached.non_zero

    def _class_of(self, pod: core_pb2.Pod) -> str:
        """Requests and placement constraints: two pods of one class fit the same nodes. The
        class is interned: a Job's pods keep one string, not one each."""
        uid = _uid(pod)
        cls = self._classes.get(uid)
        if cls is None:
            spec = pod.spec
            req, _ = self._requests_of(pod)
            parts = [repr(req).encode(), spec.affinity.SerializeToString(deterministic=True)]
            parts.extend(f"{k}={v}".encode() for k, v in sorted(spec.node_selector.items()))
            parts.extend(t.SerializeToString(deterministic=True) for t in spec.tolerations)
            cls = sys.intern(b"\0".join(parts).decode("latin-1"))  # latin-1: any bytes, losslessly
            self._classes[uid] = cls
        return cls

    def snapshot(self) -> dict[str, NodeInfo]:
        """Every node with what is placed on it: bound live pods and our assumed binds."""
        infos: dict[str, NodeInfo] = {}
        for node in self.nodes.list():
            name, rv = node.metadata.name, node.metadata.resource_version
            base = self._node_base.get(name)
            if base is None or base[0] != rv:
                base = (rv, predicates.node_info_of(node))
                self._node_base[name] = base
            proto = base[1]
            info = NodeInfo(node=proto.node, allocatable=proto.allocatable, allowed_pods=proto.allowed_pods,
                            taints=proto.taints, prefer_no_schedule=proto.prefer_no_schedule, name=proto.name,
                            unschedulable=proto.unschedulable)
            usage = self._usage.get(name)
            if usage is not None:
                info.add_pod(usage.requested, usage.non_zero_requested)
                info.pod_count = usage.pod_count
            infos[name] = info
        if len(self._node_base) > len(infos):
            self._node_base = {n: b for n, b in self._node_base.items() if n in infos}
        for uid, a in list(self.assumed.items()):
            cached = self.pods.get(*split_key(a.key))
            if cached is None or cached.metadata.uid != uid:
                del self.assumed[uid]  # gone meanwhile
                continue
            if cached.spec.node_name:
                continue  # already counted from the cache
            target = infos.get(a.node)
            if target is not None:
                target.add_pod(a.requests, a.non_zero)
        return infos

    def place(self, pod: core_pb2.Pod, infos: dict[str, NodeInfo],
              order: list[NodeInfo] | None = None) -> tuple[NodeInfo | None, str]:
        """The chosen node (its NodeInfo updated), or None and the FailedScheduling message.

        As kube-scheduler does: a pod whose required affinity names its nodes (a DaemonSet's)
        is tried on those alone (NodeAffinity's PreFilter), and the search stops once
        num_feasible_nodes_to_find nodes fit (all of them below 100 nodes), starting where the
        previous pod's search stopped; only those are scored. When none fits, every node is
        examined for the message, which thus reads as if all had been tried.
        """
        req, nz = self._requests_of(pod)
        constrained = predicates.has_node_constraints(pod)
        names = predicates.node_names_from_affinity(pod) if constrained else None
        candidates = [infos[n] for n in sorted(names) if n in infos] if names is not None else \
            (order if order is not None else list(infos.values()))
        feasible: list[NodeInfo] = []
        total = len(candidates)
        if total:
            want = predicates.num_feasible_nodes_to_find(total)
            start = self._next_start % total if names is None else 0
            processed = 0
            for i in range(total):
                info = candidates[(start + i) % total]
                processed += 1
                if predicates.fits(pod, req, info, constrained):
                    feasible.append(info)
                    if len(feasible) >= want:
                        break
            if names is None:
                self._next_start = (start + processed) % total
        best = scoring.pick_node(feasible, nz, after=self.last_node, spec=pod.spec)
        if best is None:
            reasons: dict[str, list[str]] = {}
            for info in infos.values():
                why = predicates.filter_reasons(pod, req, info, constrained)
                if why:
                    reasons[info.name] = why
            return None, predicates.fit_error_message(len(infos), reasons,
                                                      never=pod.spec.preemption_policy == "Never")
        best.add_pod(req, nz)
        self.last_node = best.name
        return best, ""

    async def process(self, keys: list[str]) -> None:
        """Place every pod of keys that still needs a node, then write binds and failures at once."""
        infos = self.snapshot()
        order = list(infos.values())
        placements: list[_Placement] = []
        # Classes that fit nowhere in this round: the rest of their pods fail without a look.
        failed: dict[str, str] = {}
        for n, k in enumerate(keys):
            if n and n % PODS_PER_TURN == 0:
                # Let the API server answer its clients; infos is this round's own copy, and a
                # pod that changes meanwhile fails its bind (Conflict, NotFound) and is retried.
                await asyncio.sleep(0)
            self.unschedulable.pop(k, None)
            pod = self.pods.get(*split_key(k))
            if pod is None or not predicates.needs_scheduling(pod, SCHEDULER_NAME):
                self.queue.forget(k)
                continue
            if pod.metadata.uid in self.assumed:
                continue  # bound by us already; the watch has not shown it yet
            cls = self._class_of(pod)
            if cls in failed:
                placements.append(_Placement(k, pod, None, failed[cls]))
                continue
            info, message = self.place(pod, infos, order)
            if info is None:
                failed[cls] = message
            if info is not None:
                req, nz = self._requests_of(pod)
                self.assumed[pod.metadata.uid] = _Assumed(k, info.name, req, nz)
            placements.append(_Placement(k, pod, info.name if info is not None else None, message))
        if placements:
            await self._write(placements)
        self._expire_node_base_later()

    def _expire_node_base_later(self) -> None:
        """Move the parsed nodes' deadline; one timer waits for it (a round only sets a time)."""
        loop = asyncio.get_running_loop()
        self._node_base_due = loop.time() + NODE_CACHE_IDLE
        if self._node_base_expiry is None:
            self._node_base_expiry = loop.call_at(self._node_base_due, self._expire_node_base)

    def _expire_node_base(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._node_base_due:  # rounds came meanwhile: wait for the moved deadline
            self._node_base_expiry = loop.call_at(self._node_base_due, self._expire_node_base)
            return
        self._node_base_expiry = None
        self._node_base = {}

    async def _write(self, placements: list[_Placement]) -> None:
        batch = Batch()
        sent: list[_Placement] = []
        for p in placements:
            if p.node is not None:
                batch.bind(p.pod, p.node)
                sent.append(p)
                continue
            self.unschedulable[p.key] = None
            uid = p.pod.metadata.uid
            if self._last_failure.get(uid) == p.message:
                continue  # tried again, failed the same way: nothing new to say
            self._last_failure[uid] = p.message
            self.recorder.event(p.pod, "Warning", "FailedScheduling", p.message)
            status = copy_of(p.pod)
            if meta.set_condition(status.status.conditions, "PodScheduled", "False", "Unschedulable",
                                  p.message, now=self.clock.now()):
                batch.update_status(status)
                sent.append(p)
            log.debug("scheduler: %s is unschedulable: %s", p.key, p.message)
        try:
            outcomes = await self.client.batch(batch)
        except BaseException:
            for p in sent:
                if p.node is not None:
                    self.assumed.pop(p.pod.metadata.uid, None)
            raise
        bound = 0
        for p, out in zip(sent, outcomes, strict=True):
            if out.error is None:
                if p.node is not None:
                    bound += 1
                    self.queue.forget(p.key)
                    self.recorder.event(p.pod, "Normal", "Scheduled",
                                        f"Successfully assigned {p.key} to {p.node}")
                continue
            if p.node is not None:
                self.assumed.pop(p.pod.metadata.uid, None)
            self.unschedulable.pop(p.key, None)
            self._last_failure.pop(p.pod.metadata.uid, None)
            if isinstance(out.error, errors.NotFound):
                self.queue.forget(p.key)
            elif isinstance(out.error, errors.Conflict):
                # The pod changed under us (or was bound by someone else): look again.
                self.queue.add_rate_limited(p.key)
            else:
                log.info("scheduler: writing %s failed, requeueing: %s", p.key, out.error)
                self.queue.add_rate_limited(p.key)
        if bound:
            log.debug("scheduler: bound %d pods", bound)
