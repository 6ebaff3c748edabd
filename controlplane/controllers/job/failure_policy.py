"""spec.podFailurePolicy: which rule a failed pod matches, and what that means.

Rules are tried in order and the first match wins. onExitCodes looks at containers (then init
containers) that terminated with a non-zero exit code, optionally only the named one; In/NotIn
compare the code with the listed values (exit code 0 never matches). onPodConditions matches
a pod condition with the same type and status. Pure; called by the Job controller's sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ketch.v1 import core_pb2

FAIL_JOB = "FailJob"
FAIL_INDEX = "FailIndex"
IGNORE = "Ignore"
COUNT = "Count"


@dataclass(frozen=True, slots=True)
class Match:
    """The outcome for one failed pod.

    message: set when a FailJob rule matched (the FailureTarget condition's message).
    count_failed: whether the failure counts toward backoffLimit (False only for Ignore).
    action: the matched rule's action, or None when no rule matched.
    """

    message: str | None
    count_failed: bool
    action: str | None


NO_MATCH = Match(None, True, None)


def _matching_container(statuses: Any, req: Any) -> Any | None:
    name = req.container_name if req.HasField("container_name") else None
    for cs in statuses:
        if name is not None and cs.name != name:
            continue
        if not cs.state.HasField("terminated"):
            continue
        code = cs.state.terminated.exit_code
        if code == 0:
            continue
        if req.operator == "In" and code in req.values:
            return cs
        if req.operator == "NotIn" and code not in req.values:
            return cs
    return None


def _match_exit_codes(pod: core_pb2.Pod, req: Any) -> Any | None:
    cs = _matching_container(pod.status.container_statuses, req)
    if cs is None:
        cs = _matching_container(pod.status.init_container_statuses, req)
    return cs


def _match_conditions(pod: core_pb2.Pod, patterns: Any) -> Any | None:
    for cond in pod.status.conditions:
        for pattern in patterns:
            status = pattern.status or "True"
            if pattern.type == cond.type and status == cond.status:
                return cond
    return None


def match(policy: Any | None, pod: core_pb2.Pod) -> Match:
    """Kubernetes' matchPodFailurePolicy for a failed pod; policy None means no policy."""
    if policy is None:
        return NO_MATCH
    md = pod.metadata
    for index, rule in enumerate(policy.rules):
        action = rule.action
        if action not in (FAIL_JOB, FAIL_INDEX, IGNORE, COUNT):
            continue  # an action this version does not know: skipped, as Kubernetes does
        if rule.HasField("on_exit_codes"):
            cs = _match_exit_codes(pod, rule.on_exit_codes)
            if cs is None:
                continue
            if action == FAIL_JOB:
                msg = (f"Container {cs.name} for pod {md.namespace}/{md.name} failed with exit code "
                       f"{cs.state.terminated.exit_code} matching {action} rule at index {index}")
                return Match(msg, True, FAIL_JOB)
        elif len(rule.on_pod_conditions):
            cond = _match_conditions(pod, rule.on_pod_conditions)
            if cond is None:
                continue
            if action == FAIL_JOB:
                msg = f"Pod {md.namespace}/{md.name} has condition {cond.type} matching {action} rule at index {index}"
                return Match(msg, True, FAIL_JOB)
        else:
            continue
        if action == IGNORE:
            return Match(None, False, IGNORE)
        return Match(None, True, action)
    return NO_MATCH
