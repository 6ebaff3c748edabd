"""The node lifecycle controller: notices nodes whose agent went silent, and taints nodes by
their conditions (Kubernetes' pkg/controller/nodelifecycle).

A node's probe time moves when the controller *observes* its Lease renewTime advance or its Ready
heartbeat change, measured on the controller's own clock (so agents' clock skew does not matter).
When now > probe + grace (the startup grace while the node never posted a Ready condition), Ready
and the pressure conditions become Unknown ("Kubelet stopped posting node status."), the event
NodeNotReady is recorded and the node's pods get Ready=False. Taints follow the conditions:
NoSchedule `not-ready`/`unreachable`/pressure/`unschedulable` (mirroring spec.unschedulable), and
NoExecute `not-ready` (Ready=False) or `unreachable` (Ready=Unknown), removed at Ready=True; the
taint-eviction controller acts on the NoExecute ones.

NoExecute taints are added no faster than each zone's rate (--node-eviction-rate, 0.1 node/s,
burst 1; zones from the topology labels, one "" zone without them), and the zone's state sets
that rate as handleDisruption does: a zone where more than two nodes and at least 55 % of them
are not Ready is partially disrupted and tainted at the secondary rate (0.01/s) if it has more
than 50 nodes, not at all if it is smaller; when no node of any zone is Ready, which looks more
like a control-plane network problem than dead machines, NoExecute taints are lifted and no pod
is evicted until some node is Ready again. Swapping not-ready for unreachable and lifting taints
are never held back.

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
from .options import NodeLifecycleOptions

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


def reconcile_taints(node: core_pb2.Node, fully_disrupted: bool, now: float,
                     wanted: set[tuple[str, str]] | None = None) -> list[core_pb2.Taint] | None:
    """The node's new taint list, or None if it is right already. Taints this controller does
    not manage are kept; an added taint gets timeAdded = now (the eviction clock starts).
    wanted: wanted_taints(node, fully_disrupted) less what the rate limiter holds back."""
    if wanted is None:
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


# ---------------------------------------------------------------------------------------------
# Zones: disruption states and the NoExecute tainting rate


STATE_NORMAL = "Normal"
STATE_PARTIAL = "PartialDisruption"
STATE_FULL = "FullDisruption"

EXCLUDE_DISRUPTION_LABEL = "node.kubernetes.io/exclude-disruption"


def zone_key(node: core_pb2.Node) -> str:
    """nodetopology.GetZoneKey: region and zone from the topology labels (or their deprecated
    failure-domain.beta forms); "" when the node has neither."""
    labels = node.metadata.labels
    zone = labels.get("topology.kubernetes.io/zone", labels.get("failure-domain.beta.kubernetes.io/zone", ""))
    region = labels.get("topology.kubernetes.io/region", labels.get("failure-domain.beta.kubernetes.io/region", ""))
    if not zone and not region:
        return ""
    return f"{region}:\x00:{zone}"


def excluded_from_disruption(node: core_pb2.Node) -> bool:
    """A node labelled node.kubernetes.io/exclude-disruption does not count in its zone's state."""
    return EXCLUDE_DISRUPTION_LABEL in node.metadata.labels


def zone_state(ready: int, not_ready: int, unhealthy_threshold: float = 0.55) -> str:
    """ComputeZoneState: full disruption when no node is Ready; partial when more than two nodes
    and at least unhealthy_threshold of them are not Ready; normal otherwise."""
    if ready == 0 and not_ready > 0:
        return STATE_FULL
    if not_ready > 2 and not_ready / (not_ready + ready) >= unhealthy_threshold:
        return STATE_PARTIAL
    return STATE_NORMAL


def tainting_qps(state: str, zone_size: int, opts: NodeLifecycleOptions) -> float:
    """setLimiterInZone: the normal rate, also in a fully disrupted zone (HealthyQPSFunc); in a
    partially disrupted one the secondary rate if the zone is large, none if it is small
    (ReducedQPSFunc)."""
    if state == STATE_PARTIAL:
        return opts.secondary_node_eviction_rate if zone_size > opts.large_cluster_size_threshold else 0.0
    return opts.node_eviction_rate


class TaintLimiter:
    """A token bucket of burst 1 (client-go's TokenBucketRateLimiter as the node lifecycle
    controller uses it for its NoExecute tainting queues); qps 0 never lets anything through."""

    def __init__(self, qps: float, now: float) -> None:
        self.qps = qps
        self.tokens = 1.0 if qps > 0 else 0.0
        self.stamp = now

    def _refill(self, now: float) -> None:
        if self.qps > 0 and now > self.stamp:
            self.tokens = min(1.0, self.tokens + (now - self.stamp) * self.qps)
        self.stamp = max(self.stamp, now)

    def try_accept(self, now: float) -> bool:
        self._refill(now)
        if self.qps > 0 and self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float | None:
        """Seconds until a token is there; None if none will ever be."""
        if self.qps <= 0:
            return None
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.qps)

    def swap(self, qps: float, now: float) -> None:
        """SwapLimiter: a new bucket at the new rate, drained if the old one had no token left."""
        if qps == self.qps:
            return
        drained = not self.try_accept(now)
        self.qps = qps
        self.tokens = 0.0 if drained or qps <= 0 else 1.0
        self.stamp = now


@dataclass
class DisruptionChange:
    """What a change of zone states asks of the controller."""

    requeue: set[str]  # nodes to look at again (their NoExecute taints may change)
    exited_full: bool = False  # leaving "all zones fully disrupted": every node's probe time resets


class ZoneTracker:
    """handleDisruption, kept up to date one node at a time: the Ready count of every zone (nodes
    excluded from disruption checks left out), each zone's state and NoExecute tainting limiter,
    and whether every zone is fully disrupted (then no NoExecute taint at all: a control-plane
    network problem looks like that, not dead machines)."""

    def __init__(self, opts: NodeLifecycleOptions) -> None:
        self.opts = opts
        self.zone_of: dict[str, str] = {}  # every node's zone
        self.counted: dict[str, bool] = {}  # Ready, by node, for the nodes that count
        self.ready: dict[str, int] = {}
        self.not_ready: dict[str, int] = {}
        self.states: dict[str, str] = {}
        self.limiters: dict[str, TaintLimiter] = {}
        self.all_full = False

    def _count(self, name: str, sign: int) -> None:
        zone = self.zone_of[name]
        table = self.ready if self.counted[name] else self.not_ready
        table[zone] = table.get(zone, 0) + sign
        if self.ready.get(zone, 0) + self.not_ready.get(zone, 0) == 0:
            self.ready.pop(zone, None)
            self.not_ready.pop(zone, None)

    def _set(self, name: str, zone: str | None, counted: bool, ready: bool) -> set[str]:
        """Record a node (zone None: it is gone); the zones whose counts changed."""
        touched: set[str] = set()
        if name in self.zone_of:
            touched.add(self.zone_of[name])
            if name in self.counted:
                self._count(name, -1)
                del self.counted[name]
            del self.zone_of[name]
        if zone is not None:
            touched.add(zone)
            self.zone_of[name] = zone
            if counted:
                self.counted[name] = ready
                self._count(name, +1)
        return touched

    def _size(self, zone: str) -> int:
        return self.ready.get(zone, 0) + self.not_ready.get(zone, 0)

    def _state_of(self, zone: str) -> str:
        return zone_state(self.ready.get(zone, 0), self.not_ready.get(zone, 0), self.opts.unhealthy_zone_threshold)

    def _qps(self, zone: str) -> float:
        return 0.0 if self.all_full else tainting_qps(self.states.get(zone, STATE_NORMAL), self._size(zone), self.opts)

    def _nodes_in(self, zones: set[str]) -> set[str]:
        return {n for n, z in self.zone_of.items() if z in zones}

    def load(self, nodes: Iterable[tuple[str, str, bool, bool]], now: float) -> None:
        """The starting view (name, zone, counted, ready), without transitions."""
        for name, zone, counted, ready in nodes:
            self._set(name, zone, counted, ready)
        self.states = {z: self._state_of(z) for z in self.ready}
        self.all_full = bool(self.states) and all(s == STATE_FULL for s in self.states.values())
        self.limiters = {z: TaintLimiter(self._qps(z), now) for z in set(self.zone_of.values())}

    def observe(self, name: str, zone: str | None, counted: bool, ready: bool, now: float) -> DisruptionChange:
        """A node's fresh view (zone None: deleted); the nodes to look at again as a result."""
        touched = self._set(name, zone, counted, ready)
        for z in touched:
            if self._size(z):
                self.states.setdefault(z, STATE_NORMAL)
            else:
                self.states.pop(z, None)
        new_states = {z: self._state_of(z) for z in self.states}
        all_full = bool(new_states) and all(s == STATE_FULL for s in new_states.values())
        if all_full and not self.all_full:
            log.warning("Controller detected that all Nodes are not-Ready. Entering master disruption mode.")
            self.all_full = True
            self.states = new_states
            for limiter in self.limiters.values():
                limiter.swap(0.0, now)
            return DisruptionChange(requeue=set(self.zone_of))
        if not all_full and self.all_full:
            log.info("Controller detected that some Nodes are Ready. Exiting master disruption mode.")
            self.all_full = False
            self.states = new_states
            for z, limiter in self.limiters.items():
                limiter.swap(self._qps(z), now)
            return DisruptionChange(requeue=set(self.zone_of), exited_full=True)
        changed = {z for z, s in new_states.items() if self.states.get(z) != s}
        self.states = new_states
        if self.all_full:
            return DisruptionChange(requeue=set())
        for z in changed:
            log.info("Controller detected that zone %r is now in state %s.", z, new_states[z])
            if z in self.limiters:
                self.limiters[z].swap(self._qps(z), now)
        return DisruptionChange(requeue=self._nodes_in(changed))

    def take_taint_token(self, zone: str, now: float) -> tuple[bool, float | None]:
        """May a node of zone get a NoExecute taint now? If not: the seconds until it may (None:
        not at this zone's rate; a change of state will say)."""
        limiter = self.limiters.get(zone)
        if limiter is None:
            limiter = self.limiters[zone] = TaintLimiter(self._qps(zone), now)
        if limiter.try_accept(now):
            return True, None
        return False, limiter.wait(now)


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
        # Zones' Ready counts, disruption states and tainting limiters (loaded from the cache at
        # first use).
        self.zones = ZoneTracker(opts)
        self.zones_loaded = False
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
            self._observe_zone(key, None, "")
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

        # 3. Taints follow conditions (NoExecute only outside full disruption, and added no faster
        #    than the zone's tainting rate allows).
        self._observe_zone(key, node, current_ready)
        disrupted = self.zones.all_full
        wanted = self._rate_limited(node, wanted_taints(node, disrupted), now)
        taints = reconcile_taints(node, disrupted, now, wanted)
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

    def _observe_zone(self, name: str, node: core_pb2.Node | None, ready: str) -> None:
        """Update the zone counts with our fresh view of a node (None: it is gone), and act on a
        change of zone states: look at the affected nodes again; leaving full disruption, give
        every node a fresh grace period (handleDisruption resets the probe timestamps)."""
        now = self.clock.now()
        if not self.zones_loaded:
            self.zones_loaded = True
            self.zones.load(((n.metadata.name, zone_key(n), not excluded_from_disruption(n), ready_status(n) == "True")
                             for n in self.nodes.list()), now)
        if node is None:
            change = self.zones.observe(name, None, False, False, now)
        else:
            change = self.zones.observe(name, zone_key(node), not excluded_from_disruption(node), ready == "True",
                                        now)
        if change.exited_full:
            for health in self.health.values():
                health.probe_timestamp = now
        for other in change.requeue:
            if other != name:
                self.enqueue(other)

    def _rate_limited(self, node: core_pb2.Node, wanted: set[tuple[str, str]], now: float) -> set[tuple[str, str]]:
        """wanted, less a NoExecute taint to add that the zone's limiter holds back (the node is
        looked at again when it may). Swapping not-ready for unreachable, or back, is immediate."""
        adds = {t for t in wanted if t[1] == NO_EXECUTE}
        if not adds or any(_managed(t) and t.effect == NO_EXECUTE for t in node.spec.taints):
            return wanted
        allowed, wait = self.zones.take_taint_token(zone_key(node), now)
        if allowed:
            return wanted
        if wait is not None:
            self.queue.add_after(node.metadata.name, wait + 0.01)
        return wanted - adds
