"""batch/v1 defaults (pkg/apis/batch/v1/defaults.go): Job and CronJob.

Job: parallelism/completions 1 when both unset (parallelism alone defaults to 1, completions
stays unset = work-queue mode), backoffLimit 6 (MaxInt32 with backoffLimitPerIndex),
completionMode NonIndexed, suspend false, podReplacementPolicy TerminatingOrFailed (Failed with
a podFailurePolicy), onPodConditions status True, manualSelector false (since Kubernetes 1.29),
job labels from the template labels. The selector is generated later, by the API server's
prepare-for-create. CronJob: Allow, not suspended, history 3 succeeded / 1 failed; its job
template gets the pod template defaults only (as in Kubernetes: Job-level defaults apply when
the Job is created).
"""

from __future__ import annotations

from ketch.v1 import batch_pb2

from . import core

MAX_INT32 = 2**31 - 1


def job(obj: batch_pb2.Job) -> None:
    spec = obj.spec
    if not spec.HasField("completions") and not spec.HasField("parallelism"):
        spec.completions = 1
        spec.parallelism = 1
    if not spec.HasField("parallelism"):
        spec.parallelism = 1
    if not spec.HasField("backoff_limit"):
        spec.backoff_limit = MAX_INT32 if spec.HasField("backoff_limit_per_index") else 6
    labels = spec.template.metadata.labels
    if labels and not obj.metadata.labels:
        obj.metadata.labels.update(labels)
    if not spec.HasField("completion_mode"):
        spec.completion_mode = "NonIndexed"
    if not spec.HasField("suspend"):
        spec.suspend = False
    if spec.HasField("pod_failure_policy"):
        for rule in spec.pod_failure_policy.rules:
            for pattern in rule.on_pod_conditions:
                if not pattern.status:
                    pattern.status = "True"
    if not spec.HasField("pod_replacement_policy"):
        spec.pod_replacement_policy = "Failed" if spec.HasField("pod_failure_policy") else "TerminatingOrFailed"
    if not spec.HasField("manual_selector"):
        spec.manual_selector = False
    core.pod_spec(spec.template.spec)


def cronjob(obj: batch_pb2.CronJob) -> None:
    spec = obj.spec
    if not spec.concurrency_policy:
        spec.concurrency_policy = "Allow"
    if not spec.HasField("suspend"):
        spec.suspend = False
    if not spec.HasField("successful_jobs_history_limit"):
        spec.successful_jobs_history_limit = 3
    if not spec.HasField("failed_jobs_history_limit"):
        spec.failed_jobs_history_limit = 1
    core.pod_spec(spec.job_template.spec.template.spec)
