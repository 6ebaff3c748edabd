"""One sync of the Job controller against seeded caches and a FakePodControl, table-driven as
Kubernetes' TestControllerSyncJob: given a Job and its pods, which pods are created and
deleted, which finalizers are removed, and what status (counts, conditions) is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from controlplane.controllers.job.backoff import BackoffRecord
from controlplane.controllers.job.indexed import COMPLETION_INDEX_KEY, INDEX_FAILURE_COUNT_KEY
from controlplane.controllers.job.podcontrol import FakePodControl
from ketch.api import errors
from ketch.api.manifest import decode_into
from ketch.v1 import batch_pb2

from .builders import NOW, conditions, harness, new_job, new_pod, pods, ts

IDX = "Indexed"
SCM_DONE = (("SuccessCriteriaMet", "True", "CompletionsReached"), ("Complete", "True", "CompletionsReached"))


def backoff_exceeded(terminal: bool = True) -> tuple[tuple[str, str, str], ...]:
    interim = ("FailureTarget", "True", "BackoffLimitExceeded")
    return (interim, ("Failed", "True", "BackoffLimitExceeded")) if terminal else (interim,)


@dataclass(frozen=True)
class Case:
    name: str
    # job setup
    parallelism: int | None = None
    completions: int | None = None
    backoff_limit: int | None = 6
    mode: str | None = None
    suspend: bool | None = None
    was_suspended: bool = False
    deleting_job: bool = False
    restart_policy: str = "Never"
    spec: dict[str, Any] = field(default_factory=dict)  # more spec fields, in manifest (camelCase) form
    status: dict[str, Any] = field(default_factory=dict)  # initial status, manifest form
    pod_limit: int | None = None
    pod_control_error: bool = False
    backoff_failures: int = 0  # a failure just now in the back-off record
    unsatisfied_expectations: bool = False
    # pods: counts of plain pods, and pods given one by one as (phase, options)
    pending: int = 0
    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    terminating: int = 0
    pod_list: tuple[tuple[str, dict[str, Any]], ...] = ()
    # expectations
    expected_creations: int = 0
    expected_deletions: int = 0
    expected_finalizer_strips_on_delete: int | None = None
    expected_active: int = 0
    expected_ready: int = 0
    expected_succeeded: int = 0
    expected_failed: int = 0
    expected_terminating: int = 0
    expected_conditions: tuple[tuple[str, str, str], ...] = ()
    expected_completed_indexes: str = ""
    expected_failed_indexes: str | None = None
    expected_created_indexes: tuple[int, ...] = ()
    expected_created_failure_counts: tuple[str, ...] = ()  # job-index-failure-count of created pods
    expected_finalizers_removed: int | None = None
    expected_uncounted_failed: int | None = None
    expected_error: bool = False
    expected_events: tuple[str, ...] = ()
    expected_start_time_reset: bool = False
    expected_messages: tuple[str, ...] = ()


CASES = [
    Case("job start", parallelism=2, completions=5, expected_creations=2, expected_active=2),
    Case("work-queue job start", parallelism=2, expected_creations=2, expected_active=2),
    Case("pending pods", parallelism=2, completions=5, pending=2, expected_active=2),
    Case("correct number of pods", parallelism=2, completions=5, ready=2, expected_active=2, expected_ready=2),
    Case("work-queue job: correct number of pods", parallelism=2, active=2, expected_active=2),
    Case("too few active pods", parallelism=2, completions=5, active=1, succeeded=1, expected_creations=1,
         expected_active=2, expected_succeeded=1, expected_finalizers_removed=1),
    Case("too few active pods and active back-off", parallelism=1, completions=1, backoff_failures=1),
    Case("too many active pods", parallelism=2, completions=5, active=3, expected_deletions=1,
         expected_finalizer_strips_on_delete=1, expected_active=2, expected_terminating=1),
    Case("too many active pods, with controller error", parallelism=2, completions=5, active=3,
         pod_control_error=True, expected_active=3, expected_error=True),
    Case("failed + succeeded pods: the back-off resets", parallelism=2, completions=5, active=1, succeeded=1,
         failed=1, expected_creations=1, expected_active=2, expected_succeeded=1, expected_failed=1,
         expected_finalizers_removed=2),
    Case("new failed pod", parallelism=2, completions=5, active=1, failed=1, expected_creations=1,
         expected_active=2, expected_failed=1, expected_finalizers_removed=1),
    Case("only a new failed pod, with controller error", parallelism=2, completions=5, active=1, failed=1,
         pod_control_error=True, expected_active=1, expected_failed=1, expected_uncounted_failed=1,
         expected_error=True),
    Case("job finish", parallelism=2, completions=5, succeeded=5, expected_succeeded=5,
         expected_conditions=SCM_DONE, expected_events=("Completed",), expected_finalizers_removed=5),
    Case("work-queue job finishing", parallelism=2, active=1, succeeded=1, expected_active=1,
         expected_succeeded=1),
    Case("work-queue job: all finished", parallelism=2, succeeded=2, expected_succeeded=2,
         expected_conditions=SCM_DONE),
    Case("work-queue job: all finished despite one failure", parallelism=2, succeeded=1, failed=1,
         expected_succeeded=1, expected_failed=1, expected_conditions=SCM_DONE),
    Case("more active pods than parallelism", parallelism=2, completions=5, active=10, expected_deletions=8,
         expected_active=2, expected_terminating=8),
    Case("more active pods than remaining completions", parallelism=3, completions=4, active=3, succeeded=2,
         expected_deletions=1, expected_active=2, expected_succeeded=2, expected_terminating=1),
    Case("status change", parallelism=2, completions=5, active=2, succeeded=2, expected_active=2,
         expected_succeeded=2),
    Case("deleting job: nothing created, every pod released", deleting_job=True, parallelism=2, completions=5,
         pending=1, active=1, succeeded=1, expected_active=2, expected_succeeded=1, expected_finalizers_removed=3),
    Case("limited pods: slow start stops at the first failing batch", parallelism=100, completions=200,
         pod_limit=10, expected_creations=10, expected_active=10, expected_error=True),
    Case("too many job failures", parallelism=2, completions=5, failed=1, backoff_limit=0, expected_failed=1,
         expected_conditions=backoff_exceeded(), expected_events=("BackoffLimitExceeded",)),
    Case("job failure with active pods: they are deleted and counted, Failed waits for them",
         parallelism=2, completions=5, active=2, failed=1, backoff_limit=0, expected_deletions=2,
         expected_finalizer_strips_on_delete=0, expected_failed=3, expected_terminating=2,
         expected_conditions=backoff_exceeded(terminal=False)),
    Case("suspending a job with satisfied expectations", suspend=True, parallelism=2, completions=4, active=2,
         expected_deletions=2, expected_finalizer_strips_on_delete=2, expected_terminating=2,
         expected_conditions=(("Suspended", "True", "JobSuspended"),), expected_events=("Suspended",)),
    Case("suspending a job with unsatisfied expectations", suspend=True, parallelism=2, completions=4, active=2,
         unsatisfied_expectations=True, expected_active=2),
    Case("resuming a suspended job", was_suspended=True, suspend=False, parallelism=2, completions=4,
         expected_creations=2, expected_active=2, expected_conditions=(("Suspended", "False", "JobResumed"),),
         expected_events=("Resumed",), expected_start_time_reset=True),
    Case("suspending a deleted job", deleting_job=True, suspend=True, parallelism=2, completions=4, active=2,
         expected_active=2, expected_finalizers_removed=2),
    Case("created suspended: no pods, no start time", suspend=True, parallelism=2, completions=4,
         expected_conditions=(("Suspended", "True", "JobSuspended"),), expected_events=("Suspended",)),
    # -- Indexed --
    Case("indexed job start", parallelism=2, completions=5, mode=IDX, expected_creations=2,
         expected_active=2, expected_created_indexes=(0, 1)),
    Case("indexed job completed", parallelism=2, completions=3, mode=IDX,
         pod_list=(("Succeeded", {"index": 0}), ("Succeeded", {"index": 1}), ("Succeeded", {"index": 2})),
         expected_succeeded=3, expected_completed_indexes="0-2", expected_conditions=SCM_DONE),
    Case("indexed job: a repeated completed index counts once", parallelism=2, completions=3, mode=IDX,
         pod_list=(("Succeeded", {"index": 0}), ("Succeeded", {"index": 1}), ("Succeeded", {"index": 1})),
         expected_creations=1, expected_created_indexes=(2,), expected_active=1, expected_succeeded=2,
         expected_completed_indexes="0,1"),
    Case("indexed job: some running and completed pods", parallelism=8, completions=6, mode=IDX,
         pod_list=(("Running", {"index": 0}), ("Succeeded", {"index": 1}), ("Succeeded", {"index": 3}),
                   ("Running", {"index": 4}), ("Succeeded", {"index": 5})),
         expected_creations=1, expected_created_indexes=(2,), expected_active=3, expected_succeeded=3,
         expected_completed_indexes="1,3,5"),
    Case("indexed job: failed indexes are started again", parallelism=3, completions=5, mode=IDX,
         pod_list=(("Failed", {"index": 0}), ("Succeeded", {"index": 1}), ("Failed", {"index": 2})),
         expected_creations=3, expected_created_indexes=(0, 2, 3), expected_active=3, expected_succeeded=1,
         expected_failed=2, expected_completed_indexes="1"),
    Case("indexed job: pods without an index are deleted", parallelism=2, completions=5, mode=IDX,
         pod_list=(("Running", {"index": 0}), ("Running", {}), ("Pending", {})),
         expected_deletions=2, expected_active=1, expected_terminating=2),
    Case("indexed job: repeated indexes are deleted", parallelism=5, completions=5, mode=IDX,
         pod_list=(("Succeeded", {"index": 0}), ("Running", {"index": 1}), ("Running", {"index": 1}),
                   ("Running", {"index": 2}), ("Pending", {"index": 2})),
         expected_deletions=2, expected_active=2, expected_succeeded=1, expected_completed_indexes="0",
         expected_terminating=2),
    Case("indexed job: indexes out of range are ignored or deleted", parallelism=2, completions=5, mode=IDX,
         pod_list=(("Succeeded", {"index": 0}), ("Running", {"index": 5}), ("Succeeded", {"index": 6}),
                   ("Failed", {"index": 7})),
         expected_deletions=1, expected_succeeded=1, expected_completed_indexes="0", expected_terminating=1),
    # -- podFailurePolicy --
    Case("podFailurePolicy FailJob on an exit code fails the Job at once", parallelism=2, completions=5,
         spec={"podFailurePolicy": {"rules": [{"action": "FailJob",
                                               "onExitCodes": {"operator": "In", "values": [42]}}]}},
         pod_list=(("Failed", {"exit_code": 42, "name": "p42"}), ("Running", {})),
         expected_deletions=1, expected_failed=2, expected_terminating=1,
         expected_conditions=(("FailureTarget", "True", "PodFailurePolicy"),),
         expected_messages=("Container main for pod default/p42 failed with exit code 42 matching FailJob rule "
                            "at index 0",)),
    Case("podFailurePolicy Ignore on DisruptionTarget does not count", parallelism=1, completions=1,
         backoff_limit=0,
         spec={"podFailurePolicy": {"rules": [{"action": "Ignore",
                                               "onPodConditions": [{"type": "DisruptionTarget"}]}]}},
         pod_list=(("Failed", {"conditions": (("DisruptionTarget", "True"),)}),),
         expected_creations=1, expected_active=1, expected_finalizers_removed=1),
    Case("podFailurePolicy Count counts toward backoffLimit", parallelism=1, completions=1, backoff_limit=0,
         spec={"podFailurePolicy": {"rules": [{"action": "Count",
                                               "onExitCodes": {"operator": "NotIn", "values": [3]}}]}},
         pod_list=(("Failed", {"exit_code": 1}),), expected_failed=1, expected_conditions=backoff_exceeded()),
    Case("podFailurePolicy: a terminating pod is not replaced until it fails", parallelism=2, completions=5,
         spec={"podFailurePolicy": {"rules": [{"action": "Ignore",
                                               "onPodConditions": [{"type": "DisruptionTarget"}]}]}},
         active=1, terminating=1, expected_active=1, expected_terminating=1),
    # -- podReplacementPolicy --
    Case("podReplacementPolicy Failed waits for terminating pods", parallelism=2, completions=5,
         spec={"podReplacementPolicy": "Failed"}, active=1, terminating=1, expected_active=1,
         expected_terminating=1),
    Case("podReplacementPolicy TerminatingOrFailed replaces a terminating pod at once and counts it failed",
         parallelism=2, completions=5, active=1, terminating=1, expected_creations=1, expected_active=2,
         expected_terminating=1, expected_failed=1, expected_finalizers_removed=1),
    # -- restartPolicy OnFailure, activeDeadlineSeconds --
    Case("OnFailure: restarts in place reach the backoff limit", parallelism=1, completions=1, backoff_limit=2,
         restart_policy="OnFailure", pod_list=(("Running", {"restarts": 2}),), expected_deletions=1,
         expected_failed=1, expected_terminating=1, expected_conditions=backoff_exceeded(terminal=False)),
    Case("OnFailure: fewer restarts than the limit", parallelism=1, completions=1, backoff_limit=2,
         restart_policy="OnFailure", pod_list=(("Running", {"restarts": 1}),), expected_active=1),
    Case("activeDeadlineSeconds exceeded", parallelism=1, completions=1, spec={"activeDeadlineSeconds": 10},
         status={"startTime": ts(NOW - 20)}, active=1, expected_deletions=1, expected_failed=1,
         expected_terminating=1, expected_conditions=(("FailureTarget", "True", "DeadlineExceeded"),)),
    Case("activeDeadlineSeconds exceeded, nothing left running", parallelism=1, completions=1,
         spec={"activeDeadlineSeconds": 10}, status={"startTime": ts(NOW - 20)},
         expected_conditions=(("FailureTarget", "True", "DeadlineExceeded"), ("Failed", "True", "DeadlineExceeded")),
         expected_events=("DeadlineExceeded",)),
    Case("activeDeadlineSeconds not reached", parallelism=1, completions=1, spec={"activeDeadlineSeconds": 100},
         status={"startTime": ts(NOW - 20)}, active=1, expected_active=1),
    # -- backoffLimitPerIndex, maxFailedIndexes, successPolicy --
    Case("backoffLimitPerIndex: failing odd indexes end as failedIndexes", parallelism=4, completions=4, mode=IDX,
         backoff_limit=None, spec={"backoffLimitPerIndex": 0},
         pod_list=(("Succeeded", {"index": 0}), ("Failed", {"index": 1}), ("Succeeded", {"index": 2}),
                   ("Failed", {"index": 3})),
         expected_succeeded=2, expected_failed=2, expected_completed_indexes="0,2", expected_failed_indexes="1,3",
         expected_conditions=(("FailureTarget", "True", "FailedIndexes"), ("Failed", "True", "FailedIndexes"))),
    Case("backoffLimitPerIndex: a failed index is retried with its failure count", parallelism=2, completions=2,
         mode=IDX, backoff_limit=None, spec={"backoffLimitPerIndex": 1},
         pod_list=(("Failed", {"index": 0, "failure_count": 0}), ("Running", {"index": 1})),
         expected_creations=1, expected_created_indexes=(0,), expected_created_failure_counts=("1",),
         expected_active=2, expected_failed_indexes="", expected_finalizers_removed=0),
    Case("backoffLimitPerIndex: maxFailedIndexes exceeded", parallelism=4, completions=4, mode=IDX,
         backoff_limit=None, spec={"backoffLimitPerIndex": 0, "maxFailedIndexes": 0},
         pod_list=(("Failed", {"index": 1}), ("Running", {"index": 2})),
         expected_deletions=1, expected_failed=2, expected_failed_indexes="1", expected_terminating=1,
         expected_conditions=(("FailureTarget", "True", "MaxFailedIndexesExceeded"),)),
    Case("podFailurePolicy FailIndex marks the index failed at once", parallelism=3, completions=3, mode=IDX,
         backoff_limit=None, spec={"backoffLimitPerIndex": 5, "podFailurePolicy": {"rules": [
             {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [7]}}]}},
         pod_list=(("Failed", {"index": 0, "exit_code": 7}), ("Running", {"index": 1}), ("Running", {"index": 2})),
         expected_active=2, expected_failed=1, expected_failed_indexes="0", expected_finalizers_removed=1),
    Case("successPolicy: succeededIndexes met, lingering pods deleted", parallelism=3, completions=3, mode=IDX,
         spec={"successPolicy": {"rules": [{"succeededIndexes": "0,1"}]}},
         pod_list=(("Succeeded", {"index": 0}), ("Succeeded", {"index": 1}), ("Running", {"index": 2})),
         expected_deletions=1, expected_succeeded=2, expected_completed_indexes="0,1", expected_terminating=1,
         expected_conditions=(("SuccessCriteriaMet", "True", "SuccessPolicy"),),
         expected_messages=("Matched rules at index 0",)),
    Case("successPolicy: succeededCount met", parallelism=5, completions=5, mode=IDX,
         spec={"successPolicy": {"rules": [{"succeededCount": 2}]}},
         pod_list=(("Succeeded", {"index": 0}), ("Succeeded", {"index": 3})),
         expected_succeeded=2, expected_completed_indexes="0,3",
         expected_conditions=(("SuccessCriteriaMet", "True", "SuccessPolicy"), ("Complete", "True", "SuccessPolicy"))),
    # -- the finalizer protocol --
    Case("uncounted pods whose finalizer is gone move into the counters", parallelism=2, completions=5,
         status={"succeeded": 1, "failed": 1,
                 "uncountedTerminatedPods": {"succeeded": ["gone-1"], "failed": ["gone-2"]}},
         expected_creations=2, expected_active=2, expected_succeeded=2, expected_failed=2),
    Case("an existing FailureTarget becomes Failed once nothing is terminating", parallelism=1, completions=1,
         status={"failed": 1, "conditions": [{"type": "FailureTarget", "status": "True",
                                              "reason": "BackoffLimitExceeded", "message": "m"}]},
         expected_failed=1, expected_conditions=backoff_exceeded()),
]


def _is_finished(st: batch_pb2.JobStatus) -> bool:
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in st.conditions)


def _job(case: Case) -> batch_pb2.Job:
    job = new_job(case.parallelism, case.completions, case.backoff_limit, case.mode,
                  restart_policy=case.restart_policy, suspend=case.suspend)
    if case.spec:
        job.spec.MergeFrom(decode_into(batch_pb2.JobSpec(), case.spec, "spec"))
    if case.status:
        job.status.MergeFrom(decode_into(batch_pb2.JobStatus(), case.status, "status"))
    if case.deleting_job:
        job.metadata.deletion_timestamp = ts(NOW - 5)
    if case.was_suspended:
        c = job.status.conditions.add()
        c.type, c.status, c.reason, c.message = "Suspended", "True", "JobSuspended", "Job suspended"
        job.status.start_time = ts(NOW - 50)
    elif not case.suspend and not job.status.start_time and (case.active or case.succeeded or case.pod_list):
        job.status.start_time = ts(NOW - 50)
    return job


def _pods(case: Case, job: batch_pb2.Job) -> list[Any]:
    out = pods(job, case.pending, "Pending") + pods(job, case.active, "Running")
    out += pods(job, case.ready, "Running", ready=True)
    out += pods(job, case.succeeded, "Succeeded") + pods(job, case.failed, "Failed")
    out += pods(job, case.terminating, "Running", deleting=True)
    out += [new_pod(job, phase, **opts) for phase, opts in case.pod_list]
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_sync_job(case: Case) -> None:
    err = errors.InternalError("fake error") if case.pod_control_error else None
    h = harness(FakePodControl(err=err, create_limit=case.pod_limit))
    job = _job(case)
    h.add(job, *_pods(case, job))
    if case.backoff_failures:
        h.controller.backoff_store.update(BackoffRecord(h.key, case.backoff_failures, NOW))
    if case.unsatisfied_expectations:
        h.controller.expectations.expect_creations(h.key, 1)

    raised: errors.StatusError | None = None
    try:
        await h.controller.sync_job(h.key)
    except errors.StatusError as e:
        raised = e
    assert (raised is not None) == case.expected_error, raised

    pc = h.pod_control
    assert len(pc.created) == case.expected_creations
    assert len(pc.deleted) == case.expected_deletions
    if case.expected_finalizer_strips_on_delete is not None:
        assert len(pc.deleted_with_finalizer_removed) == case.expected_finalizer_strips_on_delete
    if case.expected_created_indexes:
        got = sorted(int(p.metadata.annotations[COMPLETION_INDEX_KEY]) for p in pc.created)
        assert got == sorted(case.expected_created_indexes)
    if case.expected_created_failure_counts:
        got_counts = tuple(p.metadata.annotations.get(INDEX_FAILURE_COUNT_KEY) for p in pc.created)
        assert got_counts == case.expected_created_failure_counts
    if case.expected_finalizers_removed is not None:
        assert len(pc.finalizers_removed) == case.expected_finalizers_removed

    st = h.status
    uncounted = st.uncounted_terminated_pods
    assert st.active == case.expected_active
    assert st.ready == case.expected_ready
    # Recorded: counted, or in uncountedTerminatedPods until the next sync's status write.
    assert st.succeeded + len(uncounted.succeeded) == case.expected_succeeded
    assert st.failed + len(uncounted.failed) == case.expected_failed
    assert st.terminating == case.expected_terminating
    if case.expected_uncounted_failed is not None:
        assert len(uncounted.failed) == case.expected_uncounted_failed
    if _is_finished(st):
        assert not uncounted.succeeded and not uncounted.failed
    assert st.completed_indexes == case.expected_completed_indexes
    if case.expected_failed_indexes is not None:
        assert st.HasField("failed_indexes")
        assert st.failed_indexes == case.expected_failed_indexes
    else:
        assert not st.HasField("failed_indexes")
    assert tuple(conditions(st)) == case.expected_conditions
    for msg in case.expected_messages:
        assert msg in [c.message for c in st.conditions]
    complete = [c for c in st.conditions if c.type == "Complete"]
    assert st.completion_time == (complete[0].last_transition_time if complete else "")
    for reason in case.expected_events:
        assert reason in h.recorder.reasons()
    if case.expected_start_time_reset:
        assert st.start_time == ts(NOW)
    if case.suspend and not case.was_suspended:
        assert st.start_time == ""
