"""The pod re-creation back-off of a Job: base · 2^(n-1) after n failures since the last
success, capped, counted from the last failure's finish time.

The record per Job lives in memory only (as in Kubernetes: a controller restart forgets it;
the failure *counts* are in the Job status and never lost). Base and cap come from the
control plane's --job-backoff-base / --job-backoff-max flags. Pure apart from BackoffStore,
a dict the controller owns; "now" is always passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ketch.api import timeutil
from ketch.v1 import core_pb2

from . import indexed
from .pods import ready_condition


@dataclass(slots=True)
class BackoffRecord:
    key: str
    failures_after_last_success: int = 0
    last_failure_time: float | None = None

    def remaining(self, now: float, base: float, cap: float) -> float:
        return remaining_for_failures(now, base, cap, self.failures_after_last_success, self.last_failure_time)


def remaining_for_failures(now: float, base: float, cap: float, failures: int,
                           last_failure_time: float | None) -> float:
    """Seconds left before a pod may be created again; 0 when it may be created now."""
    if failures <= 0 or last_failure_time is None:
        return 0.0
    delay = base
    for _ in range(1, failures):
        delay *= 2
        if delay >= cap:
            delay = cap
            break
    elapsed = now - last_failure_time
    if delay < elapsed:
        return 0.0
    return delay - elapsed


def remaining_per_index(now: float, base: float, cap: float, last_failed_pod: Any | None) -> float:
    """backoffLimitPerIndex: the delay of one index, from its last failed pod's counters."""
    if last_failed_pod is None:
        return 0.0
    failures = indexed.index_absolute_failure_count(last_failed_pod) + 1
    return remaining_for_failures(now, base, cap, failures, finished_time(last_failed_pod))


def _finish_from_containers(pod: core_pb2.Pod) -> float | None:
    latest: float | None = None
    sidecars = {c.name for c in pod.spec.init_containers
                if c.HasField("restart_policy") and c.restart_policy == "Always"}
    statuses = list(pod.status.container_statuses)
    if sidecars:
        statuses += [s for s in pod.status.init_container_statuses if s.name in sidecars]
    for cs in statuses:
        if not cs.state.HasField("terminated") or not cs.state.terminated.finished_at:
            return None
        t = timeutil.parse(cs.state.terminated.finished_at)
        if latest is None or t > latest:
            latest = t
    return latest


def finished_time(pod: core_pb2.Pod) -> float:
    """When a pod finished: its containers' latest finishedAt if all terminated; else the
    Ready=False transition; else deletionTimestamp minus the grace period; else creation."""
    t = _finish_from_containers(pod)
    if t is not None:
        return t
    c = ready_condition(pod)
    if c is not None and c.status == "False" and c.last_transition_time:
        return timeutil.parse(c.last_transition_time)
    md = pod.metadata
    if md.deletion_timestamp:
        return timeutil.parse(md.deletion_timestamp) - (md.deletion_grace_period_seconds or 0)
    return timeutil.parse(md.creation_timestamp)


class BackoffStore:
    """Back-off records by Job key."""

    def __init__(self) -> None:
        self.records: dict[str, BackoffRecord] = {}

    def get(self, key: str) -> BackoffRecord | None:
        return self.records.get(key)

    def update(self, record: BackoffRecord) -> None:
        self.records[record.key] = BackoffRecord(record.key, record.failures_after_last_success,
                                                 record.last_failure_time)

    def remove(self, key: str) -> None:
        self.records.pop(key, None)

    def new_record(self, key: str, new_succeeded: Sequence[Any], new_failed: Sequence[Any]) -> BackoffRecord:
        """The record after these newly finished pods (not stored until the status is written).

        No new successes: the failures add up. Some: only failures after the latest success count.
        """
        old = self.records.get(key)
        rec = BackoffRecord(key, old.failures_after_last_success, old.last_failure_time) if old else BackoffRecord(key)
        if not new_succeeded and not new_failed:
            return rec
        failed_times = sorted(finished_time(p) for p in new_failed)
        if not new_succeeded:
            rec.failures_after_last_success += len(failed_times)
            rec.last_failure_time = failed_times[-1]
            return rec
        rec.failures_after_last_success = 0
        rec.last_failure_time = None
        last_success = max(finished_time(p) for p in new_succeeded)
        for t in reversed(failed_times):
            if not t > last_success:
                break
            if rec.last_failure_time is None:
                rec.last_failure_time = t
            rec.failures_after_last_success += 1
        return rec
