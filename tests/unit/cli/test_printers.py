"""kubectl's tables: columns and cells per kind, ages, and the other output formats, at a fixed now."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from ketch.api import manifest, timeutil
from ketch.api.kinds import resolve
from ketch.cli import printers

NOW = timeutil.parse("2026-01-01T12:00:00Z")


def ago(seconds: float) -> str:
    return timeutil.format(NOW - seconds)


def obj(doc: dict[str, Any]) -> Any:
    return manifest.from_dict(doc)


@pytest.mark.parametrize(
    ("seconds", "want"),
    [(-5, "<invalid>"), (-0.5, "0s"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (200, "3m20s"),
     (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (5 * 3600 + 4 * 60, "5h4m"), (30 * 3600, "30h"),
     (3 * 86400 + 4 * 3600, "3d4h"), (300 * 86400, "300d"), (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y")],
)
def test_human_duration_matches_kubectl(seconds: float, want: str) -> None:
    assert printers.human_duration(seconds) == want


def pod(phase: str = "Running", statuses: list[dict[str, Any]] | None = None, deleting: bool = False,
        conditions: list[dict[str, Any]] | None = None, init: list[dict[str, Any]] | None = None,
        containers: int = 1, **status: Any) -> Any:
    md: dict[str, Any] = {"name": "p", "namespace": "default", "creationTimestamp": ago(65)}
    if deleting:
        md["deletionTimestamp"] = ago(1)
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "command": ["x"]} for i in range(containers)],
                            "nodeName": "node-1"}
    if init is not None:
        spec["initContainers"] = [{"name": f"i{i}", "command": ["x"]} for i in range(len(init))]
    return obj({"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec,
                "status": {"phase": phase, "containerStatuses": statuses or [], "conditions": conditions or [],
                           "initContainerStatuses": init or [], "podIP": "10.0.0.7", **status}})


COMPLETED = [{"name": "c0", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
CRASHING = [{"name": "c0", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(20)}}}]
RUNNING = {"name": "c0", "ready": True, "restartCount": 0, "state": {"running": {"startedAt": ago(60)}}}


@pytest.mark.parametrize(
    ("the_pod", "ready", "status", "restarts"),
    [
        pytest.param(pod("Pending"), "0/1", "Pending", "0", id="pending without statuses"),
        pytest.param(pod(statuses=[RUNNING]), "1/1", "Running", "0", id="running and ready"),
        pytest.param(pod(statuses=[{**RUNNING, "ready": False}]), "0/1", "Running", "0",
                     id="running but not ready counts as not ready"),
        pytest.param(pod("Succeeded", COMPLETED), "0/1", "Completed", "0", id="completed"),
        pytest.param(pod("Failed", [{"name": "c0", "state": {"terminated": {"exitCode": 3}}}]),
                     "0/1", "ExitCode:3", "0", id="terminated without a reason shows the exit code"),
        pytest.param(pod("Failed", [{"name": "c0", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]),
                     "0/1", "Signal:9", "0", id="killed by a signal"),
        pytest.param(pod(statuses=CRASHING), "0/1", "CrashLoopBackOff", "3 (20s ago)",
                     id="crash loop with the last restart's age"),
        pytest.param(pod(statuses=[RUNNING], deleting=True), "1/1", "Terminating", "0", id="terminating"),
        pytest.param(pod("Succeeded", COMPLETED, deleting=True), "0/1", "Completed", "0",
                     id="a terminal pod being deleted keeps its phase"),
        pytest.param(pod(statuses=[RUNNING], deleting=True, reason="NodeLost"), "1/1", "Unknown", "0",
                     id="node lost"),
        pytest.param(pod("Pending", init=[{"name": "i0", "state": {"running": {}}}]), "0/1", "Init:0/1", "0",
                     id="init container running"),
        pytest.param(pod("Pending", init=[{"name": "i0", "state": {"terminated": {"exitCode": 2}}}]), "0/1",
                     "Init:ExitCode:2", "0", id="init container failed"),
        pytest.param(pod("Running", containers=2, conditions=[{"type": "Ready", "status": "False"}],
                         statuses=[{"name": "c0", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                                   {**RUNNING, "name": "c1"}]),
                     "1/2", "NotReady", "0", id="completed container beside a running one"),
    ],
)
def test_pod_columns(the_pod: Any, ready: str, status: str, restarts: str) -> None:
    row = printers.pod_row(the_pod, NOW, False)
    assert row == ["p", ready, status, restarts, "65s"]


def test_pod_wide_shows_ip_and_node() -> None:
    row = printers.pod_row(pod(statuses=[RUNNING]), NOW, True)
    assert row[5:] == ["10.0.0.7", "node-1", "<none>", "<none>"]


def job(spec: dict[str, Any], status: dict[str, Any], deleting: bool = False) -> Any:
    md: dict[str, Any] = {"name": "pi", "namespace": "default", "creationTimestamp": ago(100)}
    if deleting:
        md["deletionTimestamp"] = ago(1)
    template = {"spec": {"containers": [{"name": "pi", "image": "perl", "command": ["perl"]}],
                         "restartPolicy": "Never"}}
    return obj({"apiVersion": "batch/v1", "kind": "Job", "metadata": md, "spec": {**spec, "template": template},
                "status": status})


def cond(ctype: str, status: str = "True") -> dict[str, Any]:
    return {"type": ctype, "status": status}


@pytest.mark.parametrize(
    ("the_job", "want"),
    [
        pytest.param(job({"completions": 8, "parallelism": 2}, {"succeeded": 3, "startTime": ago(90)}),
                     ["pi", "Running", "3/8", "90s", "100s"], id="running, duration so far"),
        pytest.param(job({"completions": 8}, {"succeeded": 8, "startTime": ago(90), "completionTime": ago(30),
                                               "conditions": [cond("SuccessCriteriaMet"), cond("Complete")]}),
                     ["pi", "Complete", "8/8", "60s", "100s"], id="complete, duration to completion"),
        pytest.param(job({"parallelism": 3}, {"succeeded": 1}), ["pi", "Running", "1/1 of 3", "", "100s"],
                     id="work queue with parallelism"),
        pytest.param(job({}, {"conditions": [cond("FailureTarget"), cond("Failed")]}),
                     ["pi", "Failed", "0/1", "", "100s"], id="failed"),
        pytest.param(job({"completions": 2}, {"conditions": [cond("Suspended")]}),
                     ["pi", "Suspended", "0/2", "", "100s"], id="suspended"),
        pytest.param(job({"completions": 2}, {"conditions": [cond("Suspended")]}, deleting=True),
                     ["pi", "Terminating", "0/2", "", "100s"], id="terminating wins over suspended"),
        pytest.param(job({"completions": 2}, {"conditions": [cond("Complete", "False"), cond("FailureTarget")]}),
                     ["pi", "FailureTarget", "0/2", "", "100s"], id="failure target"),
    ],
)
def test_job_row(the_job: Any, want: list[str]) -> None:
    assert printers.job_row(the_job, NOW, False) == want


def test_cronjob_row() -> None:
    cj = obj({"apiVersion": "batch/v1", "kind": "CronJob",
              "metadata": {"name": "tick", "creationTimestamp": ago(3600)},
              "spec": {"schedule": "*/2 * * * * *", "suspend": False, "jobTemplate": {"spec": {"template": {
                  "spec": {"containers": [{"name": "t", "command": ["true"]}], "restartPolicy": "Never"}}}}},
              "status": {"active": [{"name": "tick-1"}], "lastScheduleTime": ago(2)}})
    assert printers.cronjob_row(cj, NOW, False) == ["tick", "*/2 * * * * *", "<none>", "False", "1", "2s", "60m"]
    rows = printers.table(resolve("cj"), [cj], now=NOW)
    assert rows[0] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"]


def test_daemonset_row() -> None:
    ds = obj({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d", "creationTimestamp": ago(10)},
              "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                  "metadata": {"labels": {"a": "b"}},
                  "spec": {"nodeSelector": {"zone": "x", "disk": "ssd"},
                           "containers": [{"name": "c", "command": ["x"]}]}}},
              "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                         "updatedNumberScheduled": 1, "numberAvailable": 2}})
    assert printers.daemonset_row(ds, NOW, False) == ["d", "3", "3", "2", "1", "2", "disk=ssd,zone=x", "10s"]


@pytest.mark.parametrize(
    ("conditions", "unschedulable", "want"),
    [([cond("Ready")], False, "Ready"), ([cond("Ready")], True, "Ready,SchedulingDisabled"),
     ([cond("Ready", "Unknown")], False, "NotReady"), ([], True, "Unknown,SchedulingDisabled")],
)
def test_node_status(conditions: list[dict[str, Any]], unschedulable: bool, want: str) -> None:
    node = obj({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "creationTimestamp": ago(7200),
                                                                  "labels": {"node-role.kubernetes.io/worker": ""}},
                "spec": {"unschedulable": unschedulable},
                "status": {"conditions": conditions, "nodeInfo": {"kubeletVersion": "v1.31.0-ketch"}}})
    assert printers.node_row(node, NOW, False) == ["n", want, "worker", "120m", "v1.31.0-ketch"]


def test_event_row_and_sorting() -> None:
    def ev(name: str, last: float, count: int = 1) -> Any:
        return obj({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": "default"},
                    "involvedObject": {"kind": "Job", "name": "pi"}, "reason": "SuccessfulCreate", "type": "Normal",
                    "message": "Created pod: pi-x ", "firstTimestamp": ago(last + 5), "lastTimestamp": ago(last),
                    "count": count})
    events = [ev("b", 1), ev("a", 30)]
    assert printers.event_row(events[0], NOW, False) == ["1s", "Normal", "SuccessfulCreate", "job/pi",
                                                         "Created pod: pi-x"]
    assert [e.metadata.name for e in sorted(events, key=printers.event_time)] == ["a", "b"]


def test_table_with_namespaces_and_labels() -> None:
    p = pod(statuses=[RUNNING])
    p.metadata.labels["app"] = "x"
    rows = printers.table(resolve("po"), [p], all_namespaces=True, show_labels=True, now=NOW)
    assert rows == [["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS"],
                    ["default", "p", "1/1", "Running", "0", "65s", "app=x"]]


def render(objs: list[Any], output: str, single: bool = False) -> str:
    out = io.StringIO()
    printers.print_objects(out, objs, output, single, resolve("jobs"), now=NOW)
    return out.getvalue()


def test_json_of_a_list_is_a_kubernetes_list() -> None:
    doc = json.loads(render([job({}, {})], "json"))
    assert doc["apiVersion"] == "v1" and doc["kind"] == "List"
    assert [i["metadata"]["name"] for i in doc["items"]] == ["pi"]
    assert json.loads(render([job({}, {})], "json", single=True))["kind"] == "Job"


def test_name_jsonpath_and_custom_columns() -> None:
    j = job({"completions": 8}, {"succeeded": 2})
    assert render([j], "name") == "job.batch/pi\n"
    assert render([j], "jsonpath={.items[*].metadata.name}") == "pi"
    assert render([j], "jsonpath={.status.succeeded}/{.spec.completions}", single=True) == "2/8"
    assert render([j], "custom-columns=NAME:.metadata.name,DONE:.status.succeeded,X:.spec.nope") == (
        "NAME   DONE   X\npi     2      <none>\n")


def test_unknown_output_format_is_an_error() -> None:
    with pytest.raises(ValueError, match='output format "toml"'):
        render([], "toml")


def test_sort_by_numbers_and_text() -> None:
    jobs = [job({"completions": c}, {}) for c in (10, 2, 33)]
    for j, name in zip(jobs, ("b", "c", "a"), strict=True):
        j.metadata.name = name
    assert [j.spec.completions for j in printers.sort_objects(jobs, ".spec.completions")] == [2, 10, 33]
    assert [j.metadata.name for j in printers.sort_objects(jobs, "{.metadata.name}")] == ["a", "b", "c"]


def test_rbac_tables_as_kubectl_prints_them() -> None:
    g = "rbac.authorization.k8s.io"
    role = obj({"apiVersion": f"{g}/v1", "kind": "ClusterRole",
                "metadata": {"name": "view", "creationTimestamp": ago(3600)}})
    assert printers.table(resolve("clusterroles"), [role], now=NOW) == [
        ["NAME", "CREATED AT"], ["view", "2026-01-01T11:00:00Z"]]
    binding = obj({"apiVersion": f"{g}/v1", "kind": "RoleBinding",
                   "metadata": {"name": "devs", "namespace": "team", "creationTimestamp": ago(120)},
                   "roleRef": {"apiGroup": g, "kind": "ClusterRole", "name": "edit"},
                   "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
                                {"kind": "Group", "name": "dev"},
                                {"kind": "ServiceAccount", "name": "ci", "namespace": "build"}]})
    assert printers.table(resolve("rolebinding"), [binding], wide=True, now=NOW) == [
        ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
        ["devs", "ClusterRole/edit", "2m", "alice, bob", "dev", "build/ci"]]
