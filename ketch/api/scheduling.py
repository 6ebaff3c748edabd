"""Taints, tolerations and required node affinity: the matching rules Kubernetes shares between
the scheduler, the DaemonSet controller and taint-based eviction (k8s.io/component-helpers
scheduling/corev1 and the core/v1 Toleration helpers).

Pure functions over the generated messages, so that "this pod may run on this node" means one
thing everywhere in Ketch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ketch.v1 import core_pb2

from .goint import parse_int64

# Well-known taint keys (core/v1 well_known_taints.go).
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
TAINT_DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
TAINT_PID_PRESSURE = "node.kubernetes.io/pid-pressure"
TAINT_NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
TAINT_OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"

NO_SCHEDULE = "NoSchedule"
PREFER_NO_SCHEDULE = "PreferNoSchedule"
NO_EXECUTE = "NoExecute"


def tolerates(toleration: core_pb2.Toleration, taint: core_pb2.Taint) -> bool:
    """Toleration.ToleratesTaint: empty effect matches all effects, empty key with Exists all keys."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator in ("", "Equal"):
        return toleration.value == taint.value
    return toleration.operator == "Exists"


def tolerated(taint: core_pb2.Taint, tolerations: Iterable[core_pb2.Toleration]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def find_untolerated_taint(
    taints: Iterable[core_pb2.Taint], tolerations: Sequence[core_pb2.Toleration],
    include: Callable[[core_pb2.Taint], bool] | None = None,
) -> core_pb2.Taint | None:
    """The first taint (passing include) that no toleration tolerates, or None."""
    for taint in taints:
        if include is not None and not include(taint):
            continue
        if not tolerated(taint, tolerations):
            return taint
    return None


def matching_tolerations(
    taints: Iterable[core_pb2.Taint], tolerations: Sequence[core_pb2.Toleration],
) -> tuple[bool, list[tuple[core_pb2.Taint, core_pb2.Toleration]]]:
    """GetMatchingTolerations: whether every taint is tolerated, and for each taint the first
    toleration that tolerates it."""
    used: list[tuple[core_pb2.Taint, core_pb2.Toleration]] = []
    for taint in taints:
        for tol in tolerations:
            if tolerates(tol, taint):
                used.append((taint, tol))
                break
        else:
            return False, []
    return True, used


def effect_is(*effects: str) -> Callable[[core_pb2.Taint], bool]:
    return lambda taint: taint.effect in effects


# ---------------------------------------------------------------------------------------------
# Node selectors and required node affinity


def _requirement_matches(req: core_pb2.NodeSelectorRequirement, values: dict[str, str]) -> bool:
    op = req.operator
    present = req.key in values
    if op == "In":
        return present and values[req.key] in req.values
    if op == "NotIn":
        return not present or values[req.key] not in req.values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        if not present or len(req.values) != 1:
            return False
        have, want = parse_int64(values[req.key]), parse_int64(req.values[0])
        if have is None or want is None:
            return False
        return have > want if op == "Gt" else have < want
    return False


def node_fields(node: core_pb2.Node) -> dict[str, str]:
    """The node fields a matchFields requirement may name (only metadata.name in Kubernetes)."""
    return {"metadata.name": node.metadata.name}


def term_matches(term: core_pb2.NodeSelectorTerm, node: core_pb2.Node) -> bool:
    """Requirements in a term are ANDed; a term with no requirements matches nothing."""
    if not term.match_expressions and not term.match_fields:
        return False
    labels = dict(node.metadata.labels)
    if not all(_requirement_matches(r, labels) for r in term.match_expressions):
        return False
    if term.match_fields:
        fields = node_fields(node)
        for r in term.match_fields:
            if r.key not in fields or r.operator not in ("In", "NotIn"):
                return False
            if not _requirement_matches(r, fields):
                return False
    return True


def node_selector_matches(selector: core_pb2.NodeSelector, node: core_pb2.Node) -> bool:
    """Terms are ORed."""
    return any(term_matches(t, node) for t in selector.node_selector_terms)


def required_affinity(spec: core_pb2.PodSpec) -> core_pb2.NodeSelector | None:
    if not spec.HasField("affinity") or not spec.affinity.HasField("node_affinity"):
        return None
    na = spec.affinity.node_affinity
    if not na.HasField("required_during_scheduling_ignored_during_execution"):
        return None
    return na.required_during_scheduling_ignored_during_execution


def matches_required_node_affinity(spec: core_pb2.PodSpec, node: core_pb2.Node) -> bool:
    """GetRequiredNodeAffinity(pod).Match(node): spec.nodeSelector and the required terms."""
    labels = node.metadata.labels
    for k, v in spec.node_selector.items():
        if labels.get(k) != v:
            return False
    required = required_affinity(spec)
    if required is None:
        return True
    return node_selector_matches(required, node)
