"""Filter predicates of the scheduler: does a pod fit a node, and if not, why (pure).

The checks and their order follow the default scheduler profile's filter plugins
(NodeUnschedulable, TaintToleration, NodeAffinity, NodeResourcesFit); a node is reported with
the reasons of the first plugin that rejects it, worded as Kubernetes words them, so that the
FailedScheduling message reads the same ("0/3 nodes are available: 1 Insufficient cpu, 2
node(s) had untolerated taint {dedicated: gpu}.").

Readiness is expressed the way the node lifecycle controller expresses it: a node whose Ready
condition is not True carries (or is treated as carrying) the `node.kubernetes.io/not-ready` or
`node.kubernetes.io/unreachable` NoSchedule taint, so ordinary pods avoid it while pods that
tolerate those taints (as DaemonSet pods do) may still land there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ketch.api import meta, quantity, scheduling
from ketch.v1 import core_pb2

UNSCHEDULABLE_TAINT = scheduling.TAINT_UNSCHEDULABLE
NOT_READY_TAINT = scheduling.TAINT_NOT_READY
UNREACHABLE_TAINT = scheduling.TAINT_UNREACHABLE

# Scoring only: a container that requests nothing counts as this much (schedutil defaults).
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

ERR_UNSCHEDULABLE = "node(s) were unschedulable"
ERR_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
ERR_TOO_MANY_PODS = "Too many pods"


@dataclass(slots=True)
class Resources:
    """Requested or allocatable amounts: cpu in millicores, memory in bytes, others as integers."""

    milli_cpu: int = 0
    memory: int = 0
    scalar: dict[str, int] = field(default_factory=dict)

    def add(self, other: Resources) -> None:
        self.milli_cpu += other.milli_cpu
        self.memory += other.memory
        for k, v in other.scalar.items():
            self.scalar[k] = self.scalar.get(k, 0) + v

    def sub(self, other: Resources) -> None:
        self.milli_cpu -= other.milli_cpu
        self.memory -= other.memory
        for k, v in other.scalar.items():
            self.scalar[k] = self.scalar.get(k, 0) - v

    def max_with(self, other: Resources) -> None:
        self.milli_cpu = max(self.milli_cpu, other.milli_cpu)
        self.memory = max(self.memory, other.memory)
        for k, v in other.scalar.items():
            self.scalar[k] = max(self.scalar.get(k, 0), v)

    def copy(self) -> Resources:
        return Resources(self.milli_cpu, self.memory, dict(self.scalar))


def _amount(name: str, text: str) -> int:
    try:
        if name == "cpu":
            return quantity.millicores(text)
        return quantity.to_bytes(text)
    except quantity.QuantityError:
        return 0


def resources_of(amounts: Mapping[str, str]) -> Resources:
    """A resource list (`{"cpu": "500m", "memory": "1Gi"}`) as numbers; `pods` is left out."""
    out = Resources()
    for name, text in amounts.items():
        if name == "cpu":
            out.milli_cpu = _amount(name, text)
        elif name == "memory":
            out.memory = _amount(name, text)
        elif name != "pods":
            out.scalar[name] = _amount(name, text)
    return out


def _container_requests(c: core_pb2.Container, non_zero: bool) -> Resources:
    # A limit without a request means request = limit (API defaulting; repeated here in case
    # the object was stored without it).
    amounts = dict(c.resources.limits)
    amounts.update(c.resources.requests)
    r = resources_of(amounts)
    if non_zero:
        if "cpu" not in amounts:
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST
        if "memory" not in amounts:
            r.memory = DEFAULT_MEMORY_REQUEST
    return r


def pod_requests(pod: core_pb2.Pod, non_zero: bool = False) -> Resources:
    """The pod's effective request, as Kubernetes' PodRequests computes it.

    The app containers and sidecars (init containers with restartPolicy Always) add up; each
    ordinary init container runs alone beside the sidecars started before it, so the pod needs
    the larger of the two; pod overhead comes on top. With non_zero, containers that request
    no cpu or memory count the scoring defaults instead (for spreading only, never for fit).
    """
    spec = pod.spec
    total = Resources()
    for c in spec.containers:
        total.add(_container_requests(c, non_zero))
    sidecars = Resources()
    init_max = Resources()
    for c in spec.init_containers:
        req = _container_requests(c, non_zero)
        if c.HasField("restart_policy") and c.restart_policy == "Always":
            total.add(req)
            sidecars.add(req)
            init_max.max_with(sidecars)
        else:
            req.add(sidecars)
            init_max.max_with(req)
    total.max_with(init_max)
    if spec.overhead:
        total.add(resources_of(spec.overhead))
    return total


# -- node state ---------------------------------------------------------------------------------


@dataclass
class NodeInfo:
    """What the scheduler knows of one node: its object, what it offers and what is taken."""

    node: core_pb2.Node
    allocatable: Resources
    allowed_pods: int
    requested: Resources = field(default_factory=Resources)
    non_zero_requested: Resources = field(default_factory=Resources)
    pod_count: int = 0
    # What depends on the node object only, worked out once per node version (node_info_of),
    # not once per pod and node: with 1,000 nodes, effective_taints was a third of the
    # scheduler's time.
    taints: list[core_pb2.Taint] = field(default_factory=list)  # effective_taints(node)
    prefer_no_schedule: bool = False  # any PreferNoSchedule taint (the scoring plugin's input)
    name: str = ""
    unschedulable: bool = False  # node.spec.unschedulable

    def add_pod(self, requests: Resources, non_zero: Resources) -> None:
        self.requested.add(requests)
        self.non_zero_requested.add(non_zero)
        self.pod_count += 1


def node_info_of(node: core_pb2.Node) -> NodeInfo:
    alloc = node.status.allocatable or node.status.capacity
    try:
        allowed = int(quantity.parse(alloc["pods"])) if "pods" in alloc else 0
    except quantity.QuantityError:
        allowed = 0
    return NodeInfo(node=node, allocatable=resources_of(alloc), allowed_pods=allowed, taints=effective_taints(node),
                    prefer_no_schedule=any(t.effect == "PreferNoSchedule" for t in node.spec.taints),
                    name=node.metadata.name, unschedulable=node.spec.unschedulable)


def effective_taints(node: core_pb2.Node) -> list[core_pb2.Taint]:
    """The node's taints, plus the NoSchedule readiness taint its Ready condition implies.

    The node lifecycle controller keeps these taints in sync with the Ready condition; adding
    them here too means a node that has just turned NotReady is avoided before that happens.
    """
    taints = list(node.spec.taints)
    ready = meta.find_condition(node.status.conditions, "Ready")
    if ready is None or ready.status != "True":
        key = UNREACHABLE_TAINT if ready is not None and ready.status == "Unknown" else NOT_READY_TAINT
        if not any(t.key == key and t.effect == "NoSchedule" for t in taints):
            taints.append(core_pb2.Taint(key=key, effect="NoSchedule"))
    return taints


# -- tolerations and node affinity: the rules shared with DaemonSets and eviction ------------------

tolerates = scheduling.tolerates


def untolerated_taint(taints: Iterable[core_pb2.Taint], tolerations: Sequence[core_pb2.Toleration],
                      effects: tuple[str, ...] = ("NoSchedule", "NoExecute")) -> core_pb2.Taint | None:
    """The first taint with one of effects that no toleration tolerates, or None."""
    return scheduling.find_untolerated_taint(taints, tolerations, scheduling.effect_is(*effects))


def taint_reason(taint: core_pb2.Taint) -> str:
    return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"


def matches_node_selector_and_affinity(pod: core_pb2.Pod, node: core_pb2.Node) -> bool:
    """spec.nodeSelector (every label) and required node affinity (any term)."""
    return scheduling.matches_required_node_affinity(pod.spec, node)


# -- fit ------------------------------------------------------------------------------------------


def resource_fit_reasons(requests: Resources, info: NodeInfo) -> list[str]:
    """NodeResourcesFit: every shortfall (pods count, cpu, memory, other resources)."""
    reasons: list[str] = []
    if info.pod_count + 1 > info.allowed_pods:
        reasons.append(ERR_TOO_MANY_PODS)
    alloc, used = info.allocatable, info.requested
    if requests.milli_cpu > 0 and requests.milli_cpu > alloc.milli_cpu - used.milli_cpu:
        reasons.append("Insufficient cpu")
    if requests.memory > 0 and requests.memory > alloc.memory - used.memory:
        reasons.append("Insufficient memory")
    for name in sorted(requests.scalar):
        want = requests.scalar[name]
        if want > 0 and want > alloc.scalar.get(name, 0) - used.scalar.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


def fits_resources(requests: Resources, info: NodeInfo) -> bool:
    """resource_fit_reasons(requests, info) is empty, without building the reasons."""
    if info.pod_count + 1 > info.allowed_pods:
        return False
    alloc, used = info.allocatable, info.requested
    if requests.milli_cpu > 0 and requests.milli_cpu > alloc.milli_cpu - used.milli_cpu:
        return False
    if requests.memory > 0 and requests.memory > alloc.memory - used.memory:
        return False
    for name, want in requests.scalar.items():
        if want > 0 and want > alloc.scalar.get(name, 0) - used.scalar.get(name, 0):
            return False
    return True


def fits(pod: core_pb2.Pod, requests: Resources, info: NodeInfo, constrained: bool = True) -> bool:
    """filter_reasons(...) is empty: the cheap test run for every pod and node; the reasons are
    worked out only when no node fits (for the FailedScheduling message)."""
    if info.unschedulable or info.taints:
        return not filter_reasons(pod, requests, info, constrained)
    if constrained and not matches_node_selector_and_affinity(pod, info.node):
        return False
    return fits_resources(requests, info)


def node_names_from_affinity(pod: core_pb2.Pod) -> set[str] | None:
    """The NodeAffinity PreFilter's node names: when every required term names nodes by
    `metadata.name In` (as a DaemonSet's pods do), only those nodes can fit; None: any node may.
    Requirements in a term are ANDed (their name sets intersect), terms are ORed (unioned)."""
    required = scheduling.required_affinity(pod.spec)
    if required is None or not required.node_selector_terms:
        return None
    names: set[str] = set()
    for term in required.node_selector_terms:
        term_names: set[str] | None = None
        for r in term.match_fields:
            if r.key == "metadata.name" and r.operator == "In":
                values = set(r.values)
                term_names = values if term_names is None else term_names & values
        if term_names is None:
            return None  # this term does not name nodes: every node is a candidate
        names |= term_names
    return names


# kube-scheduler's percentageOfNodesToScore at its default (0: adaptive), as 1.31's
# numFeasibleNodesToFind computes it: stop filtering once this many feasible nodes are found.
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5


def num_feasible_nodes_to_find(num_all_nodes: int, percentage: int = 0) -> int:
    """Below 100 nodes, all of them; otherwise percentage of them (adaptive when 0: 50 % less
    1 % per 125 nodes, at least 5 %), and never fewer than 100."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    if percentage <= 0:
        percentage = max(50 - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    percentage = min(percentage, 100)
    return max(num_all_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


def has_node_constraints(pod: core_pb2.Pod) -> bool:
    """Whether the pod's nodeSelector or required node affinity can rule out a node (PreFilter:
    asked once per pod, not per node)."""
    return bool(pod.spec.node_selector) or scheduling.required_affinity(pod.spec) is not None


def filter_reasons(pod: core_pb2.Pod, requests: Resources, info: NodeInfo, constrained: bool = True) -> list[str]:
    """Why the pod cannot go to this node (empty: it fits), in filter-plugin order.
    constrained False: has_node_constraints(pod) is False, so the affinity filter passes."""
    node = info.node
    tolerations = pod.spec.tolerations
    if node.spec.unschedulable:
        unschedulable = core_pb2.Taint(key=UNSCHEDULABLE_TAINT, effect="NoSchedule")
        if not any(tolerates(t, unschedulable) for t in tolerations):
            return [ERR_UNSCHEDULABLE]
    if info.taints:
        taint = untolerated_taint(info.taints, tolerations)
        if taint is not None:
            return [taint_reason(taint)]
    if constrained and not matches_node_selector_and_affinity(pod, node):
        return [ERR_AFFINITY]
    return resource_fit_reasons(requests, info)


def needs_scheduling(pod: core_pb2.Pod, scheduler_name: str = "default-scheduler") -> bool:
    """An unbound, live pod that names this scheduler (or none) and has no scheduling gates."""
    spec = pod.spec
    if spec.node_name or pod.metadata.deletion_timestamp:
        return False
    if pod.status.phase in ("Succeeded", "Failed"):
        return False
    if spec.scheduler_name not in ("", scheduler_name):
        return False
    return not spec.scheduling_gates


# The DefaultPreemption PostFilter's words for a node (SelectVictimsOnNode, nodesWherePreemptionMightHelp).
NO_VICTIMS = "No preemption victims found for incoming pod"
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
NOT_ELIGIBLE_NEVER = "not eligible due to preemptionPolicy=Never."


def _unresolvable(reasons: Sequence[str]) -> bool:
    """The node was rejected with UnschedulableAndUnresolvable: by NodeUnschedulable,
    TaintToleration or NodeAffinity (NodeResourcesFit says plain Unschedulable)."""
    return bool(reasons) and (reasons[0] in (ERR_UNSCHEDULABLE, ERR_AFFINITY)
                              or reasons[0].startswith("node(s) had untolerated taint"))


def _histogram(num_nodes: int, counts: Counter[str]) -> str:
    parts = sorted(f"{n} {reason}" for reason, n in counts.items())
    msg = f"0/{num_nodes} nodes are available:"
    if parts:
        msg += " " + ", ".join(parts) + "."
    return msg


def preemption_message(num_nodes: int, reasons_by_node: Mapping[str, list[str]], never: bool = False) -> str:
    """What DefaultPreemption's PostFilter says when it finds no candidate. Ketch does not preempt
    and gives pods no priority, so no node has a lower-priority pod to evict: a node rejected for
    resources has no victims, one rejected by an unresolvable filter is not helped."""
    if never:
        return "preemption: " + NOT_ELIGIBLE_NEVER
    counts = Counter(PREEMPTION_NOT_HELPFUL if _unresolvable(r) else NO_VICTIMS for r in reasons_by_node.values())
    return "preemption: " + _histogram(num_nodes, counts)


def fit_error_message(num_nodes: int, reasons_by_node: Mapping[str, list[str]], never: bool = False) -> str:
    """Kubernetes' FitError text: counts of each reason, sorted, after "0/N nodes are available",
    then the preemption PostFilter's own message (FitError.Error's " %v." separators, hence the
    double stop after it). never: the pod's preemptionPolicy is Never."""
    if num_nodes == 0:
        return "no nodes available to schedule pods"
    counts: Counter[str] = Counter()
    for reasons in reasons_by_node.values():
        counts.update(reasons)
    return f"{_histogram(num_nodes, counts)} {preemption_message(num_nodes, reasons_by_node, never)}."
