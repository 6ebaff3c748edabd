"""The pure part of one Job sync: which pods are active, newly finished, counted; whether the
Job is finishing (and why); which indexes have succeeded or failed; which to start next.

Everything here reads a SyncContext (the Job copy, its pods from the cache, "now") and writes
only into it; the controller does the I/O around it. The order of the checks is Kubernetes'
syncJob step 7: an existing interim condition, a FailJob rule, the backoff limit, the
deadline, per-index limits, the success policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ketch.api import timeutil
from ketch.client.cache import copy_of
from ketch.v1 import batch_pb2

from . import failure_policy, indexed, spec, success_policy
from .backoff import BackoffRecord, finished_time
from .indexed import Intervals
from .pods import TRACKING_FINALIZER, has_tracking_finalizer, is_ready, restart_sum

REASON_COMPLETIONS_REACHED = "CompletionsReached"
MSG_COMPLETIONS_REACHED = "Reached expected number of succeeded pods"


def new_condition(ctype: str, status: str, reason: str, message: str, now: float) -> batch_pb2.JobCondition:
    stamp = timeutil.format(now)
    return batch_pb2.JobCondition(type=ctype, status=status, reason=reason, message=message,
                                  last_probe_time=stamp, last_transition_time=stamp)


def failure_target(reason: str, message: str, now: float) -> batch_pb2.JobCondition:
    return new_condition(spec.FAILURE_TARGET, "True", reason, message, now)


def ensure_condition(status: batch_pb2.JobStatus, ctype: str, cstatus: str, reason: str, message: str,
                     now: float) -> bool:
    """Kubernetes' ensureJobConditionStatus: update in place (new times) or append; a False
    condition is never appended. Returns whether anything changed."""
    for c in status.conditions:
        if c.type == ctype:
            if c.status != cstatus or c.reason != reason or c.message != message:
                c.CopyFrom(new_condition(ctype, cstatus, reason, message, now))
                return True
            return False
    if cstatus != "False":
        status.conditions.append(new_condition(ctype, cstatus, reason, message, now))
        return True
    return False


@dataclass
class SyncContext:
    """What one sync of one Job knows (Kubernetes' syncJobCtx)."""

    key: str
    job: batch_pb2.Job
    pods: list[Any]
    now: float
    expected_rm_finalizers: frozenset[str] = frozenset()
    active_pods: list[Any] = field(default_factory=list)
    uncounted_succeeded: set[str] = field(default_factory=set)
    uncounted_failed: set[str] = field(default_factory=set)
    ready: int = 0
    terminating: int = 0
    succeeded: int = 0
    failed: int = 0
    finished_condition: batch_pb2.JobCondition | None = None
    prev_succeeded_indexes: Intervals = field(default_factory=Intervals)
    succeeded_indexes: Intervals = field(default_factory=Intervals)
    failed_indexes: Intervals | None = None
    new_backoff_record: BackoffRecord | None = None
    delayed_deletion_per_index: dict[int, Any] = field(default_factory=dict)
    _matches: dict[str, failure_policy.Match] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unc = self.job.status.uncounted_terminated_pods
        self.uncounted_succeeded = set(unc.succeeded)
        self.uncounted_failed = set(unc.failed)

    def policy_match(self, pod: Any) -> failure_policy.Match:
        """The pod failure policy's verdict on a failed pod (memoized for this sync)."""
        uid = pod.metadata.uid
        m = self._matches.get(uid)
        if m is None:
            m = failure_policy.match(spec.pod_failure_policy(self.job), pod)
            self._matches[uid] = m
        return m


def is_pod_failed(pod: Any, job: batch_pb2.Job) -> bool:
    """Failed phase; or, unless only failed pods are replaced, deleted before succeeding."""
    phase = pod.status.phase
    if phase == "Failed":
        return True
    if spec.only_replace_failed_pods(job):
        return False
    return bool(pod.metadata.deletion_timestamp) and phase != "Succeeded"


def past_backoff_limit_on_failure(job: batch_pb2.Job, pods: Sequence[Any]) -> bool:
    """restartPolicy OnFailure: restarts in place of Pending/Running pods count as failures."""
    if job.spec.template.spec.restart_policy != "OnFailure":
        return False
    total = sum(restart_sum(p) for p in pods if p.status.phase in ("Pending", "Running"))
    limit = spec.backoff_limit(job)
    return total > 0 if limit == 0 else total >= limit


def classify(jc: SyncContext) -> tuple[list[Any], list[Any]]:
    """One pass over the pods: active, ready and terminating counts, and the newly finished
    pods (still carrying the finalizer, not yet in the uncounted lists; Indexed: valid index).

    Returns (newly succeeded, newly failed) and sets jc.succeeded / jc.failed.
    """
    job = jc.job
    is_idx = spec.is_indexed(job)
    completions = spec.indexed_completions(job) if is_idx else 0
    only_failed = spec.only_replace_failed_pods(job)
    expected = jc.expected_rm_finalizers
    new_succeeded: list[Any] = []
    new_failed: list[Any] = []
    for p in jc.pods:
        md = p.metadata
        phase = p.status.phase
        deleting = bool(md.deletion_timestamp)
        if phase != "Succeeded" and phase != "Failed":
            if deleting:
                jc.terminating += 1
            else:
                jc.active_pods.append(p)
                if is_ready(p):
                    jc.ready += 1
        if TRACKING_FINALIZER not in md.finalizers or md.uid in expected:
            continue
        if is_idx:
            ix = indexed.completion_index(p)
            if ix == indexed.UNKNOWN_INDEX or ix >= completions:
                continue
        if phase == "Succeeded":
            if md.uid not in jc.uncounted_succeeded:
                new_succeeded.append(p)
        elif (phase == "Failed" or (deleting and not only_failed)) and md.uid not in jc.uncounted_failed:
            new_failed.append(p)
    status = job.status
    jc.succeeded = status.succeeded + len(new_succeeded) + len(jc.uncounted_succeeded)
    jc.failed = (status.failed + sum(1 for p in new_failed if jc.policy_match(p).count_failed)
                 + len(jc.uncounted_failed))
    return new_succeeded, new_failed


def decide_failure(jc: SyncContext) -> float | None:
    """Steps 7a-e; sets jc.finished_condition. Returns when to sync again for the deadline."""
    job, now = jc.job, jc.now
    scm = spec.find_condition(job, spec.SUCCESS_CRITERIA_MET)
    if scm is not None and scm.status == "True":
        jc.finished_condition = copy_of(scm)
        return None
    ft = spec.find_condition(job, spec.FAILURE_TARGET)
    if ft is not None and ft.status == "True":
        jc.finished_condition = new_condition(spec.FAILED, "True", ft.reason, ft.message, now)
        return None
    if spec.pod_failure_policy(job) is not None:
        for p in jc.pods:
            if is_pod_failed(p, job):
                m = jc.policy_match(p)
                if m.message is not None:
                    jc.finished_condition = failure_target("PodFailurePolicy", m.message, now)
                    return None
    if jc.failed > spec.backoff_limit(job) or past_backoff_limit_on_failure(job, jc.pods):
        jc.finished_condition = failure_target("BackoffLimitExceeded", "Job has reached the specified backoff limit",
                                               now)
    elif job.spec.HasField("active_deadline_seconds") and not spec.suspended(job) and job.status.start_time:
        elapsed = now - timeutil.parse(job.status.start_time)
        if elapsed >= job.spec.active_deadline_seconds:
            jc.finished_condition = failure_target("DeadlineExceeded", "Job was active longer than specified deadline",
                                                   now)
        else:
            return job.spec.active_deadline_seconds - elapsed
    return None


def is_index_failed(jc: SyncContext, pod: Any) -> bool:
    """A counted failure of a pod that had used up its index's backoffLimitPerIndex, or FailIndex."""
    job = jc.job
    counted = False
    if is_pod_failed(pod, job):
        if spec.pod_failure_policy(job) is not None:
            m = jc.policy_match(pod)
            if m.action == failure_policy.FAIL_INDEX:
                return True
            counted = m.count_failed
        else:
            counted = True
    return counted and indexed.index_failure_count(pod) >= job.spec.backoff_limit_per_index


def decide_indexed(jc: SyncContext) -> None:
    """Steps 7f-g for Indexed Jobs: succeeded and failed indexes, per-index limits, success policy."""
    job, now = jc.job, jc.now
    completions = spec.indexed_completions(job)
    jc.prev_succeeded_indexes = Intervals.parse(job.status.completed_indexes, completions)
    valid = [(indexed.completion_index(p), p) for p in jc.pods if has_tracking_finalizer(p)]
    valid = [(ix, p) for ix, p in valid if ix != indexed.UNKNOWN_INDEX and ix < completions]
    new_succeeded = sorted({ix for ix, p in valid if p.status.phase == "Succeeded"})
    jc.succeeded_indexes = jc.prev_succeeded_indexes.with_indexes(new_succeeded)
    jc.succeeded = jc.succeeded_indexes.total()
    if spec.has_backoff_limit_per_index(job):
        prev_failed = Intervals.parse(
            job.status.failed_indexes if job.status.HasField("failed_indexes") else "", completions)
        jc.failed_indexes = prev_failed.with_indexes(sorted({ix for ix, p in valid if is_index_failed(jc, p)}))
        if jc.finished_condition is None:
            n_failed = jc.failed_indexes.total()
            if job.spec.HasField("max_failed_indexes") and n_failed > job.spec.max_failed_indexes:
                jc.finished_condition = failure_target(
                    "MaxFailedIndexesExceeded", "Job has exceeded the specified maximal number of failed indexes", now)
            elif n_failed > 0 and n_failed + jc.succeeded_indexes.total() >= completions:
                jc.finished_condition = failure_target("FailedIndexes", "Job has failed indexes", now)
        jc.delayed_deletion_per_index = pods_with_delayed_deletion(jc, valid)
    if jc.finished_condition is None:
        msg, met = success_policy.match(spec.success_policy(job), completions, jc.succeeded_indexes)
        if met:
            jc.finished_condition = new_condition(spec.SUCCESS_CRITERIA_MET, "True", "SuccessPolicy", msg, now)


def pods_with_delayed_deletion(jc: SyncContext, valid: list[tuple[int, Any]]) -> dict[int, Any]:
    """Per index, the last failed pod whose release waits for its replacement to exist, so
    that the replacement inherits its failure counts."""
    active_ix = indexed.indexes_of(jc.active_pods)
    failed_ix = jc.failed_indexes or Intervals()
    out: dict[int, Any] = {}
    for ix, p in valid:
        if p.metadata.uid in jc.expected_rm_finalizers or not is_pod_failed(p, jc.job):
            continue
        if jc.succeeded_indexes.has(ix) or failed_ix.has(ix) or ix in active_ix:
            continue
        last = out.get(ix)
        if last is None or (indexed.index_absolute_failure_count(last) <= indexed.index_absolute_failure_count(p)
                            and not finished_time(p) < finished_time(last)):
            out[ix] = p
    return out


def want_active(jc: SyncContext) -> int:
    """How many pods should be active: parallelism, never more than the completions left;
    work-queue mode starts no more once any pod succeeded."""
    job = jc.job
    active = len(jc.active_pods)
    parallelism = spec.parallelism(job)
    completions = spec.completions(job)
    if completions is None:
        return active if jc.succeeded > 0 else parallelism
    return max(0, min(completions - jc.succeeded, parallelism))


def is_complete(jc: SyncContext, active: int) -> bool:
    completions = spec.completions(jc.job)
    if completions is None:
        return jc.succeeded > 0 and active == 0
    return jc.succeeded >= completions and active == 0


def pending_indexes(jc: SyncContext, count: int) -> list[int]:
    """The lowest indexes not succeeded, not active, not failed (nor terminating, when only
    failed pods are replaced)."""
    non_pending = jc.succeeded_indexes.with_indexes(sorted(indexed.indexes_of(jc.active_pods)))
    if spec.only_replace_failed_pods(jc.job):
        terminating = [p for p in jc.pods if p.metadata.deletion_timestamp
                       and p.status.phase not in ("Succeeded", "Failed")]
        non_pending = non_pending.with_indexes(sorted(indexed.indexes_of(terminating)))
    if jc.failed_indexes is not None:
        non_pending = non_pending.merge(jc.failed_indexes)
    return indexed.first_pending_indexes(count, spec.indexed_completions(jc.job), non_pending)


def new_index_failure_counts(jc: SyncContext, replaced: Any | None) -> tuple[int, int]:
    """The failure-count annotations of a pod replacing `replaced` in its index."""
    if replaced is None:
        return 0, 0
    failures = indexed.index_failure_count(replaced)
    ignored = indexed.index_ignored_failure_count(replaced)
    if jc.policy_match(replaced).count_failed:
        failures += 1
    else:
        ignored += 1
    return failures, ignored


def can_remove_finalizer(jc: SyncContext, pod: Any, considered_failed: bool) -> bool:
    """A pod is released when the Job is finishing or deleted, when it succeeded, or when it
    failed (except the last failed pod of an index, until its replacement exists)."""
    if jc.job.metadata.deletion_timestamp or jc.finished_condition is not None:
        return True
    if pod.status.phase == "Succeeded":
        return True
    if not considered_failed:
        return False
    if spec.has_backoff_limit_per_index(jc.job):
        waiting = jc.delayed_deletion_per_index.get(indexed.completion_index(pod))
        if waiting is not None and waiting.metadata.uid == pod.metadata.uid:
            return False
    return True
