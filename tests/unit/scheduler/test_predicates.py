"""Scheduler filters and scoring, table-driven."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.scheduler import predicates, scoring
from controlplane.scheduler.predicates import NodeInfo, Resources
from ketch.api import manifest
from ketch.v1 import core_pb2


def make_node(name: str = "n", labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
              ready: str | None = "True", unschedulable: bool = False, cpu: str = "4", memory: str = "8Gi",
              pods: str = "110") -> core_pb2.Node:
    status: dict[str, Any] = {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    return manifest.from_dict({  # type: ignore[return-value]
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable}, "status": status})


def make_pod(spec: dict[str, Any] | None = None, requests: dict[str, str] | None = None,
             limits: dict[str, str] | None = None) -> core_pb2.Pod:
    container: dict[str, Any] = {"name": "c", "command": ["true"]}
    if requests or limits:
        container["resources"] = {"requests": requests or {}, "limits": limits or {}}
    return manifest.from_dict({  # type: ignore[return-value]
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [container], **(spec or {})}})


# -- tolerations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TolCase:
    name: str
    toleration: dict[str, Any]
    taint: dict[str, str]
    tolerated: bool


TOL_CASES = [
    TolCase("equal key and value tolerate", {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
            {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    TolCase("empty operator means Equal", {"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"},
            True),
    TolCase("a different value does not tolerate", {"key": "k", "value": "x"},
            {"key": "k", "value": "v", "effect": "NoSchedule"}, False),
    TolCase("Exists ignores the value", {"key": "k", "operator": "Exists"},
            {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    TolCase("empty key with Exists tolerates every taint", {"operator": "Exists"},
            {"key": "any", "value": "v", "effect": "NoExecute"}, True),
    TolCase("a different effect does not tolerate", {"key": "k", "operator": "Exists", "effect": "NoExecute"},
            {"key": "k", "effect": "NoSchedule"}, False),
    TolCase("a different key does not tolerate", {"key": "j", "operator": "Exists"},
            {"key": "k", "effect": "NoSchedule"}, False),
]


@pytest.mark.parametrize("case", TOL_CASES, ids=[c.name for c in TOL_CASES])
def test_tolerates(case: TolCase) -> None:
    tol = core_pb2.Toleration(**case.toleration)
    taint = core_pb2.Taint(**case.taint)
    assert predicates.tolerates(tol, taint) is case.tolerated


# -- node affinity -------------------------------------------------------------------------------

def _affinity(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}}


def _expr(key: str, op: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": op, "values": list(values)}]}


@dataclass(frozen=True)
class AffinityCase:
    name: str
    pod_spec: dict[str, Any]
    node_labels: dict[str, str]
    matches: bool
    node_name: str = "n1"


AFFINITY_CASES = [
    AffinityCase("no selector matches any node", {}, {}, True),
    AffinityCase("nodeSelector needs every label", {"nodeSelector": {"a": "1", "b": "2"}}, {"a": "1"}, False),
    AffinityCase("nodeSelector with all labels matches", {"nodeSelector": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    AffinityCase("In matches a listed value", _affinity(_expr("zone", "In", "a", "b")), {"zone": "b"}, True),
    AffinityCase("In needs the label", _affinity(_expr("zone", "In", "a")), {}, False),
    AffinityCase("NotIn matches a missing label", _affinity(_expr("zone", "NotIn", "a")), {}, True),
    AffinityCase("NotIn rejects a listed value", _affinity(_expr("zone", "NotIn", "a")), {"zone": "a"}, False),
    AffinityCase("Exists needs the key", _affinity(_expr("gpu", "Exists")), {"gpu": ""}, True),
    AffinityCase("DoesNotExist rejects the key", _affinity(_expr("gpu", "DoesNotExist")), {"gpu": "x"}, False),
    AffinityCase("Gt compares integers", _affinity(_expr("cores", "Gt", "8")), {"cores": "16"}, True),
    AffinityCase("Gt is strict", _affinity(_expr("cores", "Gt", "16")), {"cores": "16"}, False),
    AffinityCase("Lt compares integers", _affinity(_expr("cores", "Lt", "8")), {"cores": "4"}, True),
    AffinityCase("Gt with a non-integer label fails", _affinity(_expr("cores", "Gt", "8")), {"cores": "many"},
                 False),
    # strconv.ParseInt(s, 10, 64): a sign and ASCII digits only, within int64; anything else fails.
    AffinityCase("Gt with a label in Python's but not Go's integer syntax fails",
                 _affinity(_expr("cores", "Gt", "8")), {"cores": "1_000"}, False),
    AffinityCase("Gt with a label beyond int64 fails", _affinity(_expr("cores", "Gt", "8")),
                 {"cores": "9" * 20}, False),
    AffinityCase("Lt with a value Go cannot read fails", _affinity(_expr("cores", "Lt", " 80")), {"cores": "4"},
                 False),
    AffinityCase("Gt reads a signed value", _affinity(_expr("cores", "Gt", "+8")), {"cores": "16"}, True),
    AffinityCase("terms are ORed", _affinity(_expr("zone", "In", "a"), _expr("zone", "In", "b")), {"zone": "b"},
                 True),
    AffinityCase("expressions within a term are ANDed",
                 _affinity({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                                 {"key": "gpu", "operator": "Exists"}]}), {"zone": "a"}, False),
    AffinityCase("an empty term matches nothing", _affinity({}), {"zone": "a"}, False),
    AffinityCase("matchFields on metadata.name",
                 _affinity({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}), {},
                 True),
    AffinityCase("matchFields NotIn excludes the node",
                 _affinity({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}), {},
                 False),
    AffinityCase("nodeSelector and affinity must both hold",
                 {"nodeSelector": {"a": "1"}, **_affinity(_expr("zone", "In", "z"))}, {"zone": "z"}, False),
]


@pytest.mark.parametrize("case", AFFINITY_CASES, ids=[c.name for c in AFFINITY_CASES])
def test_node_selector_and_affinity(case: AffinityCase) -> None:
    pod = make_pod(case.pod_spec)
    node = make_node(case.node_name, labels=case.node_labels)
    assert predicates.matches_node_selector_and_affinity(pod, node) is case.matches


# -- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestCase:
    name: str
    spec: dict[str, Any]
    milli_cpu: int
    memory: int
    non_zero_milli_cpu: int


def _c(name: str, cpu: str = "", memory: str = "", restart: str = "") -> dict[str, Any]:
    req = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    out: dict[str, Any] = {"name": name, "command": ["true"], "resources": {"requests": req}}
    if restart:
        out["restartPolicy"] = restart
    return out


REQUEST_CASES = [
    RequestCase("nothing requested", {"containers": [_c("a")]}, 0, 0, 100),
    RequestCase("containers add up", {"containers": [_c("a", "250m", "1Mi"), _c("b", "500m")]}, 750, 2**20, 750),
    RequestCase("an init container alone can need more",
                {"initContainers": [_c("i", "2")], "containers": [_c("a", "500m")]}, 2000, 0, 2000),
    RequestCase("sidecars add to the containers and to later init containers",
                {"initContainers": [_c("s", "1", restart="Always"), _c("i", "1500m")],
                 "containers": [_c("a", "200m")]}, 2500, 0, 2500),
    RequestCase("overhead is added", {"containers": [_c("a", "1")], "overhead": {"cpu": "100m"}}, 1100, 0, 1100),
]


@pytest.mark.parametrize("case", REQUEST_CASES, ids=[c.name for c in REQUEST_CASES])
def test_pod_requests(case: RequestCase) -> None:
    pod = manifest.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": case.spec})
    got = predicates.pod_requests(pod)  # type: ignore[arg-type]
    assert (got.milli_cpu, got.memory) == (case.milli_cpu, case.memory)
    assert predicates.pod_requests(pod, non_zero=True).milli_cpu == case.non_zero_milli_cpu  # type: ignore[arg-type]


def test_limits_stand_in_for_missing_requests() -> None:
    pod = make_pod(limits={"cpu": "1", "memory": "1Gi"})
    got = predicates.pod_requests(pod)
    assert (got.milli_cpu, got.memory) == (1000, 2**30)


# -- the whole filter ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterCase:
    name: str
    # node setup
    node: dict[str, Any] = field(default_factory=dict)
    used_milli_cpu: int = 0
    used_pods: int = 0
    # pod setup
    pod_spec: dict[str, Any] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)
    # expectations
    reasons: tuple[str, ...] = ()


FILTER_CASES = [
    FilterCase("a ready empty node fits"),
    FilterCase("an unschedulable node is skipped", node={"unschedulable": True},
               reasons=("node(s) were unschedulable",)),
    FilterCase("a pod tolerating unschedulable may use a cordoned node", node={"unschedulable": True},
               pod_spec={"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                                          "effect": "NoSchedule"}]}),
    FilterCase("a NotReady node counts as tainted not-ready", node={"ready": "False"},
               reasons=("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",)),
    FilterCase("a node without a Ready condition is not ready", node={"ready": None},
               reasons=("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",)),
    FilterCase("an Unknown node counts as unreachable", node={"ready": "Unknown"},
               reasons=("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",)),
    FilterCase("a pod tolerating everything may use a NotReady node", node={"ready": "False"},
               pod_spec={"tolerations": [{"operator": "Exists"}]}),
    FilterCase("NoExecute taints are filtered too",
               node={"taints": [{"key": "k", "value": "v", "effect": "NoExecute"}]},
               reasons=("node(s) had untolerated taint {k: v}",)),
    FilterCase("PreferNoSchedule taints do not filter",
               node={"taints": [{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]}),
    FilterCase("a label mismatch is reported as affinity", pod_spec={"nodeSelector": {"a": "b"}},
               reasons=("node(s) didn't match Pod's node affinity/selector",)),
    FilterCase("cpu beyond what is free", node={"cpu": "2"}, used_milli_cpu=1500, requests={"cpu": "600m"},
               reasons=("Insufficient cpu",)),
    FilterCase("cpu exactly what is free fits", node={"cpu": "2"}, used_milli_cpu=1400, requests={"cpu": "600m"}),
    FilterCase("memory and cpu shortfalls both reported", node={"cpu": "1", "memory": "1Gi"},
               requests={"cpu": "2", "memory": "2Gi"}, reasons=("Insufficient cpu", "Insufficient memory")),
    FilterCase("the pod count is a resource", node={"pods": "3"}, used_pods=3, reasons=("Too many pods",)),
    FilterCase("an extended resource the node lacks", requests={"example.com/gpu": "1"},
               reasons=("Insufficient example.com/gpu",)),
    FilterCase("unschedulable is reported before resources", node={"unschedulable": True, "cpu": "1"},
               requests={"cpu": "2"}, reasons=("node(s) were unschedulable",)),
]


@pytest.mark.parametrize("case", FILTER_CASES, ids=[c.name for c in FILTER_CASES])
def test_filter_reasons(case: FilterCase) -> None:
    node = make_node(**case.node)
    info = predicates.node_info_of(node)
    info.requested.milli_cpu = case.used_milli_cpu
    info.pod_count = case.used_pods
    pod = make_pod(case.pod_spec, requests=case.requests)
    assert tuple(predicates.filter_reasons(pod, predicates.pod_requests(pod), info)) == case.reasons


NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"


@pytest.mark.parametrize(("reasons", "message"), [
    ({}, "0/0 nodes are available:"),
    # FitError.Error() adds DefaultPreemption's message with " %v.": hence the two stops.
    ({"a": ["Insufficient cpu"]},
     f"0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 {NO_VICTIMS}.."),
    ({"a": ["node(s) had untolerated taint {k: v}"], "b": ["node(s) didn't match Pod's node affinity/selector"],
      "c": ["node(s) had untolerated taint {k: v}"]},
     "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
     f"2 node(s) had untolerated taint {{k: v}}. preemption: 0/3 nodes are available: 3 {NOT_HELPFUL}.."),
    ({"a": ["Insufficient cpu", "Insufficient memory"], "b": ["Insufficient cpu"]},
     "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu. "
     f"preemption: 0/2 nodes are available: 2 {NO_VICTIMS}.."),
    ({"a": ["Too many pods"], "b": ["node(s) were unschedulable"]},
     "0/2 nodes are available: 1 Too many pods, 1 node(s) were unschedulable. "
     f"preemption: 0/2 nodes are available: 1 {NO_VICTIMS}, 1 {NOT_HELPFUL}.."),
], ids=["no nodes", "one node", "counts sorted as text", "several reasons per node", "preemption per node"])
def test_fit_error_message(reasons: dict[str, list[str]], message: str) -> None:
    n = len(reasons)
    if n == 0:
        assert predicates.fit_error_message(0, reasons) == "no nodes available to schedule pods"
        return
    assert predicates.fit_error_message(n, reasons) == message


def test_fit_error_message_of_a_pod_that_never_preempts() -> None:
    assert predicates.fit_error_message(1, {"a": ["Insufficient cpu"]}, never=True) == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never..")


@pytest.mark.parametrize(("spec", "phase", "deleting", "expected"), [
    ({}, "Pending", False, True),
    ({"nodeName": "n"}, "Pending", False, False),
    ({}, "Failed", False, False),
    ({}, "Pending", True, False),
    ({"schedulerName": "default-scheduler"}, "Pending", False, True),
    ({"schedulerName": "other"}, "Pending", False, False),
    ({"schedulingGates": [{"name": "wait"}]}, "Pending", False, False),
], ids=["unbound", "bound", "terminal", "deleting", "default scheduler named", "another scheduler", "gated"])
def test_needs_scheduling(spec: dict[str, Any], phase: str, deleting: bool, expected: bool) -> None:
    pod = make_pod(spec)
    pod.status.phase = phase
    if deleting:
        pod.metadata.deletion_timestamp = "2024-01-01T00:00:00Z"
    assert predicates.needs_scheduling(pod) is expected


# -- scoring -------------------------------------------------------------------------------------


def _info(name: str, cpu_used: int, pods: int, cpu: str = "4") -> NodeInfo:
    info = predicates.node_info_of(make_node(name, cpu=cpu))
    info.non_zero_requested.milli_cpu = cpu_used
    info.pod_count = pods
    return info


@pytest.mark.parametrize(("nodes", "after", "best"), [
    ([_info("a", 2000, 1), _info("b", 1000, 5)], "", "b"),
    ([_info("a", 1000, 2), _info("b", 1000, 1)], "", "b"),
    ([_info("b", 1000, 1), _info("a", 1000, 1)], "", "a"),
    ([_info("a", 1000, 1), _info("b", 1000, 1), _info("c", 1000, 1)], "a", "b"),
    ([_info("a", 1000, 1), _info("b", 1000, 1), _info("c", 1000, 1)], "c", "a"),
    ([_info("a", 0, 0, cpu="1"), _info("b", 0, 0, cpu="8")], "", "b"),
    ([], "", None),
], ids=["least allocated wins", "ties go to fewer pods", "then to the first name",
        "then rotate after the last choice", "rotation wraps around", "bigger node is emptier", "none"])
def test_pick_node(nodes: list[NodeInfo], after: str, best: str | None) -> None:
    got = scoring.pick_node(nodes, Resources(milli_cpu=100, memory=200 * 2**20), after=after)
    assert (got.name if got else None) == best


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6000), st.integers(0, 2**34), st.integers(0, 20),
                          st.sampled_from(["0", "1", "4", "8"])), min_size=1, max_size=12),
       st.integers(0, 3000), st.integers(0, 2**33))
def test_pick_node_chooses_by_rank_key(used: list[tuple[int, int, int, str]], pod_cpu: int, pod_mem: int) -> None:
    """pick_node's inlined scoring is rank_key's: the chosen node has the best key (full nodes,
    a node with no cpu, requests beyond capacity included)."""
    nodes = []
    for i, (cpu_used, mem_used, pods, cpu) in enumerate(used):
        info = _info(f"n{i:02d}", cpu_used, pods, cpu=cpu)
        info.non_zero_requested.memory = mem_used
        nodes.append(info)
    pod = Resources(milli_cpu=pod_cpu, memory=pod_mem)
    got = scoring.pick_node(nodes, pod)
    assert got is not None
    assert scoring.rank_key(got, pod) == min(scoring.rank_key(n, pod) for n in nodes)


def test_score_is_in_range_and_integer() -> None:
    info = _info("a", 0, 0)
    assert scoring.least_allocated_score(info, Resources()) == 100
    info.non_zero_requested.milli_cpu = 5000
    assert 0 <= scoring.least_allocated_score(info, Resources()) <= 100


# -- preference plugins (NodeAffinity, TaintToleration) -------------------------------------------


def _preferring(*terms: tuple[int, str, str], tolerations: list[dict[str, str]] | None = None) -> core_pb2.PodSpec:
    prefs = [{"weight": w, "preference": _expr(k, "In", v)} for w, k, v in terms]
    spec: dict[str, Any] = {"tolerations": tolerations or []}
    if prefs:
        spec["affinity"] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": prefs}}
    return make_pod(spec).spec


def _labelled(name: str, cpu_used: int = 0, labels: dict[str, str] | None = None,
              taints: list[dict[str, str]] | None = None) -> NodeInfo:
    info = predicates.node_info_of(make_node(name, labels=labels, taints=taints))
    info.non_zero_requested.milli_cpu = cpu_used
    return info


PREFER_NO = {"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}


@pytest.mark.parametrize(("spec", "nodes", "best"), [
    (_preferring((50, "zone", "b")), [_labelled("a"), _labelled("b", 2000, {"zone": "b"})], "b"),
    (_preferring((10, "zone", "a"), (90, "disk", "ssd")),
     [_labelled("a", labels={"zone": "a"}), _labelled("b", labels={"disk": "ssd"})], "b"),
    (_preferring(), [_labelled("a", taints=[PREFER_NO]), _labelled("b", 2000)], "b"),
    (_preferring(tolerations=[{"key": "spot", "operator": "Exists", "effect": "PreferNoSchedule"}]),
     [_labelled("a", taints=[PREFER_NO]), _labelled("b", 2000)], "a"),
    (_preferring(tolerations=[{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]),
     [_labelled("a", taints=[PREFER_NO]), _labelled("b", 2000)], "b"),
    (_preferring((100, "zone", "a")),
     [_labelled("a", labels={"zone": "a"}, taints=[PREFER_NO]), _labelled("b")], "b"),
], ids=["a preferred node wins over a less loaded one", "the heavier preference wins",
        "an untolerated PreferNoSchedule taint repels", "a matching toleration cancels it",
        "a toleration of another effect does not", "taints (x3) outweigh affinity (x2)"])
def test_preferences_rank_nodes(spec: core_pb2.PodSpec, nodes: list[NodeInfo], best: str) -> None:
    got = scoring.pick_node(nodes, Resources(milli_cpu=100, memory=200 * 2**20), spec=spec)
    assert got is not None and got.name == best


@pytest.mark.parametrize(("raw", "reverse", "want"), [
    ([0, 0], False, [0, 0]), ([0, 0], True, [100, 100]),
    ([10, 40], False, [25, 100]), ([1, 3], True, [67, 0]),
])
def test_normalize_is_kubernetes_default(raw: list[int], reverse: bool, want: list[int]) -> None:
    assert scoring.normalize(raw, reverse) == want


def test_no_preferences_and_no_soft_taints_skip_the_plugins() -> None:
    assert scoring.preference_scores(_preferring(), [_labelled("a"), _labelled("b")]) is None
