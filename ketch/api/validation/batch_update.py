"""Job and CronJob update and status-update rules (Kubernetes 1.31 ValidateJobSpecUpdate and friends).

Mutable: parallelism, suspend, activeDeadlineSeconds, ttlSecondsAfterFinished, backoffLimit,
maxFailedIndexes, podReplacementPolicy, manualSelector. Immutable: selector, completionMode,
podFailurePolicy, successPolicy, backoffLimitPerIndex, managedBy, template (except nodeSelector,
tolerations, node affinity, scheduling gates, labels and annotations while the job is suspended
and has never started) and completions (except for Indexed jobs changing it together with
parallelism). Status: counters never negative, the failed counter never decreases, terminal
conditions stay, SuccessCriteriaMet consistent with the other conditions, index strings
well-formed.
"""

from __future__ import annotations

from collections.abc import Sequence

from ketch.api.errors import FieldError, duplicate, invalid
from ketch.v1 import batch_pb2

from . import batch, field, meta
from .field import Errors, idx


def validate_job_update(new: batch_pb2.Job, old: batch_pb2.Job) -> Errors:
    errs: Errors = []
    meta.object_meta_update(errs, new.metadata, old.metadata)
    ns, os_ = new.spec, old.spec
    _completions(errs, ns, os_)
    field.immutable_message(errs, ns, os_, "selector", "spec.selector")
    template = os_.template
    if os_.HasField("suspend") and os_.suspend and not old.status.start_time:
        template = batch.template_scheduling_munged(ns.template, os_.template)
    if ns.template != template:
        errs.append(FieldError("Invalid", "spec.template", field.IMMUTABLE))
    field.immutable_optional(errs, ns, os_, "completion_mode", "spec.completionMode")
    field.immutable_message(errs, ns, os_, "pod_failure_policy", "spec.podFailurePolicy")
    field.immutable_optional(errs, ns, os_, "backoff_limit_per_index", "spec.backoffLimitPerIndex")
    field.immutable_optional(errs, ns, os_, "managed_by", "spec.managedBy")
    field.immutable_message(errs, ns, os_, "success_policy", "spec.successPolicy")
    return errs


def _completions(errs: Errors, ns: batch_pb2.JobSpec, os_: batch_pb2.JobSpec) -> None:
    if ns.completion_mode != "Indexed":
        field.immutable_optional(errs, ns, os_, "completions", "spec.completions")
        return
    same = ns.HasField("completions") == os_.HasField("completions") and ns.completions == os_.completions
    if same or not ns.HasField("completions"):
        return  # an Indexed job without completions is reported by the spec validation
    if ns.completions != ns.parallelism:
        errs.append(invalid("spec.completions", ns.completions, "can only be modified in tandem with spec.parallelism"))


def _true(conditions: Sequence[batch_pb2.JobCondition], ctype: str) -> bool:
    return any(c.type == ctype and c.status == "True" for c in conditions)


def validate_job_status_update(new: batch_pb2.Job, old: batch_pb2.Job) -> Errors:
    errs: Errors = []
    st, old_st = new.status, old.status
    for value, name in ((st.active, "active"), (st.succeeded, "succeeded"), (st.failed, "failed")):
        field.nonnegative(errs, value, "status." + name)
    for name in ("ready", "terminating"):
        if st.HasField(name):
            field.nonnegative(errs, getattr(st, name), "status." + name)
    seen: set[str] = set()
    for name in ("succeeded", "failed"):
        for i, uid in enumerate(getattr(st.uncounted_terminated_pods, name)):
            p = idx(f"status.uncountedTerminatedPods.{name}", i)
            if not uid:
                errs.append(invalid(p, uid, "must not be empty"))
            elif uid in seen:
                errs.append(duplicate(p, uid))
            else:
                seen.add(uid)
    if st.failed < old_st.failed:
        errs.append(invalid("status.failed", st.failed, "cannot decrease the failed counter"))
    for ctype in ("Failed", "Complete", "FailureTarget"):
        if _true(old_st.conditions, ctype) and not _true(st.conditions, ctype):
            errs.append(FieldError("Invalid", "status.conditions",
                                   f"cannot disable the terminal {ctype}=True condition"))
    if _true(old_st.conditions, "SuccessCriteriaMet") and not _true(st.conditions, "SuccessCriteriaMet"):
        errs.append(FieldError("Invalid", "status.conditions", "cannot disable the SuccessCriteriaMet=True condition"))
    if _true(st.conditions, "Complete") and _true(st.conditions, "Failed"):
        errs.append(FieldError("Invalid", "status.conditions", "cannot set Complete=True and Failed=true conditions"))
    _success_criteria_met(errs, new, old)
    spec = new.spec
    indexed = spec.completion_mode == "Indexed"
    if st.completed_indexes != old_st.completed_indexes:
        if not indexed and st.completed_indexes:
            errs.append(invalid("status.completedIndexes", st.completed_indexes,
                                "cannot set non-empty completedIndexes when non-indexed completion mode"))
        elif spec.HasField("completions"):
            _indexes(errs, st.completed_indexes, spec.completions, "status.completedIndexes", "completedIndexes")
    if st.HasField("failed_indexes") and (not old_st.HasField("failed_indexes")
                                          or st.failed_indexes != old_st.failed_indexes):
        if not spec.HasField("backoff_limit_per_index"):
            errs.append(invalid("status.failedIndexes", st.failed_indexes,
                                "cannot set non-null failedIndexes when backoffLimitPerIndex is null"))
        elif spec.HasField("completions"):
            _indexes(errs, st.failed_indexes, spec.completions, "status.failedIndexes", "failedIndexes")
    return errs


def _success_criteria_met(errs: Errors, new: batch_pb2.Job, old: batch_pb2.Job) -> None:
    """The SuccessCriteriaMet rules 1.31 checks on every status write (validateJobStatus and
    ValidateJobStatusUpdate, not behind JobManagedBy; with JobPodReplacementPolicy on, the
    condition may be set on any Job, with or without a successPolicy)."""
    conds, old_conds = new.status.conditions, old.status.conditions
    met = _true(conds, "SuccessCriteriaMet")
    if met and _true(conds, "Failed"):
        errs.append(FieldError("Invalid", "status.conditions",
                               "cannot set SuccessCriteriaMet=True and Failed=true conditions"))
    if met and _true(conds, "FailureTarget"):
        errs.append(FieldError("Invalid", "status.conditions",
                               "cannot set SuccessCriteriaMet=True and FailureTarget=true conditions"))
    if new.spec.HasField("success_policy") and not met and _true(conds, "Complete"):
        errs.append(FieldError("Invalid", "status.conditions",
                               "cannot set Complete=True for Job with SuccessPolicy unless SuccessCriteriaMet=True"))
    if _true(old_conds, "Complete") and not _true(old_conds, "SuccessCriteriaMet") and met:
        errs.append(FieldError("Invalid", "status.conditions",
                               "cannot set SuccessCriteriaMet=True for Job already has Complete=true conditions"))


def _indexes(errs: Errors, text: str, completions: int, path: str, what: str) -> None:
    try:
        batch.parse_indexes(text, completions)
    except ValueError as err:
        errs.append(invalid(path, text, f"error parsing {what}: {err}"))


def validate_cronjob_update(new: batch_pb2.CronJob, old: batch_pb2.CronJob) -> Errors:
    errs: Errors = []
    meta.object_meta_update(errs, new.metadata, old.metadata)
    return errs
