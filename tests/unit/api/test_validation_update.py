"""Update and status-update rules: what may change on a Pod, Job, CronJob, DaemonSet, Node and
ControllerRevision after creation, and which status transitions are refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf.message import Message

from ketch.v1 import apps_pb2, batch_pb2, core_pb2

from .objects import (
    CRONJOB,
    DAEMONSET,
    JOB,
    NODE,
    POD,
    REVISION,
    UID,
    apply_defaults,
    server_view,
    validate_create,
    validate_status_update,
    validate_update,
)

POD_FIELDS = ("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
              "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
              "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
              'previously negative),`spec.nodeName` (only from "" to a node, as a binding)\nchanged: ')

SELECTOR = f'{{"matchLabels": {{"batch.kubernetes.io/controller-uid": "{UID}", "x": "y"}}}}'
LABELS = (f'map[string]string{{"batch.kubernetes.io/controller-uid":"{UID}", "batch.kubernetes.io/job-name":"pi", '
          f'"controller-uid":"{UID}", "job-name":"pi"}}')


@dataclass(frozen=True)
class Case:
    name: str
    doc: dict[str, Any]
    change: Callable[[Any], None]
    errors: tuple[str, ...] = ()
    old_changes: dict[str, Any] | None = None
    setup_old: Callable[[Any], None] | None = None


def _job_status(job: batch_pb2.Job) -> None:
    job.status.start_time = "2024-05-01T12:00:00Z"


def tol(spec: core_pb2.PodSpec, key: str, seconds: int | None = None) -> None:
    t = spec.tolerations.add(key=key, operator="Exists", effect="NoExecute")
    if seconds is not None:
        t.toleration_seconds = seconds


def add_container(p: core_pb2.Pod) -> None:
    p.spec.containers.add(name="two", command=["true"])


SPEC_CASES = [
    Case("a pod's image may change", POD, lambda p: setattr(p.spec.containers[0], "image", "perl:5.40")),
    Case("a binding sets nodeName once", POD, lambda p: setattr(p.spec, "node_name", "node-a")),
    Case("a bound pod may not move", POD, lambda p: setattr(p.spec, "node_name", "node-b"),
         (POD_FIELDS + "spec.nodeName",), old_changes={"spec": {"nodeName": "node-a"}}),
    Case("a pod's restartPolicy is fixed", POD, lambda p: setattr(p.spec, "restart_policy", "Never"),
         (POD_FIELDS + "spec.restartPolicy",)),
    Case("a pod's command is fixed", POD, lambda p: p.spec.containers[0].command.append("x"),
         (POD_FIELDS + "spec.containers",)),
    Case("containers may not be added", POD, add_container,
         ("spec.containers: Forbidden: pod updates may not add or remove containers",)),
    Case("activeDeadlineSeconds may be set", POD, lambda p: setattr(p.spec, "active_deadline_seconds", 30)),
    Case("activeDeadlineSeconds may be lowered", POD, lambda p: setattr(p.spec, "active_deadline_seconds", 20),
         old_changes={"spec": {"activeDeadlineSeconds": 30}}),
    Case("activeDeadlineSeconds may not be raised", POD, lambda p: setattr(p.spec, "active_deadline_seconds", 40),
         ("spec.activeDeadlineSeconds: Invalid value: 40: must be less than or equal to previous value",),
         old_changes={"spec": {"activeDeadlineSeconds": 30}}),
    Case("activeDeadlineSeconds may not be removed", POD, lambda p: p.spec.ClearField("active_deadline_seconds"),
         ("spec.activeDeadlineSeconds: Invalid value: null: must not update from a positive integer to nil value",),
         old_changes={"spec": {"activeDeadlineSeconds": 30}}),
    Case("tolerations may be added", POD, lambda p: tol(p.spec, "example.com/maintenance")),
    Case("tolerationSeconds may change", POD, lambda p: setattr(p.spec.tolerations[0], "toleration_seconds", 5)),
    Case("tolerations may not be removed", POD, lambda p: p.spec.tolerations.pop(),
         ("spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds",)),
    Case("pod labels may change", POD, lambda p: p.metadata.labels.update({"x": "y"})),
    Case("a Job's parallelism, suspend, deadline and backoffLimit may change", JOB,
         lambda j: (setattr(j.spec, "parallelism", 3), setattr(j.spec, "suspend", True),
                    setattr(j.spec, "active_deadline_seconds", 60), setattr(j.spec, "backoff_limit", 2),
                    setattr(j.spec, "ttl_seconds_after_finished", 10))),
    Case("a NonIndexed Job's completions are fixed", JOB, lambda j: setattr(j.spec, "completions", 5),
         ("spec.completions: Invalid value: 5: field is immutable",)),
    Case("an Indexed Job scales completions with parallelism", JOB,
         lambda j: (setattr(j.spec, "completions", 5), setattr(j.spec, "parallelism", 5)),
         old_changes={"spec": {"completionMode": "Indexed", "completions": 3, "parallelism": 3}}),
    Case("an Indexed Job changes completions only in tandem", JOB, lambda j: setattr(j.spec, "completions", 5),
         ("spec.completions: Invalid value: 5: can only be modified in tandem with spec.parallelism",),
         old_changes={"spec": {"completionMode": "Indexed", "completions": 3, "parallelism": 3}}),
    Case("completionMode is fixed", JOB, lambda j: setattr(j.spec, "completion_mode", "Indexed"),
         ('spec.completionMode: Invalid value: "Indexed": field is immutable',)),
    Case("the template is fixed", JOB, lambda j: j.spec.template.spec.containers[0].command.append("x"),
         ("spec.template: Invalid value: field is immutable",)),
    Case("a suspended Job that never started may change scheduling directives", JOB,
         lambda j: (j.spec.template.spec.node_selector.update({"disk": "ssd"}), tol(j.spec.template.spec, "k"),
                    j.spec.template.metadata.labels.update({"team": "a"})),
         old_changes={"spec": {"suspend": True}}),
    Case("a suspended Job may not change its command", JOB,
         lambda j: j.spec.template.spec.containers[0].command.append("x"),
         ("spec.template: Invalid value: field is immutable",), old_changes={"spec": {"suspend": True}}),
    Case("a suspended Job that has started may not change scheduling directives", JOB,
         lambda j: j.spec.template.spec.node_selector.update({"disk": "ssd"}),
         ("spec.template: Invalid value: field is immutable",), old_changes={"spec": {"suspend": True}},
         setup_old=_job_status),
    Case("the selector is fixed (and must stay the generated one)", JOB,
         lambda j: j.spec.selector.match_labels.update({"x": "y"}),
         (f"spec.selector: Invalid value: {SELECTOR}: `selector` not auto-generated",
          f"spec.template.metadata.labels: Invalid value: {LABELS}: `selector` does not match template `labels`",
          f"spec.selector: Invalid value: {SELECTOR}: field is immutable")),
    Case("a pod failure policy cannot be added later", JOB,
         lambda j: j.spec.pod_failure_policy.rules.add(action="Ignore").on_pod_conditions.add(type="DisruptionTarget"),
         ('spec.podReplacementPolicy: Unsupported value: "TerminatingOrFailed": supported values: "Failed"',
          'spec.podFailurePolicy: Invalid value: {"rules": [{"action": "Ignore", "onPodConditions": [{"status": '
          '"True", "type": "DisruptionTarget"}]}]}: field is immutable')),
    Case("backoffLimitPerIndex is fixed", JOB, lambda j: setattr(j.spec, "backoff_limit_per_index", 2),
         ("spec.backoffLimitPerIndex: Invalid value: 2: field is immutable",),
         old_changes={"spec": {"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1}}),
    Case("a CronJob's schedule may change", CRONJOB, lambda c: setattr(c.spec, "schedule", "@daily")),
    Case("a DaemonSet's template may change", DAEMONSET,
         lambda d: d.spec.template.spec.containers[0].command.append("x")),
    Case("a DaemonSet's selector is fixed", DAEMONSET,
         lambda d: (d.spec.selector.match_labels.update({"v": "2"}),
                    d.spec.template.metadata.labels.update({"v": "2"})),
         ('spec.selector: Invalid value: {"matchLabels": {"app": "agentd", "v": "2"}}: field is immutable',)),
    Case("a node's taints may change", NODE, lambda n: n.spec.taints.add(key="k", effect="NoSchedule")),
    Case("a node's providerID is fixed once set", NODE, lambda n: setattr(n.spec, "provider_id", "b"),
         ('spec.providerID: Forbidden: node updates may not change providerID except from "" to valid',),
         old_changes={"spec": {"providerID": "a"}}),
    Case("a revision may be renumbered", REVISION, lambda r: setattr(r, "revision", 5)),
    Case("a revision's data is fixed", REVISION, lambda r: r.data.update({"x": 1}),
         ("data: Invalid value: field is immutable",)),
]


def _pair(case: Case) -> tuple[Message, Message]:
    old = server_view(case.doc, case.old_changes)
    if case.setup_old is not None:
        case.setup_old(old)
    new = type(old)()
    new.CopyFrom(old)
    case.change(new)
    return new, old


@pytest.mark.parametrize("case", SPEC_CASES, ids=[c.name for c in SPEC_CASES])
def test_validate_update(case: Case) -> None:
    new, old = _pair(case)
    apply_defaults(new)
    errs = validate_create(new) + validate_update(new, old)
    assert [str(e) for e in errs] == list(case.errors)


def finished(ctype: str) -> Callable[[Any], None]:
    def go(obj: Any) -> None:
        obj.status.conditions.add(type=ctype, status="True")
    return go


def container_state(phase: str, exit_code: int | None) -> Callable[[Any], None]:
    def go(p: core_pb2.Pod) -> None:
        p.status.phase = phase
        s = p.status.container_statuses.add(name="main")
        if exit_code is None:
            s.state.running.started_at = "2024-05-01T12:00:00Z"
        else:
            s.state.terminated.exit_code = exit_code
    return go


def clear_statuses(p: core_pb2.Pod) -> None:
    del p.status.container_statuses[:]


def _running(p: core_pb2.Pod) -> None:
    clear_statuses(p)
    container_state("Running", None)(p)


STATUS_CASES = [
    Case("a running pod may succeed", POD, container_state("Succeeded", 0), setup_old=container_state("Running", None)),
    Case("a succeeded pod stays succeeded", POD, lambda p: setattr(p.status, "phase", "Running"),
         ('status.phase: Invalid value: "Running": may not change once the pod is in the terminal phase "Succeeded"',),
         setup_old=lambda p: setattr(p.status, "phase", "Succeeded")),
    Case("a failed pod stays failed", POD, lambda p: setattr(p.status, "phase", "Pending"),
         ('status.phase: Invalid value: "Pending": may not change once the pod is in the terminal phase "Failed"',),
         setup_old=lambda p: setattr(p.status, "phase", "Failed")),
    Case("a finished container of a Never pod is not restarted", POD, _running,
         ("status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state",),
         old_changes={"spec": {"restartPolicy": "Never"}}, setup_old=container_state("Running", 0)),
    Case("a failed container of an OnFailure pod restarts", POD, _running,
         old_changes={"spec": {"restartPolicy": "OnFailure"}}, setup_old=container_state("Running", 1)),
    Case("an Always pod restarts anything", POD, _running, setup_old=container_state("Running", 0)),
    Case("job counters are not negative", JOB, lambda j: setattr(j.status, "active", -1),
         ("status.active: Invalid value: -1: must be greater than or equal to 0",)),
    Case("the failed counter never decreases", JOB, lambda j: setattr(j.status, "failed", 1),
         ("status.failed: Invalid value: 1: cannot decrease the failed counter",),
         setup_old=lambda j: setattr(j.status, "failed", 2)),
    Case("a terminal condition stays", JOB, lambda j: j.status.ClearField("conditions"),
         ("status.conditions: Invalid value: cannot disable the terminal Complete=True condition",),
         setup_old=finished("Complete")),
    Case("Complete and Failed exclude each other", JOB, finished("Failed"),
         ("status.conditions: Invalid value: cannot set Complete=True and Failed=true conditions",),
         setup_old=finished("Complete")),
    Case("SuccessCriteriaMet and Failed exclude each other", JOB,
         lambda j: (finished("SuccessCriteriaMet")(j), finished("FailureTarget")(j), finished("Failed")(j)),
         ("status.conditions: Invalid value: cannot set SuccessCriteriaMet=True and Failed=true conditions",
          "status.conditions: Invalid value: cannot set SuccessCriteriaMet=True and FailureTarget=true conditions")),
    Case("SuccessCriteriaMet and FailureTarget exclude each other", JOB,
         lambda j: (finished("SuccessCriteriaMet")(j), finished("FailureTarget")(j)),
         ("status.conditions: Invalid value: cannot set SuccessCriteriaMet=True and FailureTarget=true conditions",)),
    Case("with a successPolicy, Complete needs SuccessCriteriaMet", JOB, finished("Complete"),
         ("status.conditions: Invalid value: cannot set Complete=True for Job with SuccessPolicy unless "
          "SuccessCriteriaMet=True",),
         old_changes={"spec": {"completionMode": "Indexed", "completions": 5, "parallelism": 2,
                               "successPolicy": {"rules": [{"succeededCount": 1}]}}}),
    Case("with a successPolicy, Complete after SuccessCriteriaMet is valid", JOB,
         lambda j: (finished("SuccessCriteriaMet")(j), finished("Complete")(j)),
         old_changes={"spec": {"completionMode": "Indexed", "completions": 5, "parallelism": 2,
                               "successPolicy": {"rules": [{"succeededCount": 1}]}}}),
    Case("SuccessCriteriaMet may not follow Complete", JOB, finished("SuccessCriteriaMet"),
         ("status.conditions: Invalid value: cannot set SuccessCriteriaMet=True for Job already has "
          "Complete=true conditions",),
         setup_old=finished("Complete")),
    Case("SuccessCriteriaMet on a NonIndexed Job without successPolicy is valid (1.31's extended scope)", JOB,
         lambda j: (finished("SuccessCriteriaMet")(j), finished("Complete")(j))),
    Case("completed indexes in order are valid", JOB, lambda j: setattr(j.status, "completed_indexes", "0,2-4"),
         old_changes={"spec": {"completionMode": "Indexed", "completions": 5, "parallelism": 2}}),
    Case("completed indexes must be ascending", JOB, lambda j: setattr(j.status, "completed_indexes", "3-1"),
         ('status.completedIndexes: Invalid value: "3-1": error parsing completedIndexes: non-increasing order, '
          "previous: 3, current: 1",),
         old_changes={"spec": {"completionMode": "Indexed", "completions": 5, "parallelism": 2}}),
    Case("completed indexes below completions", JOB, lambda j: setattr(j.status, "completed_indexes", "0,5"),
         ('status.completedIndexes: Invalid value: "0,5": error parsing completedIndexes: too large index: "5"',),
         old_changes={"spec": {"completionMode": "Indexed", "completions": 5, "parallelism": 2}}),
    Case("no completed indexes on a NonIndexed job", JOB, lambda j: setattr(j.status, "completed_indexes", "0"),
         ('status.completedIndexes: Invalid value: "0": cannot set non-empty completedIndexes when non-indexed '
          "completion mode",)),
    Case("uncounted pods are listed once", JOB,
         lambda j: (j.status.uncounted_terminated_pods.succeeded.append("u1"),
                    j.status.uncounted_terminated_pods.failed.append("u1")),
         ('status.uncountedTerminatedPods.failed[0]: Duplicate value: "u1"',)),
    Case("a node's status may not publish a link in place of an address", NODE,
         lambda n: n.status.addresses.add(type="InternalIP", address="169.254.169.254:80/latest"),
         ('status.addresses[0].address: Invalid value: "169.254.169.254:80/latest": must be a valid IP address, '
          "(e.g. 10.9.8.7 or 2001:db8::ffff)",)),
    Case("a node's status may not publish port 0x10000", NODE,
         lambda n: setattr(n.status.daemon_endpoints.kubelet_endpoint, "port", 65536),
         ("status.daemonEndpoints.kubeletEndpoint.Port: Invalid value: 65536: must be between 1 and 65535, "
          "inclusive",)),
    Case("a DaemonSet collision count never decreases", DAEMONSET, lambda d: setattr(d.status, "collision_count", 0),
         ("status.collisionCount: Invalid value: 0: cannot be decremented",),
         setup_old=lambda d: setattr(d.status, "collision_count", 1)),
]


@pytest.mark.parametrize("case", STATUS_CASES, ids=[c.name for c in STATUS_CASES])
def test_validate_status_update(case: Case) -> None:
    new, old = _pair(case)
    errs = validate_status_update(new, old)
    assert [str(e) for e in errs] == list(case.errors)


def test_status_kinds_without_rules_accept_anything() -> None:
    cj = batch_pb2.CronJob()
    assert validate_status_update(cj, batch_pb2.CronJob()) == []
    assert validate_update(apps_pb2.ControllerRevision(), apps_pb2.ControllerRevision()) == []
