"""A Job's spec as the controller reads it, with Kubernetes' defaults for unset fields.

The API server defaults Jobs on create, but the controller never relies on it: every field is
read here with the value Kubernetes 1.31 would have defaulted it to.
"""

from __future__ import annotations

from typing import Any

from ketch.v1 import batch_pb2

INDEXED = "Indexed"
NON_INDEXED = "NonIndexed"
JOB_CONTROLLER_NAME = "kubernetes.io/job-controller"
DEFAULT_BACKOFF_LIMIT = 6
MAX_INT32 = 2**31 - 1

COMPLETE = "Complete"
FAILED = "Failed"
SUSPENDED = "Suspended"
FAILURE_TARGET = "FailureTarget"
SUCCESS_CRITERIA_MET = "SuccessCriteriaMet"


def parallelism(job: batch_pb2.Job) -> int:
    return job.spec.parallelism if job.spec.HasField("parallelism") else 1


def completions(job: batch_pb2.Job) -> int | None:
    """None is work-queue mode; unset with parallelism unset too defaults to 1."""
    if job.spec.HasField("completions"):
        return job.spec.completions
    return None if job.spec.HasField("parallelism") else 1


def completion_mode(job: batch_pb2.Job) -> str:
    return job.spec.completion_mode if job.spec.HasField("completion_mode") else NON_INDEXED


def is_indexed(job: batch_pb2.Job) -> bool:
    return completion_mode(job) == INDEXED


def indexed_completions(job: batch_pb2.Job) -> int:
    """completions of an Indexed Job (required by validation; 0 if somehow unset)."""
    return job.spec.completions if job.spec.HasField("completions") else 0


def has_backoff_limit_per_index(job: batch_pb2.Job) -> bool:
    return is_indexed(job) and job.spec.HasField("backoff_limit_per_index")


def backoff_limit(job: batch_pb2.Job) -> int:
    if job.spec.HasField("backoff_limit"):
        return job.spec.backoff_limit
    return MAX_INT32 if job.spec.HasField("backoff_limit_per_index") else DEFAULT_BACKOFF_LIMIT


def pod_failure_policy(job: batch_pb2.Job) -> Any | None:
    return job.spec.pod_failure_policy if job.spec.HasField("pod_failure_policy") else None


def success_policy(job: batch_pb2.Job) -> Any | None:
    return job.spec.success_policy if job.spec.HasField("success_policy") else None


def suspended(job: batch_pb2.Job) -> bool:
    return job.spec.HasField("suspend") and job.spec.suspend


def only_replace_failed_pods(job: batch_pb2.Job) -> bool:
    """podReplacementPolicy Failed (the only choice, and default, with a podFailurePolicy)."""
    if job.spec.HasField("pod_failure_policy"):
        return True
    return job.spec.HasField("pod_replacement_policy") and job.spec.pod_replacement_policy == "Failed"


def managed_by_external(job: batch_pb2.Job) -> str | None:
    if job.spec.HasField("managed_by") and job.spec.managed_by != JOB_CONTROLLER_NAME:
        return job.spec.managed_by
    return None


def find_condition(job: batch_pb2.Job, ctype: str) -> batch_pb2.JobCondition | None:
    for c in job.status.conditions:
        if c.type == ctype:
            return c
    return None


def condition_true(job: batch_pb2.Job, ctype: str) -> bool:
    c = find_condition(job, ctype)
    return c is not None and c.status == "True"


def is_finished(job: batch_pb2.Job) -> bool:
    """Complete=True or Failed=True."""
    for c in job.status.conditions:
        if c.type in (COMPLETE, FAILED) and c.status == "True":
            return True
    return False
