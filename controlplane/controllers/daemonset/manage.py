"""Per-node decisions of a DaemonSet sync, and its status counts. Pure, with the clock passed in.

`manage` is Kubernetes' manage/podsShouldBeOnNode: which nodes need a pod, which pods must go
(failed ones with back-off, succeeded ones, extras beyond one per node, pods on nodes that no
longer match); `compute_status` is updateDaemonSetStatus's counting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ketch.client.flowcontrol import Backoff
from ketch.v1 import apps_pb2, core_pb2

from .predicates import is_pod_available, is_pod_ready, is_pod_updated, pod_sort_key
from .update import NodeFit, allows_surge

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 900.0


def failed_pods_backoff() -> Backoff:
    """Kubernetes' failedPodsBackoff: a node's failed daemon pods are replaced after 1 s,
    doubling to 15 min."""
    return Backoff(BACKOFF_INITIAL, BACKOFF_MAX)


@dataclass
class ManagePlan:
    nodes_needing_pods: list[str] = field(default_factory=list)
    pods_to_delete: list[Any] = field(default_factory=list)
    # Pods on nodes that are gone: deleted at once (grace 0), as no agent will confirm.
    orphaned_pods: list[Any] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue_after: float | None = None

    def requeue(self, delay: float) -> None:
        if self.requeue_after is None or delay < self.requeue_after:
            self.requeue_after = delay


def failed_pods_backoff_key(ds: apps_pb2.DaemonSet, node: str) -> str:
    return f"{ds.metadata.uid}/{ds.status.observed_generation}/{node}"


def manage(ds: apps_pb2.DaemonSet, fits: Mapping[str, NodeFit], node_pods: Mapping[str, Sequence[Any]],
           hash_: str, now: float, backoff: Backoff) -> ManagePlan:
    """What to create and delete so each node has exactly the pods it should."""
    plan = ManagePlan()
    surge = allows_surge(ds)
    for name in sorted(fits):
        _manage_node(ds, name, fits[name], node_pods.get(name), hash_, now, backoff, surge, plan)
    for name in sorted(node_pods):
        if name in fits:
            continue
        # Pods bound (or pinned) to a node that does not exist: nothing will ever run them.
        plan.orphaned_pods.extend(p for p in node_pods[name] if not _terminal_and_deleting(p))
    return plan


def _terminal_and_deleting(pod: core_pb2.Pod) -> bool:
    return bool(pod.metadata.deletion_timestamp) and pod.status.phase in ("Succeeded", "Failed")


def _manage_node(ds: apps_pb2.DaemonSet, node: str, fit: NodeFit, pods: Sequence[Any] | None, hash_: str,
                 now: float, backoff: Backoff, surge: bool, plan: ManagePlan) -> None:
    if fit.should_run and pods is None:
        plan.nodes_needing_pods.append(node)
        return
    if pods is None:
        return
    if not fit.should_continue:
        plan.pods_to_delete.extend(p for p in pods if not p.metadata.deletion_timestamp)
        return
    running: list[Any] = []
    for pod in pods:
        if pod.metadata.deletion_timestamp:
            continue
        ref = f"{pod.metadata.namespace}/{pod.metadata.name}"
        if pod.status.phase == "Failed":
            # Avoid hot-looping against an agent that rejects the pod: back off per node.
            key = failed_pods_backoff_key(ds, node)
            if backoff.in_backoff_since_update(key, now):
                plan.requeue(backoff.get(key))
                continue
            backoff.next(key, now)
            plan.events.append(("Warning", "FailedDaemonPod",
                                f"Found failed daemon pod {ref} on node {node}, will try to kill it"))
            plan.pods_to_delete.append(pod)
        elif pod.status.phase == "Succeeded":
            plan.events.append(("Normal", "SucceededDaemonPod",
                                f"Found succeeded daemon pod {ref} on node {node}, will try to delete it"))
            plan.pods_to_delete.append(pod)
        else:
            running.append(pod)
    running.sort(key=pod_sort_key)
    if not surge:
        plan.pods_to_delete.extend(running[1:])  # keep the oldest
        return
    if len(running) <= 1:
        if not running and fit.should_run:
            plan.nodes_needing_pods.append(node)
        return
    # Surging: keep at most the oldest new pod and the oldest old pod; the old one goes once the
    # new one is available (or at once if the old one is not ready).
    oldest_new = oldest_old = None
    for pod in running:
        if pod.metadata.labels.get("controller-revision-hash") == hash_:
            if oldest_new is None:
                oldest_new = pod
                continue
        elif oldest_old is None:
            oldest_old = pod
            continue
        plan.pods_to_delete.append(pod)
    if oldest_new is not None and oldest_old is not None and (
            not is_pod_ready(oldest_old) or is_pod_available(oldest_new, ds.spec.min_ready_seconds, now)):
        plan.pods_to_delete.append(oldest_old)


# ---------------------------------------------------------------------------------------------
# Status


@dataclass(frozen=True)
class StatusCounts:
    desired_number_scheduled: int = 0
    current_number_scheduled: int = 0
    number_misscheduled: int = 0
    number_ready: int = 0
    updated_number_scheduled: int = 0
    number_available: int = 0
    number_unavailable: int = 0


def compute_status(ds: apps_pb2.DaemonSet, fits: Mapping[str, NodeFit], node_pods: Mapping[str, Sequence[Any]],
                   hash_: str, generation: int | None, now: float) -> StatusCounts:
    desired = current = mis = ready = updated = available = 0
    for name, fit in fits.items():
        pods = node_pods.get(name) or ()
        if fit.should_run:
            desired += 1
            if not pods:
                continue
            current += 1
            pod = min(pods, key=pod_sort_key)
            if is_pod_ready(pod):
                ready += 1
                if is_pod_available(pod, ds.spec.min_ready_seconds, now):
                    available += 1
            if is_pod_updated(pod, hash_, generation):
                updated += 1
        elif pods:
            mis += 1
    return StatusCounts(desired, current, mis, ready, updated, available, desired - available)


def status_differs(ds: apps_pb2.DaemonSet, counts: StatusCounts, observed_generation: int) -> bool:
    st = ds.status
    return (
        st.desired_number_scheduled != counts.desired_number_scheduled
        or not st.HasField("desired_number_scheduled")
        or st.current_number_scheduled != counts.current_number_scheduled
        or st.number_misscheduled != counts.number_misscheduled
        or st.number_ready != counts.number_ready
        or st.updated_number_scheduled != counts.updated_number_scheduled
        or st.number_available != counts.number_available
        or st.number_unavailable != counts.number_unavailable
        or st.observed_generation != observed_generation
    )


def apply_status(status: apps_pb2.DaemonSetStatus, counts: StatusCounts, observed_generation: int) -> None:
    status.desired_number_scheduled = counts.desired_number_scheduled
    status.current_number_scheduled = counts.current_number_scheduled
    status.number_misscheduled = counts.number_misscheduled
    status.number_ready = counts.number_ready
    status.updated_number_scheduled = counts.updated_number_scheduled
    status.number_available = counts.number_available
    status.number_unavailable = counts.number_unavailable
    status.observed_generation = observed_generation
