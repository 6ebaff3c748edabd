"""What the Job controller asks of a pod: active, terminating, ready, failed, and which pods
to delete first. Pure functions over (read-only, cached) pod messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ketch.api import timeutil
from ketch.v1 import core_pb2

from . import indexed

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
TERMINAL_PHASES = ("Succeeded", "Failed")
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def has_tracking_finalizer(pod: core_pb2.Pod) -> bool:
    return TRACKING_FINALIZER in pod.metadata.finalizers


def ready_condition(pod: core_pb2.Pod) -> Any | None:
    for c in pod.status.conditions:
        if c.type == "Ready":
            return c
    return None


def is_ready(pod: core_pb2.Pod) -> bool:
    c = ready_condition(pod)
    return c is not None and c.status == "True"


def max_restarts(pod: core_pb2.Pod) -> int:
    return max((cs.restart_count for cs in pod.status.container_statuses), default=0)


def restart_sum(pod: core_pb2.Pod) -> int:
    return (sum(cs.restart_count for cs in pod.status.init_container_statuses)
            + sum(cs.restart_count for cs in pod.status.container_statuses))


def deletion_order_key(pod: core_pb2.Pod) -> tuple[Any, ...]:
    """Kubernetes' ActivePods order: the pods to delete first sort first.

    Unscheduled before scheduled; Pending < Unknown < Running; not ready before ready; ready for
    less time first; more restarts first; newer first (no creation time first of all).
    """
    ready = is_ready(pod)
    ready_key = 0.0
    if ready:
        c = ready_condition(pod)
        t = timeutil.parse(c.last_transition_time) if c is not None else 0.0
        ready_key = float("-inf") if not t else -t
    created = timeutil.parse(pod.metadata.creation_timestamp)
    return (
        1 if pod.spec.node_name else 0,
        _PHASE_RANK.get(pod.status.phase, 0),
        1 if ready else 0,
        ready_key,
        -max_restarts(pod),
        (0, 0.0) if not created else (1, -created),
    )


def sort_for_deletion(pods: Iterable[Any]) -> list[Any]:
    return sorted(pods, key=deletion_order_key)


def pods_for_removal(pods: list[Any], rm_at_least: int, completions: int | None, is_indexed: bool) -> list[Any]:
    """Active pods to delete: for Indexed Jobs first those without a valid index and all but one
    per repeated index, then the least progressed until rm_at_least are chosen."""
    rm: list[Any] = []
    left: list[Any]
    if is_indexed:
        left = []
        by_index: dict[int, list[Any]] = {}
        for p in pods:
            index = indexed.completion_index(p)
            if index == indexed.UNKNOWN_INDEX or (completions is not None and index >= completions):
                rm.append(p)
            else:
                by_index.setdefault(index, []).append(p)
        for index in sorted(by_index):
            same = by_index[index]
            if len(same) > 1:
                same = sort_for_deletion(same)
                rm.extend(same[:-1])
                left.append(same[-1])
            else:
                left.append(same[0])
    else:
        left = list(pods)
    if len(rm) < rm_at_least:
        rm.extend(sort_for_deletion(left)[:rm_at_least - len(rm)])
    return rm
