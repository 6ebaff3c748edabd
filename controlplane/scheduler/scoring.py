"""Scoring of feasible nodes (pure): least allocation spreads pods over nodes.

NodeResourcesFit's LeastAllocated strategy with cpu and memory weighted 1 each: a node scores
(free after placing the pod) / allocatable × 100 per resource, in integers as Kubernetes
computes it, averaged. Requests are the "non-zero" ones (a pod that asks for nothing still
counts 100m cpu and 200Mi memory), so pods without requests spread too. Ties go to the node
with fewer pods, then rotate by name, so placement is deterministic and still spreads.
"""

from __future__ import annotations

from collections.abc import Iterable

from .predicates import NodeInfo, Resources

MAX_NODE_SCORE = 100


def _least_requested(requested: int, capacity: int) -> int:
    if capacity <= 0 or requested > capacity:
        return 0
    return ((capacity - requested) * MAX_NODE_SCORE) // capacity


def least_allocated_score(info: NodeInfo, pod_non_zero: Resources) -> int:
    """The node's score in [0, 100] if the pod (its non-zero requests) were placed on it."""
    cpu = _least_requested(info.non_zero_requested.milli_cpu + pod_non_zero.milli_cpu,
                           info.allocatable.milli_cpu)
    mem = _least_requested(info.non_zero_requested.memory + pod_non_zero.memory, info.allocatable.memory)
    return (cpu + mem) // 2


def rank_key(info: NodeInfo, pod_non_zero: Resources) -> tuple[int, int]:
    """Sort key: best first (highest score, then fewest pods)."""
    return (-least_allocated_score(info, pod_non_zero), info.pod_count)


def pick_node(feasible: Iterable[NodeInfo], pod_non_zero: Resources, after: str = "") -> NodeInfo | None:
    """The best of the feasible nodes, or None when there are none.

    Among nodes equal on score and pod count, the first by name after `after` (the previous
    choice) wins, wrapping around: ties rotate over the nodes, where Kubernetes picks one at
    random, so short-lived pods (which free their room at once) still spread.
    """
    best: list[NodeInfo] = []
    best_key: tuple[int, int] | None = None
    for info in feasible:
        k = rank_key(info, pod_non_zero)
        if best_key is None or k < best_key:
            best, best_key = [info], k
        elif k == best_key:
            best.append(info)
    if not best:
        return None
    best.sort(key=lambda i: i.name)
    return next((i for i in best if i.name > after), best[0])
