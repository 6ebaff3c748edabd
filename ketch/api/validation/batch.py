"""Job and CronJob validation (pkg/apis/batch/validation, Kubernetes 1.31).

The job spec rules are shared by Jobs and by CronJob job templates (which may not carry a
selector). Job updates keep Kubernetes' immutable fields, with the elastic Indexed rule for
completions and the suspended-and-never-started exception for scheduling directives of the
template. Indexed jobs' interval strings ("0,2-4") are parsed by `parse_indexes`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from ketch.api import cron
from ketch.api.errors import FieldError, duplicate, invalid, not_supported, required, too_many
from ketch.api.goint import atoi
from ketch.v1 import batch_pb2, core_pb2

from . import field, meta, podspec
from .field import Errors, Shown, go_map, idx

MAX_PARALLELISM_INDEXED = 100_000
MAX_FAILED_INDEXES = 100_000
COMPLETIONS_SOFT_LIMIT = 100_000
PARALLELISM_LIMIT_HIGH_COMPLETIONS = 10_000
MAX_FAILED_INDEXES_HIGH_COMPLETIONS = 10_000
MAX_PFP_RULES = 20
MAX_EXIT_CODES = 255
MAX_POD_CONDITIONS = 20
MAX_SUCCESS_RULES = 20
MAX_SUCCEEDED_INDEXES_LEN = 64 * 1024
MAX_CRONJOB_NAME = 52
ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
CONDITION_STATUSES = ["False", "True", "Unknown"]
GENERATED_LABELS = ("controller-uid", "job-name", "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name")


def _quoted_list(values: list[str]) -> str:
    """Go's %q of a []string: `["a" "b"]`."""
    return "[" + " ".join(f'"{v}"' for v in values) + "]"


# ---------------------------------------------------------------------------------------------
# Job


def validate_job(job: batch_pb2.Job) -> Errors:
    errs: Errors = []
    meta.object_meta(errs, job.metadata, True, field.name_is_dns_subdomain)
    _generated_selector(errs, job)
    spec = job.spec
    job_spec(errs, spec, "spec")
    if not spec.HasField("selector"):
        errs.append(required("spec.selector"))
    else:
        field.label_selector(errs, spec.selector, "spec.selector")
    if not spec.HasField("selector") or (
            field.selector_is_valid(spec.selector) and not field.selector_matches(spec.selector,
                                                                                  spec.template.metadata.labels)):
        errs.append(invalid("spec.template.metadata.labels", go_map(spec.template.metadata.labels),
                            "`selector` does not match template `labels`"))
    if spec.completion_mode == "Indexed" and spec.HasField("completions") and spec.completions > 0:
        hostname = f"{job.metadata.name}-{spec.completions - 1}"
        if field.dns1123_label(hostname):
            errs.append(invalid("metadata.name", job.metadata.name,
                                f"will not able to create pod with invalid DNS label: {hostname}"))
    return errs


def _generated_selector(errs: Errors, job: batch_pb2.Job) -> None:
    """A generated selector: the template carries the generated labels and the selector is the generated one."""
    spec = job.spec
    if (spec.HasField("manual_selector") and spec.manual_selector) or not spec.HasField("selector"):
        return
    md = job.metadata
    if not md.uid:
        errs.append(required("metadata.uid"))
    labels = spec.template.metadata.labels
    expected = {}
    for k in GENERATED_LABELS:
        want = md.uid if k.endswith("controller-uid") else md.name
        expected[k] = want
        path = field.key("spec.template.metadata.labels", k)
        if k not in labels:
            errs.append(required(path, f"must be '{want}'"))
        elif labels[k] != want:
            errs.append(invalid(path, go_map(labels), f"must be '{want}'"))
    if field.selector_is_valid(spec.selector) and not field.selector_matches(spec.selector, expected):
        errs.append(invalid("spec.selector", field.as_json(spec.selector), "`selector` not auto-generated"))


def job_spec(errs: Errors, spec: batch_pb2.JobSpec, path: str) -> None:
    """validateJobSpec: everything but the selector (Jobs and CronJob job templates alike)."""
    for name, json_name in (("parallelism", "parallelism"), ("completions", "completions"),
                            ("active_deadline_seconds", "activeDeadlineSeconds"), ("backoff_limit", "backoffLimit"),
                            ("ttl_seconds_after_finished", "ttlSecondsAfterFinished"),
                            ("backoff_limit_per_index", "backoffLimitPerIndex"),
                            ("max_failed_indexes", "maxFailedIndexes")):
        if spec.HasField(name):
            field.nonnegative(errs, getattr(spec, name), f"{path}.{json_name}")
    per_index = spec.HasField("backoff_limit_per_index")
    max_failed = spec.max_failed_indexes if spec.HasField("max_failed_indexes") else None
    if max_failed is not None and not per_index:
        errs.append(required(path + ".backoffLimitPerIndex", "when maxFailedIndexes is specified"))
    if spec.HasField("managed_by"):
        _managed_by(errs, spec.managed_by, path + ".managedBy")
    indexed = spec.completion_mode == "Indexed"
    if spec.HasField("completion_mode"):
        if spec.completion_mode not in ("NonIndexed", "Indexed"):
            errs.append(not_supported(path + ".completionMode", spec.completion_mode, ["NonIndexed", "Indexed"]))
        if indexed:
            _indexed_limits(errs, spec, max_failed, path)
    if spec.completion_mode == "NonIndexed" or not spec.HasField("completion_mode"):
        # Only nil or NonIndexed: an unknown mode is reported above, and only that.
        if per_index:
            errs.append(invalid(path + ".backoffLimitPerIndex", spec.backoff_limit_per_index,
                                "requires indexed completion mode"))
        if max_failed is not None:
            errs.append(invalid(path + ".maxFailedIndexes", max_failed, "requires indexed completion mode"))
    if spec.HasField("pod_failure_policy"):
        _pod_failure_policy(errs, spec, path + ".podFailurePolicy")
    if spec.HasField("success_policy"):
        if not indexed:
            errs.append(invalid(path + ".successPolicy", field.as_json(spec.success_policy),
                                "requires indexed completion mode"))
        else:
            _success_policy(errs, spec, path + ".successPolicy")
    if spec.HasField("pod_replacement_policy"):
        policy = spec.pod_replacement_policy
        if spec.HasField("pod_failure_policy"):
            if policy != "Failed":
                errs.append(not_supported(path + ".podReplacementPolicy", policy, ["Failed"]))
        elif policy not in ("Failed", "TerminatingOrFailed"):
            errs.append(not_supported(path + ".podReplacementPolicy", policy, ["Failed", "TerminatingOrFailed"]))
    podspec.pod_template(errs, spec.template, path + ".template")
    restart = spec.template.spec.restart_policy
    rp_path = path + ".template.spec.restartPolicy"
    if restart in ("Always", ""):
        errs.append(required(rp_path, 'valid values: "OnFailure", "Never"'))
    elif restart not in ("OnFailure", "Never"):
        errs.append(not_supported(rp_path, restart, ["OnFailure", "Never"]))
    elif spec.HasField("pod_failure_policy") and restart != "Never":
        errs.append(invalid(rp_path, restart, 'only "Never" is supported when podFailurePolicy is specified'))


def _indexed_limits(errs: Errors, spec: batch_pb2.JobSpec, max_failed: int | None, path: str) -> None:
    completions = spec.completions if spec.HasField("completions") else None
    parallelism = spec.parallelism if spec.HasField("parallelism") else None
    if completions is None:
        errs.append(required(path + ".completions", "when completion mode is Indexed"))
    if parallelism is not None and parallelism > MAX_PARALLELISM_INDEXED:
        errs.append(invalid(path + ".parallelism", parallelism,
                            f"must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"))
    if completions is not None and max_failed is not None and max_failed > completions:
        errs.append(invalid(path + ".maxFailedIndexes", max_failed, "must be less than or equal to completions"))
    if max_failed is not None and max_failed > MAX_FAILED_INDEXES:
        errs.append(invalid(path + ".maxFailedIndexes", max_failed,
                            f"must be less than or equal to {MAX_FAILED_INDEXES}"))
    if completions is not None and completions > COMPLETIONS_SOFT_LIMIT and spec.HasField("backoff_limit_per_index"):
        high = (f"when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index")
        if max_failed is None:
            errs.append(required(path + ".maxFailedIndexes",
                                 f"must be specified when completions is above {COMPLETIONS_SOFT_LIMIT}"))
        if parallelism is not None and parallelism > PARALLELISM_LIMIT_HIGH_COMPLETIONS:
            errs.append(invalid(path + ".parallelism", parallelism,
                                f"must be less than or equal to {PARALLELISM_LIMIT_HIGH_COMPLETIONS} {high}"))
        if max_failed is not None and max_failed > MAX_FAILED_INDEXES_HIGH_COMPLETIONS:
            errs.append(invalid(path + ".maxFailedIndexes", max_failed,
                                f"must be less than or equal to {MAX_FAILED_INDEXES_HIGH_COMPLETIONS} {high}"))


def _managed_by(errs: Errors, value: str, path: str) -> None:
    host, sep, rest = value.partition("/")
    if not value:
        errs.append(required(path))
    elif not sep or not host or not rest:
        errs.append(invalid(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")'))
    else:
        field.dns_subdomain_field(errs, host, path)
    if len(value) > 63:
        errs.append(FieldError("TooLong", path, "may not be longer than 63"))


def _pod_failure_policy(errs: Errors, spec: batch_pb2.JobSpec, path: str) -> None:
    rules = spec.pod_failure_policy.rules
    rules_path = path + ".rules"
    if len(rules) > MAX_PFP_RULES:
        errs.append(too_many(rules_path, len(rules), MAX_PFP_RULES))
    names = {c.name for c in spec.template.spec.containers} | {c.name for c in spec.template.spec.init_containers}
    for i, rule in enumerate(rules):
        p = idx(rules_path, i)
        if not rule.action:
            errs.append(required(p + ".action", "valid values: " + _quoted_list(ACTIONS)))
        elif rule.action == "FailIndex":
            if not spec.HasField("backoff_limit_per_index"):
                errs.append(invalid(p + ".action", rule.action, "requires the backoffLimitPerIndex to be set"))
        elif rule.action not in ACTIONS:
            errs.append(not_supported(p + ".action", rule.action, ACTIONS))
        has_codes = rule.HasField("on_exit_codes")
        if has_codes:
            _on_exit_codes(errs, rule.on_exit_codes, names, p + ".onExitCodes")
        if rule.on_pod_conditions:
            _on_pod_conditions(errs, rule.on_pod_conditions, p + ".onPodConditions")
        if has_codes and rule.on_pod_conditions:
            errs.append(FieldError("Invalid", p, "specifying both OnExitCodes and OnPodConditions is not supported"))
        if not has_codes and not rule.on_pod_conditions:
            errs.append(FieldError("Invalid", p, "specifying one of OnExitCodes and OnPodConditions is required"))


def _on_exit_codes(errs: Errors, req: batch_pb2.PodFailurePolicyOnExitCodesRequirement, names: set[str],
                   path: str) -> None:
    if not req.operator:
        errs.append(required(path + ".operator", 'valid values: ["In" "NotIn"]'))
    elif req.operator not in ("In", "NotIn"):
        errs.append(not_supported(path + ".operator", req.operator, ["In", "NotIn"]))
    if req.HasField("container_name") and req.container_name not in names:
        errs.append(invalid(path + ".containerName", req.container_name,
                            "must be one of the container or initContainer names in the pod template"))
    values_path = path + ".values"
    values = list(req.values)
    shown = Shown("[]int32{" + ", ".join(str(v) for v in values) + "}")
    if not values:
        errs.append(invalid(values_path, shown, "at least one value is required"))
    elif len(values) > MAX_EXIT_CODES:
        errs.append(too_many(values_path, len(values), MAX_EXIT_CODES))
    seen: set[int] = set()
    for j, v in enumerate(values):
        if req.operator == "In" and v == 0:
            errs.append(invalid(idx(values_path, j), v, "must not be 0 for the In operator"))
        if v in seen:
            errs.append(duplicate(idx(values_path, j), v))
        seen.add(v)
    if any(a > b for a, b in itertools.pairwise(values)):
        errs.append(invalid(values_path, shown, "must be ordered"))


def _on_pod_conditions(errs: Errors, patterns: Sequence[batch_pb2.PodFailurePolicyOnPodConditionsPattern],
                       path: str) -> None:
    if len(patterns) > MAX_POD_CONDITIONS:
        errs.append(too_many(path, len(patterns), MAX_POD_CONDITIONS))
    for j, pattern in enumerate(patterns):
        p = idx(path, j)
        field.qualified_name_field(errs, pattern.type, p + ".type")
        if not pattern.status:
            errs.append(required(p + ".status", "valid values: " + _quoted_list(CONDITION_STATUSES)))
        elif pattern.status not in CONDITION_STATUSES:
            errs.append(not_supported(p + ".status", pattern.status, CONDITION_STATUSES))


def _success_policy(errs: Errors, spec: batch_pb2.JobSpec, path: str) -> None:
    rules = spec.success_policy.rules
    rules_path = path + ".rules"
    if not rules:
        errs.append(required(rules_path, "at least one rules must be specified when the successPolicy is specified"))
    if len(rules) > MAX_SUCCESS_RULES:
        errs.append(too_many(rules_path, len(rules), MAX_SUCCESS_RULES))
    completions = spec.completions if spec.HasField("completions") else None
    for i, rule in enumerate(rules):
        p = idx(rules_path, i)
        has_indexes, has_count = rule.HasField("succeeded_indexes"), rule.HasField("succeeded_count")
        if not has_indexes and not has_count:
            errs.append(required(p, "at least one of succeededCount or succeededIndexes must be specified"))
        total = 0
        if has_indexes:
            ip = p + ".succeededIndexes"
            if len(rule.succeeded_indexes) > MAX_SUCCEEDED_INDEXES_LEN:
                errs.append(FieldError("TooLong", ip, f"may not be more than {MAX_SUCCEEDED_INDEXES_LEN} bytes"))
            if completions is not None:
                try:
                    total = count_indexes(parse_indexes(rule.succeeded_indexes, completions))
                except ValueError as err:
                    errs.append(invalid(ip, rule.succeeded_indexes, f"error parsing succeededIndexes: {err}"))
        if has_count:
            cp = p + ".succeededCount"
            field.nonnegative(errs, rule.succeeded_count, cp)
            if completions is not None and rule.succeeded_count > completions:
                errs.append(invalid(cp, rule.succeeded_count, f"must be less than or equal to {completions} "
                                                              "(the number of specified completions)"))
            if has_indexes and rule.succeeded_count > total:
                errs.append(invalid(cp, rule.succeeded_count, f"must be less than or equal to {total} (the number of "
                                                              "indexes in the specified succeededIndexes field)"))


def parse_indexes(text: str, completions: int) -> list[tuple[int, int]]:
    """Intervals of `"1,3-5,7"` (ascending, each below completions); ValueError says why not."""
    out: list[tuple[int, int]] = []
    if not text:
        return out
    last = -1
    for part in text.split(","):
        limits = part.split("-")
        if len(limits) > 2:
            raise ValueError(f"the fragment \"{part}\" violates the requirement that an index interval can have "
                             "at most two parts separated by '-'")
        bounds = []
        for s in limits:
            try:
                n = atoi(s)
            except ValueError:
                raise ValueError(f'cannot convert string to integer for index: "{s}"') from None
            if n >= completions:
                raise ValueError(f'too large index: "{s}"')
            bounds.append(n)
        x, y = bounds[0], bounds[-1]
        if len(bounds) == 2 and x >= y:
            raise ValueError(f"non-increasing order, previous: {x}, current: {y}")
        if out and last >= x:
            raise ValueError(f"non-increasing order, previous: {last}, current: {x}")
        out.append((x, y))
        last = y
    return out


def count_indexes(intervals: list[tuple[int, int]]) -> int:
    return sum(y - x + 1 for x, y in intervals)


# ---------------------------------------------------------------------------------------------
# CronJob


def validate_cronjob(cj: batch_pb2.CronJob) -> Errors:
    errs: Errors = []
    meta.object_meta(errs, cj.metadata, True, field.name_is_dns_subdomain)
    spec = cj.spec
    if not spec.schedule:
        errs.append(required("spec.schedule"))
    else:
        # Every reason, as validateScheduleFormat appends both the parse error and the TZ one.
        for why in cron.schedule_errors(spec.schedule):
            errs.append(invalid("spec.schedule", spec.schedule, why))
    if spec.HasField("starting_deadline_seconds"):
        field.nonnegative(errs, spec.starting_deadline_seconds, "spec.startingDeadlineSeconds")
    if spec.HasField("time_zone"):
        # validateTimeZone: "local" is both not explicit and not a zone that loads.
        for why in cron.time_zone_errors(spec.time_zone):
            errs.append(invalid("spec.timeZone", spec.time_zone, why))
    policy = spec.concurrency_policy
    if not policy:
        errs.append(required("spec.concurrencyPolicy"))
    elif policy not in ("Allow", "Forbid", "Replace"):
        errs.append(not_supported("spec.concurrencyPolicy", policy, ["Allow", "Forbid", "Replace"]))
    tmpl = spec.job_template.spec
    job_spec(errs, tmpl, "spec.jobTemplate.spec")
    if tmpl.HasField("selector"):
        errs.append(invalid("spec.jobTemplate.spec.selector", field.as_json(tmpl.selector),
                            "`selector` will be auto-generated"))
    if tmpl.HasField("manual_selector") and tmpl.manual_selector:
        errs.append(not_supported("spec.jobTemplate.spec.manualSelector", True, ["nil", "false"]))
    for name, json_name in (("successful_jobs_history_limit", "successfulJobsHistoryLimit"),
                            ("failed_jobs_history_limit", "failedJobsHistoryLimit")):
        if spec.HasField(name):
            field.nonnegative(errs, getattr(spec, name), "spec." + json_name)
    if len(cj.metadata.name) > MAX_CRONJOB_NAME:
        errs.append(invalid("metadata.name", cj.metadata.name, f"must be no more than {MAX_CRONJOB_NAME} characters"))
    return errs


def template_scheduling_munged(new: core_pb2.PodTemplateSpec,
                               old: core_pb2.PodTemplateSpec) -> core_pb2.PodTemplateSpec:
    """The old template with new's scheduling directives: what a suspended, never-started Job may change."""
    out = core_pb2.PodTemplateSpec()
    out.CopyFrom(old)
    ns, os_ = new.spec, out.spec
    if ns.HasField("affinity"):
        if ns.affinity.HasField("node_affinity"):
            os_.affinity.node_affinity.CopyFrom(ns.affinity.node_affinity)
        else:
            os_.affinity.ClearField("node_affinity")
    elif os_.HasField("affinity"):
        os_.affinity.ClearField("node_affinity")
        if not os_.affinity.ListFields():
            os_.ClearField("affinity")
    os_.ClearField("node_selector")
    os_.node_selector.update(ns.node_selector)
    del os_.tolerations[:]
    os_.tolerations.extend(ns.tolerations)
    del os_.scheduling_gates[:]
    os_.scheduling_gates.extend(ns.scheduling_gates)
    for name in ("labels", "annotations"):
        target = getattr(out.metadata, name)
        target.clear()
        target.update(getattr(new.metadata, name))
    return out
