"""DaemonSet and ControllerRevision validation (pkg/apis/apps/validation).

DaemonSet: a non-empty selector matching the template labels (immutable once set), a template
that restarts Always and has no activeDeadlineSeconds, and an update strategy whose
maxUnavailable/maxSurge are ints >= 0 or percentages <= 100%, exactly one of them non-zero.
ControllerRevision: data required and immutable, revision >= 0 (the DaemonSet controller
renumbers a revision on rollback, so revision itself may change, as in Kubernetes).
"""

from __future__ import annotations

from google.protobuf import struct_pb2

from ketch.api import intstr
from ketch.api.errors import FieldError, forbidden, invalid, not_supported, required
from ketch.v1 import apps_pb2

from . import field, meta, podspec
from .field import Errors, Shown, go_map


def validate_daemonset(ds: apps_pb2.DaemonSet) -> Errors:
    errs: Errors = []
    meta.object_meta(errs, ds.metadata, True, field.name_is_dns_subdomain)
    spec = ds.spec
    labels = spec.template.metadata.labels
    if spec.HasField("selector"):
        field.label_selector(errs, spec.selector, "spec.selector")
    if not spec.HasField("selector") or (field.selector_is_valid(spec.selector)
                                         and not field.selector_matches(spec.selector, labels)):
        errs.append(invalid("spec.template.metadata.labels", go_map(labels),
                            "`selector` does not match template `labels`"))
    if spec.HasField("selector") and field.selector_is_empty(spec.selector):
        errs.append(invalid("spec.selector", field.as_json(spec.selector), "empty selector is invalid for daemonset"))
    podspec.pod_template(errs, spec.template, "spec.template")
    if spec.template.spec.restart_policy != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", spec.template.spec.restart_policy, ["Always"]))
    if spec.template.spec.HasField("active_deadline_seconds"):
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                              "activeDeadlineSeconds in DaemonSet is not Supported"))
    field.nonnegative(errs, spec.min_ready_seconds, "spec.minReadySeconds")
    _update_strategy(errs, spec.update_strategy, "spec.updateStrategy")
    if spec.HasField("revision_history_limit"):
        field.nonnegative(errs, spec.revision_history_limit, "spec.revisionHistoryLimit")
    return errs


def _update_strategy(errs: Errors, strategy: apps_pb2.DaemonSetUpdateStrategy, path: str) -> None:
    if strategy.type == "OnDelete":
        return
    if strategy.type != "RollingUpdate":
        errs.append(not_supported(path, Shown(f"{{Type:\"{strategy.type}\"}}"), ["RollingUpdate", "OnDelete"]))
        return
    if not strategy.HasField("rolling_update"):
        errs.append(required(path + ".rollingUpdate"))
        return
    ru, p = strategy.rolling_update, path + ".rollingUpdate"
    for value, name in ((ru.max_unavailable, "maxUnavailable"), (ru.max_surge, "maxSurge")):
        _int_or_percent(errs, value, f"{p}.{name}")
    unavailable, surge = _value(ru.max_unavailable), _value(ru.max_surge)
    if unavailable and surge:
        errs.append(invalid(p + ".maxSurge", intstr.get(ru.max_surge),
                            "may not be set when maxUnavailable is non-zero"))
    elif not unavailable and not surge:
        errs.append(required(p + ".maxUnavailable", "cannot be 0 when maxSurge is 0"))


def _int_or_percent(errs: Errors, value: struct_pb2.Value, path: str) -> None:
    v = intstr.get(value)
    if isinstance(v, str):
        msgs = field.percent(v)
        errs.extend(invalid(path, v, m) for m in msgs)
        if not msgs and intstr.percent_value(v) > 100:
            errs.append(invalid(path, v, "must not be greater than 100%"))
    elif v is None:
        errs.append(invalid(path, None, "must be an integer or percentage (e.g '5%')"))
    else:
        field.nonnegative(errs, v, path)


def _value(value: struct_pb2.Value) -> int:
    v = intstr.get(value)
    if isinstance(v, str):
        return intstr.percent_value(v) if not field.percent(v) else 0
    return v or 0


def validate_daemonset_update(new: apps_pb2.DaemonSet, old: apps_pb2.DaemonSet) -> Errors:
    errs: Errors = []
    meta.object_meta_update(errs, new.metadata, old.metadata)
    field.immutable_message(errs, new.spec, old.spec, "selector", "spec.selector")
    return errs


def validate_daemonset_status_update(new: apps_pb2.DaemonSet, old: apps_pb2.DaemonSet) -> Errors:
    errs: Errors = []
    st = new.status
    for name, json_name in (("current_number_scheduled", "currentNumberScheduled"),
                            ("number_misscheduled", "numberMisscheduled"),
                            ("desired_number_scheduled", "desiredNumberScheduled"), ("number_ready", "numberReady"),
                            ("collision_count", "collisionCount")):
        if st.HasField(name):
            field.nonnegative(errs, getattr(st, name), "status." + json_name)
    for value, json_name in ((st.observed_generation, "observedGeneration"),
                             (st.updated_number_scheduled, "updatedNumberScheduled"),
                             (st.number_available, "numberAvailable"), (st.number_unavailable, "numberUnavailable")):
        field.nonnegative(errs, value, "status." + json_name)
    if old.status.HasField("collision_count") and (
            not st.HasField("collision_count") or st.collision_count < old.status.collision_count):
        errs.append(invalid("status.collisionCount", st.collision_count, "cannot be decremented"))
    return errs


def validate_controller_revision(rev: apps_pb2.ControllerRevision) -> Errors:
    errs: Errors = []
    meta.object_meta(errs, rev.metadata, True, field.name_is_dns_subdomain)
    if not rev.HasField("data"):
        errs.append(required("data", "data is mandatory"))
    field.nonnegative(errs, rev.revision, "revision")
    return errs


def validate_controller_revision_update(new: apps_pb2.ControllerRevision,
                                        old: apps_pb2.ControllerRevision) -> Errors:
    errs: Errors = []
    meta.object_meta_update(errs, new.metadata, old.metadata)
    if new.HasField("data") != old.HasField("data") or new.data != old.data:
        errs.append(FieldError("Invalid", "data", field.IMMUTABLE))
    return errs
