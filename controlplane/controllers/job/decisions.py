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
from ketch.v1 import batch_pb2, core_pb2

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
    # What manage_job did (job_controller_job_sync_duration_seconds' action): "" nothing,
    # "pods_created" or "pods_deleted".
    action: str = ""
    # (succeeded, failed) as last stored: job_controller_job_pods_finished_total counts what
    # each status write adds to them.
    counted: tuple[int, int] = (0, 0)
    _matches: dict[str, failure_policy.Match] = field(default_factory=dict)

    def __post_init__(self) -> None:
        status = self.job.status
        uncounted = status.uncounted_terminated_pods
        self.uncounted_succeeded = set(uncounted.succeeded)
        self.uncounted_failed = set(uncounted.failed)
        self.counted = (status.succeeded, status.failed)

    def policy_match(self, pod: core_pb2.Pod) -> failure_policy.Match:
        """The pod failure policy's verdict on a failed pod (memoized for this sync)."""
        uid = pod.metadata.uid
        m = self._matches.get(uid)
        if m is None:
            m = failure_policy.match(spec.pod_failure_policy(self.job), pod)
            self._matches[uid] = m
        return m


def is_pod_failed(pod: core_pb2.Pod, job: batch_pb2.Job) -> bool:
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


def classify(job_ctx: SyncContext) -> tuple[list[Any], list[Any]]:
    """One pass over the pods: active, ready and terminating counts, and the newly finished
    pods (still carrying the finalizer, not yet in the uncounted lists; Indexed: valid index).

    Returns (newly succeeded, newly failed) and sets job_ctx.succeeded / job_ctx.failed.
    """
    job = job_ctx.job
    is_idx = spec.is_indexed(job)
    completions = spec.indexed_completions(job) if is_idx else 0
    only_failed = spec.only_replace_failed_pods(job)
    expected = job_ctx.expected_rm_finalizers
    new_succeeded: list[Any] = []
    new_failed: list[Any] = []
    for p in job_ctx.pods:
        md = p.metadata
        phase = p.status.phase
        deleting = bool(md.deletion_timestamp)
        if phase != "Succeeded" and phase != "Failed":
            if not deleting:
                job_ctx.active_pods.append(p)
                if is_ready(p):
                    job_ctx.ready += 1
                continue  # neither finished nor deleted: nothing more to count
            job_ctx.terminating += 1
        if TRACKING_FINALIZER not in md.finalizers or md.uid in expected:
            continue
        if is_idx:
            index = indexed.completion_index(p)
            if index == indexed.UNKNOWN_INDEX or index >= completions:
                continue
        if phase == "Succeeded":
            if md.uid not in job_ctx.uncounted_succeeded:
                new_succeeded.append(p)
        elif (phase == "Failed" or (deleting and not only_failed)) and md.uid not in job_ctx.uncounted_failed:
            new_failed.append(p)
    status = job.status
    job_ctx.succeeded = status.succeeded + len(new_succeeded) + len(job_ctx.uncounted_succeeded)
    job_ctx.failed = (status.failed + sum(1 for p in new_failed if job_ctx.policy_match(p).count_failed)
                 + len(job_ctx.uncounted_failed))
    return new_succeeded, new_failed


def decide_failure(job_ctx: SyncContext) -> float | None:
    """Steps 7a-e; sets job_ctx.finished_condition. Returns when to sync again for the deadline."""
    job, now = job_ctx.job, job_ctx.now
    scm = spec.find_condition(job, spec.SUCCESS_CRITERIA_MET)
    if scm is not None and scm.status == "True":
        job_ctx.finished_condition = copy_of(scm)
        return None
    ft = spec.find_condition(job, spec.FAILURE_TARGET)
    if ft is not None and ft.status == "True":
        job_ctx.finished_condition = new_condition(spec.FAILED, "True", ft.reason, ft.message, now)
        return None
    if spec.pod_failure_policy(job) is not None:
        for p in job_ctx.pods:
            if is_pod_failed(p, job):
                m = job_ctx.policy_match(p)
                if m.message is not None:
                    job_ctx.finished_condition = failure_target("PodFailurePolicy", m.message, now)
                    return None
    if job_ctx.failed > spec.backoff_limit(job) or past_backoff_limit_on_failure(job, job_ctx.pods):
        job_ctx.finished_condition = failure_target("BackoffLimitExceeded",
                                                    "Job has reached the specified backoff limit", now)
    elif job.spec.HasField("active_deadline_seconds") and not spec.suspended(job) and job.status.start_time:
        elapsed = now - timeutil.parse(job.status.start_time)
        if elapsed >= job.spec.active_deadline_seconds:
            job_ctx.finished_condition = failure_target("DeadlineExceeded",
                                                        "Job was active longer than specified deadline", now)
        else:
            return job.spec.active_deadline_seconds - elapsed
    return None


def is_index_failed(job_ctx: SyncContext, pod: core_pb2.Pod) -> bool:
    """A counted failure of a pod that had used up its index's backoffLimitPerIndex, or FailIndex."""
    job = job_ctx.job
    counted = False
    if is_pod_failed(pod, job):
        if spec.pod_failure_policy(job) is not None:
            m = job_ctx.policy_match(pod)
            if m.action == failure_policy.FAIL_INDEX:
                return True
            counted = m.count_failed
        else:
            counted = True
    return counted and indexed.index_failure_count(pod) >= job.spec.backoff_limit_per_index


def decide_indexed(job_ctx: SyncContext) -> None:
    """Steps 7f-g for Indexed Jobs: succeeded and failed indexes, per-index limits, success policy."""
    job, now = job_ctx.job, job_ctx.now
    completions = spec.indexed_completions(job)
    job_ctx.prev_succeeded_indexes = Intervals.parse(job.status.completed_indexes, completions)
    valid = [(indexed.completion_index(p), p) for p in job_ctx.pods if has_tracking_finalizer(p)]
    valid = [(index, p) for index, p in valid if index != indexed.UNKNOWN_INDEX and index < completions]
    new_succeeded = sorted({index for index, p in valid if p.status.phase == "Succeeded"})
    job_ctx.succeeded_indexes = job_ctx.prev_succeeded_indexes.with_indexes(new_succeeded)
    job_ctx.succeeded = job_ctx.succeeded_indexes.total()
    if spec.has_backoff_limit_per_index(job):
        prev_failed = Intervals.parse(
            job.status.failed_indexes if job.status.HasField("failed_indexes") else "", completions)
        failed_now = {index for index, p in valid if is_index_failed(job_ctx, p)}
        job_ctx.failed_indexes = prev_failed.with_indexes(sorted(failed_now))
        if job_ctx.finished_condition is None:
            n_failed = job_ctx.failed_indexes.total()
            if job.spec.HasField("max_failed_indexes") and n_failed > job.spec.max_failed_indexes:
                job_ctx.finished_condition = failure_target(
                    "MaxFailedIndexesExceeded", "Job has exceeded the specified maximal number of failed indexes", now)
            elif n_failed > 0 and n_failed + job_ctx.succeeded_indexes.total() >= completions:
                job_ctx.finished_condition = failure_target("FailedIndexes", "Job has failed indexes", now)
        job_ctx.delayed_deletion_per_index = pods_with_delayed_deletion(job_ctx, valid)
    if job_ctx.finished_condition is None:
        msg, met = success_policy.match(spec.success_policy(job), completions, job_ctx.succeeded_indexes)
        if met:
            job_ctx.finished_condition = new_condition(spec.SUCCESS_CRITERIA_MET, "True", "SuccessPolicy", msg, now)


def pods_with_delayed_deletion(job_ctx: SyncContext, valid: list[tuple[int, Any]]) -> dict[int, Any]:
    """Per index, the last failed pod whose release waits for its replacement to exist, so
    that the replacement inherits its failure counts."""
    active_ix = indexed.indexes_of(job_ctx.active_pods)
    failed_ix = job_ctx.failed_indexes or Intervals()
    out: dict[int, Any] = {}
    for index, p in valid:
        if p.metadata.uid in job_ctx.expected_rm_finalizers or not is_pod_failed(p, job_ctx.job):
            continue
        if job_ctx.succeeded_indexes.has(index) or failed_ix.has(index) or index in active_ix:
            continue
        last = out.get(index)
        if last is None or (indexed.index_absolute_failure_count(last) <= indexed.index_absolute_failure_count(p)
                            and not finished_time(p) < finished_time(last)):
            out[index] = p
    return out


def want_active(job_ctx: SyncContext) -> int:
    """How many pods should be active: parallelism, never more than the completions left;
    work-queue mode starts no more once any pod succeeded."""
    job = job_ctx.job
    active = len(job_ctx.active_pods)
    parallelism = spec.parallelism(job)
    completions = spec.completions(job)
    if completions is None:
        return active if job_ctx.succeeded > 0 else parallelism
    return max(0, min(completions - job_ctx.succeeded, parallelism))


def is_complete(job_ctx: SyncContext, active: int) -> bool:
    completions = spec.completions(job_ctx.job)
    if completions is None:
        return job_ctx.succeeded > 0 and active == 0
    return job_ctx.succeeded >= completions and active == 0


def pending_indexes(job_ctx: SyncContext, count: int) -> list[int]:
    """The lowest indexes not succeeded, not active, not failed (nor terminating, when only
    failed pods are replaced)."""
    non_pending = job_ctx.succeeded_indexes.with_indexes(sorted(indexed.indexes_of(job_ctx.active_pods)))
    if spec.only_replace_failed_pods(job_ctx.job):
        terminating = [p for p in job_ctx.pods if p.metadata.deletion_timestamp
                       and p.status.phase not in ("Succeeded", "Failed")]
        non_pending = non_pending.with_indexes(sorted(indexed.indexes_of(terminating)))
    if job_ctx.failed_indexes is not None:
        non_pending = non_pending.merge(job_ctx.failed_indexes)
    return indexed.first_pending_indexes(count, spec.indexed_completions(job_ctx.job), non_pending)


def new_index_failure_counts(job_ctx: SyncContext, replaced: Any | None) -> tuple[int, int]:
    """The failure-count annotations of a pod replacing `replaced` in its index."""
    if replaced is None:
        return 0, 0
    failures = indexed.index_failure_count(replaced)
    ignored = indexed.index_ignored_failure_count(replaced)
    if job_ctx.policy_match(replaced).count_failed:
        failures += 1
    else:
        ignored += 1
    return failures, ignored


def can_remove_finalizer(job_ctx: SyncContext, pod: core_pb2.Pod, considered_failed: bool) -> bool:
    """A pod is released when the Job is finishing or deleted, when it succeeded, or when it
    failed (except the last failed pod of an index, until its replacement exists, and a pod
    matching a FailJob rule, until the Job is finishing)."""
    if job_ctx.job.metadata.deletion_timestamp or job_ctx.finished_condition is not None:
        return True
    if pod.status.phase == "Succeeded":
        return True
    if not considered_failed:
        return False
    if job_ctx.policy_match(pod).action == failure_policy.FAIL_JOB:
        # Not finishing yet although this pod matched FailJob: the sync that saw it had to
        # postpone (a delete failed, or expectations unmet). Kubernetes' next sync finds the pod
        # again among all the Job's pods; ours skip released ones, so it keeps its finalizer
        # until the FailureTarget condition is written (the finishing case above).
        return False
    if spec.has_backoff_limit_per_index(job_ctx.job):
        waiting = job_ctx.delayed_deletion_per_index.get(indexed.completion_index(pod))
        if waiting is not None and waiting.metadata.uid == pod.metadata.uid:
            return False
    return True
