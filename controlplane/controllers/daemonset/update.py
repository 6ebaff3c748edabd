"""Rolling updates of a DaemonSet's pods: which old pods to delete and where to surge new ones.

Pure, after Kubernetes' pkg/controller/daemon/update.go (rollingUpdate). Every node that should
run a pod but has no available one counts against maxUnavailable, so a rollout never takes more
pods down than allowed, and a node that is down simply stalls it (visible in `rollout status`).
With maxSurge the new pod starts beside the old one, which goes once the new one is available.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ketch.api import intstr
from ketch.v1 import apps_pb2

from .predicates import is_pod_available, is_pod_updated

ROLLING_UPDATE = "RollingUpdate"
ON_DELETE = "OnDelete"


@dataclass(frozen=True, slots=True)
class NodeFit:
    """NodeShouldRunDaemonPod's answer for one node."""

    should_run: bool
    should_continue: bool


@dataclass
class UpdatePlan:
    pods_to_delete: list[str] = field(default_factory=list)
    nodes_to_create: list[str] = field(default_factory=list)


def is_rolling_update(ds: apps_pb2.DaemonSet) -> bool:
    """RollingUpdate is the default strategy."""
    return ds.spec.update_strategy.type in ("", ROLLING_UPDATE)


def _scaled(value: Any, total: int, default: int) -> int:
    if not intstr.is_set(value):
        return default
    return intstr.scaled_value(value, total, round_up=True)


def surge_count(ds: apps_pb2.DaemonSet, desired: int) -> int:
    if not is_rolling_update(ds):
        return 0
    return _scaled(ds.spec.update_strategy.rolling_update.max_surge, desired, 0)


def unavailable_count(ds: apps_pb2.DaemonSet, desired: int) -> int:
    if not is_rolling_update(ds):
        return 0
    return _scaled(ds.spec.update_strategy.rolling_update.max_unavailable, desired, 1)


def allows_surge(ds: apps_pb2.DaemonSet) -> bool:
    """util.AllowsSurge: maxSurge is set and not zero (its scaled value does not matter here)."""
    if not is_rolling_update(ds):
        return False
    value = intstr.get(ds.spec.update_strategy.rolling_update.max_surge)
    if value is None:
        return False
    if isinstance(value, str):
        return value.rstrip("%") not in ("0", "")
    return value != 0


def desired_counts(ds: apps_pb2.DaemonSet, fits: Mapping[str, NodeFit]) -> tuple[int, int, int]:
    """(maxSurge, maxUnavailable, desiredNumberScheduled); both 0 means maxUnavailable 1."""
    desired = sum(1 for f in fits.values() if f.should_run)
    max_surge = surge_count(ds, desired)
    max_unavailable = unavailable_count(ds, desired)
    if desired > 0 and max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1
    return max_surge, max_unavailable, desired


def find_updated_pods_on_node(pods: Sequence[Any], hash_: str, generation: int | None,
                              ) -> tuple[Any | None, Any | None, bool]:
    """(new pod, old pod, ok); not ok when a node has more than one of either (manage fixes that)."""
    new = old = None
    for pod in pods:
        if pod.metadata.deletion_timestamp:
            continue
        if is_pod_updated(pod, hash_, generation):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def rolling_update(ds: apps_pb2.DaemonSet, fits: Mapping[str, NodeFit],
                   node_pods: Mapping[str, Sequence[Any]], hash_: str, generation: int | None,
                   now: float) -> UpdatePlan:
    """Which old pods to delete (and, surging, on which nodes to create new pods) this round.

    fits: every node's NodeShouldRunDaemonPod answer; node_pods: the DS's pods by node name
    (terminal pods being deleted left out), including nodes that do not exist any more.
    """
    max_surge, max_unavailable, desired = desired_counts(ds, fits)
    by_node: dict[str, Sequence[Any]] = dict(node_pods)
    for name, fit in fits.items():
        if fit.should_run:
            by_node.setdefault(name, ())
    if max_surge == 0:
        return _update_without_surge(ds, by_node, hash_, generation, now, max_unavailable)
    return _update_with_surge(ds, fits, by_node, hash_, generation, now, max_surge, desired)


def _update_without_surge(ds: apps_pb2.DaemonSet, by_node: Mapping[str, Sequence[Any]], hash_: str,
                          generation: int | None, now: float, max_unavailable: int) -> UpdatePlan:
    """Delete just enough old pods to stay within maxUnavailable; manage recreates them."""
    mrs = ds.spec.min_ready_seconds
    num_unavailable = 0
    replacements: list[str] = []
    candidates: list[str] = []
    for name in sorted(by_node):
        new, old, ok = find_updated_pods_on_node(by_node[name], hash_, generation)
        if not ok:
            num_unavailable += 1  # manage cleans this node up
            continue
        if (old is None) == (new is None):
            num_unavailable += 1  # nothing yet, or both: manage handles it
        elif new is not None:
            if not is_pod_available(new, mrs, now):
                num_unavailable += 1
        else:
            assert old is not None  # exactly one of the two is set here
            if not is_pod_available(old, mrs, now):
                replacements.append(old.metadata.name)  # an unavailable old pod may always go
                num_unavailable += 1
            elif num_unavailable < max_unavailable:
                candidates.append(old.metadata.name)
    remaining = min(max(max_unavailable - num_unavailable, 0), len(candidates))
    return UpdatePlan(pods_to_delete=replacements + candidates[:remaining])


def _update_with_surge(ds: apps_pb2.DaemonSet, fits: Mapping[str, NodeFit],
                       by_node: Mapping[str, Sequence[Any]], hash_: str, generation: int | None,
                       now: float, max_surge: int, desired: int) -> UpdatePlan:
    """Start new pods beside available old ones (up to maxSurge at a time), at once where the old
    one is unavailable; delete an old pod when its node's new pod is available."""
    mrs = ds.spec.min_ready_seconds
    plan = UpdatePlan()
    should_not_run: list[Any] = []
    candidates: list[str] = []
    allowed: list[str] = []
    num_surge = 0
    num_available = 0
    for name in sorted(by_node):
        new, old, ok = find_updated_pods_on_node(by_node[name], hash_, generation)
        if not ok:
            num_surge += 1
            continue
        if old is not None:
            num_available += is_pod_available(old, mrs, now)
        elif new is not None:
            num_available += is_pod_available(new, mrs, now)
        if old is None:
            continue  # manage creates the pod if there is none
        fit = fits.get(name, NodeFit(False, False))
        if new is None:
            if not is_pod_available(old, mrs, now):
                if not fit.should_run:
                    plan.pods_to_delete.append(old.metadata.name)
                else:
                    allowed.append(name)
            elif not fit.should_run:
                should_not_run.append(old)
            elif num_surge < max_surge:
                candidates.append(name)
        elif not is_pod_available(new, mrs, now):
            num_surge += 1  # waiting for the surged pod
        else:
            plan.pods_to_delete.append(old.metadata.name)
    # Keep 100% availability while pods move off nodes that no longer match: delete them only
    # as far as the available pods exceed the desired number.
    deletable = min(num_available - desired, len(should_not_run))
    for pod in should_not_run[:max(deletable, 0)]:
        if not pod.metadata.deletion_timestamp:
            plan.pods_to_delete.append(pod.metadata.name)
    remaining = min(max(max_surge - num_surge, 0), len(candidates))
    plan.nodes_to_create = allowed + candidates[:remaining]
    return plan
