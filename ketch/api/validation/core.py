"""Pod validation: create, update (Kubernetes' immutability rules) and status update.

An update may change only container images, activeDeadlineSeconds (set, or lowered),
tolerations (additions), terminationGracePeriodSeconds (to 1 when it was negative) and, as a
binding, spec.nodeName from "" to a node. A status update may not move a pod out of a terminal
phase, nor restart a container its restartPolicy says is finished.
"""

from __future__ import annotations

from collections.abc import Sequence

from ketch.api.errors import forbidden, invalid
from ketch.v1 import core_pb2

from . import field, meta, podspec
from .field import Errors, idx

UPDATABLE_POD_FIELDS = ",".join([
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    '`spec.nodeName` (only from "" to a node, as a binding)',
])
TERMINAL_PHASES = ("Succeeded", "Failed")
_SYSTEM_CONDITIONS = frozenset({"PodScheduled", "Ready", "Initialized"})


def validate_pod(pod: core_pb2.Pod) -> Errors:
    errs: Errors = []
    meta.object_meta(errs, pod.metadata, True, field.name_is_dns_subdomain)
    podspec.pod_spec(errs, pod.spec, "spec")
    for path, containers in (("spec.containers", pod.spec.containers),
                             ("spec.initContainers", pod.spec.init_containers)):
        for i, c in enumerate(containers):
            if c.image != c.image.strip():
                errs.append(invalid(idx(path, i) + ".image", c.image, "must not have leading or trailing whitespace"))
    if pod.spec.ephemeral_containers:
        errs.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
    return errs


def validate_pod_update(new: core_pb2.Pod, old: core_pb2.Pod) -> Errors:
    errs: Errors = []
    meta.object_meta_update(errs, new.metadata, old.metadata)
    ns, os_ = new.spec, old.spec
    for path, new_cs, old_cs in (("spec.containers", ns.containers, os_.containers),
                                 ("spec.initContainers", ns.init_containers, os_.init_containers)):
        if len(new_cs) != len(old_cs):
            errs.append(forbidden(path, "pod updates may not add or remove containers"))
            return errs
    if ns.HasField("active_deadline_seconds"):
        if ns.active_deadline_seconds < 0:
            errs.append(invalid("spec.activeDeadlineSeconds", ns.active_deadline_seconds,
                                field.inclusive_range_error(0, podspec.MAX_INT32)))
            return errs
        if os_.HasField("active_deadline_seconds") and os_.active_deadline_seconds < ns.active_deadline_seconds:
            errs.append(invalid("spec.activeDeadlineSeconds", ns.active_deadline_seconds,
                                "must be less than or equal to previous value"))
            return errs
    elif os_.HasField("active_deadline_seconds"):
        errs.append(invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"))
    _only_added_tolerations(errs, ns.tolerations, os_.tolerations)
    if ns == os_:
        return errs
    munged = core_pb2.PodSpec()
    munged.CopyFrom(ns)
    for new_c, old_c in zip(munged.containers, os_.containers, strict=True):
        new_c.image = old_c.image
    for new_c, old_c in zip(munged.init_containers, os_.init_containers, strict=True):
        new_c.image = old_c.image
    if os_.HasField("active_deadline_seconds"):
        munged.active_deadline_seconds = os_.active_deadline_seconds
    else:
        munged.ClearField("active_deadline_seconds")
    del munged.tolerations[:]
    munged.tolerations.extend(os_.tolerations)
    if not os_.node_name:
        munged.node_name = ""  # a binding
    if (os_.HasField("termination_grace_period_seconds") and os_.termination_grace_period_seconds < 0
            and munged.HasField("termination_grace_period_seconds") and munged.termination_grace_period_seconds == 1):
        munged.termination_grace_period_seconds = os_.termination_grace_period_seconds
    if munged != os_:
        changed = ", ".join(_changed_fields(munged, os_))
        errs.append(forbidden("spec", f"pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n"
                                      f"changed: {changed}"))
    return errs


def _changed_fields(new: core_pb2.PodSpec, old: core_pb2.PodSpec) -> list[str]:
    out = []
    for fd in new.DESCRIPTOR.fields:
        if getattr(new, fd.name) != getattr(old, fd.name) or (
                fd.has_presence and new.HasField(fd.name) != old.HasField(fd.name)):
            out.append("spec." + fd.json_name)
    return out


def _only_added_tolerations(errs: Errors, new: Sequence[core_pb2.Toleration],
                            old: Sequence[core_pb2.Toleration]) -> None:
    kept = {(t.key, t.operator, t.value, t.effect) for t in new}
    for t in old:
        if (t.key, t.operator, t.value, t.effect) not in kept:
            errs.append(forbidden("spec.tolerations", "existing toleration can not be modified except its "
                                                      "tolerationSeconds"))
            return


def validate_pod_status_update(new: core_pb2.Pod, old: core_pb2.Pod) -> Errors:
    errs: Errors = []
    old_phase, new_phase = old.status.phase, new.status.phase
    if old_phase in TERMINAL_PHASES and new_phase != old_phase:
        errs.append(invalid("status.phase", new_phase, f'may not change once the pod is in the terminal phase '
                                                       f'"{old_phase}"'))
    for i, cond in enumerate(new.status.conditions):
        if cond.type not in _SYSTEM_CONDITIONS:
            field.qualified_name_field(errs, cond.type, idx("status.conditions", i) + ".type")
    policy = old.spec.restart_policy
    _state_transitions(errs, new.status.container_statuses, old.status.container_statuses,
                       "status.containerStatuses", policy, set())
    sidecars = {c.name for c in old.spec.init_containers
                if c.HasField("restart_policy") and c.restart_policy == "Always"}
    _state_transitions(errs, new.status.init_container_statuses, old.status.init_container_statuses,
                       "status.initContainerStatuses", policy, sidecars)
    return errs


def _state_transitions(errs: Errors, new: Sequence[core_pb2.ContainerStatus], old: Sequence[core_pb2.ContainerStatus],
                       path: str, policy: str, restartable: set[str]) -> None:
    """A container that finished for good (per restartPolicy) may not be reported running again."""
    if policy == "Always" or not old:
        return
    by_name = {s.name: s for s in new}
    for i, before in enumerate(old):
        if not before.state.HasField("terminated") or before.name in restartable:
            continue
        if before.state.terminated.exit_code != 0 and policy == "OnFailure":
            continue
        after = by_name.get(before.name)
        if after is not None and not after.state.HasField("terminated"):
            errs.append(forbidden(idx(path, i) + ".state", "may not be transitioned to non-terminated state"))
