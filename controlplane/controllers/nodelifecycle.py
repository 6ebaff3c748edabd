"""The node lifecycle controller: notices nodes whose agent went silent, and taints nodes by
their conditions (Kubernetes' pkg/controller/nodelifecycle).

A node's probe time moves when the controller *observes* its Lease renewTime advance or its Ready
heartbeat change, measured on the controller's own clock (so agents' clock skew does not matter).
When now > probe + grace (the startup grace while the node never posted a Ready condition), Ready
and the pressure conditions become Unknown ("Kubelet stopped posting node status."), the event
NodeNotReady is recorded and the node's pods get Ready=False. Taints follow the conditions:
NoSchedule `not-ready`/`unreachable`/pressure/`unschedulable` (mirroring spec.unschedulable), and
NoExecute `not-ready` (Ready=False) or `unreachable` (Ready=Unknown), removed at Ready=True; the
taint-eviction controller acts on the NoExecute ones. Zones and rate limits are left out (one
zone, no limiter), but the "full disruption" rule is kept: when no node at all is Ready, which
looks more like a control-plane network problem than dead machines, NoExecute taints are lifted
and no pod is evicted until some node is Ready again.

Timing uses the work queue: each node is re-checked at the moment its grace would run out
(add_after), and Lease and Node events re-check it at once; nothing polls.

An agent renews its Lease every heartbeat interval and states four intervals as the Lease's
leaseDurationSeconds (the kubelet: a 40 s lease renewed every 10 s). A lease longer than the
grace period means fewer than four renewals per grace period, so one late renewal makes the node
flap NotReady; the agent cannot know the grace period, so the controller says it: a Warning
Event `LeaseDurationExceedsGracePeriod` on the Node (and a log line), once per lease duration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ketch.api import errors, meta, scheduling, timeutil
from ketch.api.scheduling import NO_EXECUTE, NO_SCHEDULE
from ketch.client.cache import NODE_NAME_INDEX, DeletedFinalStateUnknown, by_node_name, copy_of
from ketch.client.clientset import Batch
from ketch.v1 import coordination_pb2, core_pb2

from .base import Controller, ControllerContext

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
COMPONENT = "node-controller"
PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure")
STOPPED_MESSAGE = "Kubelet stopped posting node status."
NEVER_MESSAGE = "Kubelet never posted node status."
SLOW_LEASE_REASON = "LeaseDurationExceedsGracePeriod"
RENEWALS_PER_LEASE = 4  # the kubelet renews its lease every 25 % of its duration

# Condition (type, status) -> the NoSchedule taint key it implies.
CONDITION_TAINTS: dict[tuple[str, str], str] = {
    ("Ready", "False"): scheduling.TAINT_NOT_READY,
    ("Ready", "Unknown"): scheduling.TAINT_UNREACHABLE,
    ("MemoryPressure", "True"): scheduling.TAINT_MEMORY_PRESSURE,
    ("DiskPressure", "True"): scheduling.TAINT_DISK_PRESSURE,
    ("PIDPressure", "True"): scheduling.TAINT_PID_PRESSURE,
    ("NetworkUnavailable", "True"): scheduling.TAINT_NETWORK_UNAVAILABLE,
}
NO_SCHEDULE_KEYS = frozenset([*CONDITION_TAINTS.values(), scheduling.TAINT_UNSCHEDULABLE])
NO_EXECUTE_KEYS = frozenset([scheduling.TAINT_NOT_READY, scheduling.TAINT_UNREACHABLE])


# ---------------------------------------------------------------------------------------------
# Pure decisions


@dataclass
class NodeHealth:
    """What the controller last saw of a node, and when (controller clock) it last heard from it."""

    probe_timestamp: float
    ready_heartbeat: str | None  # the Ready condition's lastHeartbeatTime; None: no condition
    lease_renew: float = 0.0


def ready_condition(node: core_pb2.Node) -> Any | None:
    return meta.find_condition(node.status.conditions, "Ready")


def ready_status(node: core_pb2.Node) -> str:
    cond = ready_condition(node)
    return cond.status if cond is not None else ""


def observe(saved: NodeHealth | None, node: core_pb2.Node, lease: coordination_pb2.Lease | None,
            now: float) -> NodeHealth:
    """tryUpdateNodeHealth's bookkeeping: the probe time moves whenever the Ready heartbeat
    changes, the condition appears or goes, or the Lease renewTime advances."""
    cond = ready_condition(node)
    heartbeat = cond.last_heartbeat_time if cond is not None else None
    renew = timeutil.parse(lease.spec.renew_time) if lease is not None and lease.spec.renew_time else 0.0
    if saved is None:
        return NodeHealth(probe_timestamp=now, ready_heartbeat=heartbeat, lease_renew=renew)
    health = NodeHealth(saved.probe_timestamp, saved.ready_heartbeat, saved.lease_renew)
    if heartbeat != saved.ready_heartbeat:
        health.probe_timestamp = now
        health.ready_heartbeat = heartbeat
    if renew > saved.lease_renew:
        health.probe_timestamp = now
        health.lease_renew = renew
    return health


def slow_lease_message(node: str, lease: coordination_pb2.Lease | None, grace: float) -> str:
    """The warning for a node whose Lease outlasts the grace period ("" when it does not)."""
    if lease is None or not lease.spec.HasField("lease_duration_seconds"):
        return ""
    duration = lease.spec.lease_duration_seconds
    if duration <= grace:
        return ""
    interval = duration / RENEWALS_PER_LEASE
    return (f"Node {node} renews its Lease about every {interval:g}s (leaseDurationSeconds {duration}), too "
            f"slowly for the node-monitor grace period of {grace:g}s: a late heartbeat will turn it NotReady. "
            f"Set its agent's --heartbeat-interval to at most {grace / RENEWALS_PER_LEASE:g}s, or the control "
            f"plane's --node-monitor-grace-period to at least {duration}s")


def grace_period(node: core_pb2.Node, grace: float, startup_grace: float) -> float:
    """The startup grace applies while the node has never posted a Ready condition."""
    return startup_grace if ready_condition(node) is None else grace


def mark_unknown(status: core_pb2.NodeStatus, creation_timestamp: str, now: float) -> bool:
    """Set Ready and the pressure conditions to Unknown (in place); whether anything changed."""
    stamp = timeutil.format(now)
    changed = False
    for ctype in ("Ready", *PRESSURE_CONDITIONS):
        cond = meta.find_condition(status.conditions, ctype)
        if cond is None:
            status.conditions.add(type=ctype, status="Unknown", reason="NodeStatusNeverUpdated",
                                  message=NEVER_MESSAGE, last_heartbeat_time=creation_timestamp,
                                  last_transition_time=stamp)
            changed = True
        elif cond.status != "Unknown":
            cond.status, cond.reason, cond.message = "Unknown", "NodeStatusUnknown", STOPPED_MESSAGE
            cond.last_transition_time = stamp
            changed = True
    return changed


def wanted_taints(node: core_pb2.Node, fully_disrupted: bool) -> set[tuple[str, str]]:
    """The (key, effect) of every taint this controller wants on the node now."""
    out: set[tuple[str, str]] = set()
    for cond in node.status.conditions:
        key = CONDITION_TAINTS.get((cond.type, cond.status))
        if key is not None:
            out.add((key, NO_SCHEDULE))
    if node.spec.unschedulable:
        out.add((scheduling.TAINT_UNSCHEDULABLE, NO_SCHEDULE))
    if not fully_disrupted:
        status = ready_status(node)
        if status == "False":
            out.add((scheduling.TAINT_NOT_READY, NO_EXECUTE))
        elif status == "Unknown":
            out.add((scheduling.TAINT_UNREACHABLE, NO_EXECUTE))
    return out


def _managed(taint: Any) -> bool:
    if taint.effect == NO_SCHEDULE:
        return taint.key in NO_SCHEDULE_KEYS
    if taint.effect == NO_EXECUTE:
        return taint.key in NO_EXECUTE_KEYS
    return False


def reconcile_taints(node: core_pb2.Node, fully_disrupted: bool, now: float) -> list[core_pb2.Taint] | None:
    """The node's new taint list, or None if it is right already. Taints this controller does
    not manage are kept; an added taint gets timeAdded = now (the eviction clock starts)."""
    wanted = wanted_taints(node, fully_disrupted)
    have = {(t.key, t.effect) for t in node.spec.taints if _managed(t)}
    if wanted == have:
        return None
    stamp = timeutil.format(now)
    out: list[core_pb2.Taint] = []
    for t in node.spec.taints:
        if not _managed(t) or (t.key, t.effect) in wanted:
            out.append(t)
    for key, effect in sorted(wanted - have):
        out.append(core_pb2.Taint(key=key, effect=effect, time_added=stamp))
    return out


def fully_disrupted(statuses: Iterable[str]) -> bool:
    """ComputeZoneState's full disruption: nodes exist and none is Ready."""
    ready = not_ready = 0
    for s in statuses:
        if s == "True":
            ready += 1
        else:
            not_ready += 1
    return ready == 0 and not_ready > 0


def pods_to_mark_not_ready(pods: Iterable[Any], node_name: str, now: float) -> list[Any]:
    """MarkPodsNotReady: copies of the node's pods whose Ready condition turns False."""
    out = []
    for pod in pods:
        if pod.spec.node_name != node_name:
            continue
        cond = meta.find_condition(pod.status.conditions, "Ready")
        if cond is None or cond.status == "False":
            continue
        upd = copy_of(pod)
        meta.set_condition(upd.status.conditions, "Ready", "False", cond.reason, cond.message, now=now)
        out.append(upd)
    return out


# ---------------------------------------------------------------------------------------------
# The controller


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    queue_name = "node_lifecycle_controller"
    # Kubernetes updates nodes 8 at a time; when many nodes go at once their writes overlap and
    # share the store's group commits (a key is still never synced by two workers at once).
    workers = 8

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        opts = ctx.options.node_lifecycle
        self.grace = opts.monitor_grace_period
        self.startup_grace = opts.startup_grace_period
        self.nodes = ctx.informers.informer(core_pb2.Node)
        self.leases = ctx.informers.informer(coordination_pb2.Lease, namespace=LEASE_NAMESPACE)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.pods.add_indexer(NODE_NAME_INDEX, by_node_name)
        self.recorder = ctx.recorder(COMPONENT)
        self.health: dict[str, NodeHealth] = {}
        # The lease duration each node was last warned about (warned once per value).
        self.slow_leases: dict[str, int] = {}
        # Ready status by node, for the full-disruption rule (loaded from the cache at first use).
        self.statuses: dict[str, str] = {}
        self.num_ready = 0
        self.statuses_loaded = False
        self.disrupted = False
        self.nodes.add_handler(self.add_node, self.update_node, self.delete_node)
        self.leases.add_handler(self.add_lease, self.update_lease)

    # -- handlers ------------------------------------------------------------------------------

    def add_node(self, node: core_pb2.Node) -> None:
        self.enqueue(node.metadata.name)

    def update_node(self, old: Any, new: Any) -> None:
        if old.metadata.resource_version != new.metadata.resource_version:
            self.enqueue(new.metadata.name)

    def delete_node(self, obj: Any) -> None:
        node = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        self.recorder.forget(node.metadata.uid)
        self.enqueue(node.metadata.name)

    def add_lease(self, lease: coordination_pb2.Lease) -> None:
        self.enqueue(lease.metadata.name)

    def update_lease(self, old: Any, new: Any) -> None:
        if old.spec.renew_time != new.spec.renew_time:
            self.enqueue(new.metadata.name)

    # -- sync ----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        node = self.nodes.get("", key)
        if node is None:
            self.health.pop(key, None)
            self.slow_leases.pop(key, None)
            self._check_disruption(key, None)
            return
        now = self.clock.now()
        lease = self.leases.get(LEASE_NAMESPACE, key)
        self._warn_slow_lease(node, lease)
        health = observe(self.health.get(key), node, lease, now)
        self.health[key] = health
        observed_ready = ready_status(node)

        # 1. Silent for longer than the grace period: conditions to Unknown.
        deadline = health.probe_timestamp + grace_period(node, self.grace, self.startup_grace)
        if now > deadline:
            upd = copy_of(node)
            if mark_unknown(upd.status, node.metadata.creation_timestamp, now):
                log.info("node %s: no heartbeat for %.1fs, marking it Unknown", key, now - health.probe_timestamp)
                node = await self.client.update_status(upd)
        else:
            self.queue.add_after(key, deadline - now + 0.01)
        current_ready = ready_status(node)

        # 2. Ready True -> not True, seen by us: an event, and the node's pods are not ready.
        if observed_ready == "True" and current_ready != "True":
            self.recorder.event(node, "Normal", "NodeNotReady", f"Node {key} status is now: NodeNotReady")
            await self._mark_pods_not_ready(key, now)

        # 3. Taints follow conditions (NoExecute only outside full disruption).
        disrupted = self._check_disruption(key, current_ready)
        taints = reconcile_taints(node, disrupted, now)
        if taints is not None:
            upd = copy_of(node)
            del upd.spec.taints[:]
            upd.spec.taints.extend(taints)
            await self.client.update(upd)

    def _warn_slow_lease(self, node: core_pb2.Node, lease: coordination_pb2.Lease | None) -> None:
        name = node.metadata.name
        message = slow_lease_message(name, lease, self.grace)
        if not message or lease is None:
            self.slow_leases.pop(name, None)
            return
        duration = lease.spec.lease_duration_seconds
        if self.slow_leases.get(name) != duration:
            self.slow_leases[name] = duration
            log.warning("%s", message)
            self.recorder.event(node, "Warning", SLOW_LEASE_REASON, message)

    async def _mark_pods_not_ready(self, node_name: str, now: float) -> None:
        pods = pods_to_mark_not_ready(self.pods.by_index(NODE_NAME_INDEX, node_name), node_name, now)
        if not pods:
            return
        batch = Batch()
        for pod in pods:
            batch.update_status(pod)
        failed = None
        for pod, res in zip(pods, await self.client.batch(batch), strict=True):
            if res.error is None:
                self.recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")
            elif not isinstance(res.error, errors.NotFound):
                failed = failed or res.error
        if failed is not None:
            raise failed

    def _set_status(self, name: str, status: str | None) -> None:
        """Keep the count of Ready nodes (status None: the node is gone)."""
        old = self.statuses.pop(name, None)
        if old == "True":
            self.num_ready -= 1
        if status is not None:
            self.statuses[name] = status
            if status == "True":
                self.num_ready += 1

    def _check_disruption(self, name: str, status: str | None) -> bool:
        """Whether no node is Ready, with our fresh view of `name`; when that state changes every
        node is re-checked, to lift or restore the NoExecute taints."""
        if not self.statuses_loaded:
            self.statuses_loaded = True
            for n in self.nodes.list():
                self._set_status(n.metadata.name, ready_status(n))
        self._set_status(name, status)
        disrupted = self.num_ready == 0 and len(self.statuses) > 0
        if disrupted != self.disrupted:
            self.disrupted = disrupted
            if disrupted:
                log.warning("Controller detected that all Nodes are not-Ready. Entering master disruption mode.")
            else:
                log.info("Controller detected that some Nodes are Ready. Exiting master disruption mode.")
            for n in self.nodes.list():
                if n.metadata.name != name:
                    self.enqueue(n.metadata.name)
        return disrupted
