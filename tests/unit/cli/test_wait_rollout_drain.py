"""The pure decisions behind wait, rollout status and drain."""

from __future__ import annotations

from typing import Any

import pytest

from ketch.api import manifest
from ketch.cli.cmd_nodes import plan_drain
from ketch.cli.cmd_rollout import status_line, stuck_nodes
from ketch.cli.cmd_wait import condition_met, parse_for, parse_jsonpath_for
from ketch.cli.main import CLIError


def job_doc(conditions: list[dict[str, Any]], generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "pi", "generation": generation}, "status": {"conditions": conditions}}


@pytest.mark.parametrize(
    ("conditions", "ctype", "value", "met"),
    [
        ([{"type": "Complete", "status": "True"}], "Complete", "true", True),
        ([{"type": "Complete", "status": "True"}], "complete", "True", True),
        ([{"type": "Complete", "status": "False"}], "Complete", "true", False),
        ([{"type": "Complete", "status": "False"}], "Complete", "false", True),
        ([], "Complete", "true", False),
        ([{"type": "Ready", "status": "True", "observedGeneration": 1}], "Ready", "true", False),
    ],
)
def test_condition_met(conditions: list[dict[str, Any]], ctype: str, value: str, met: bool) -> None:
    assert condition_met(job_doc(conditions, generation=2), ctype, value) is met


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [("{.status.phase}=Running", "{.status.phase}", "Running"), ("'{.status.phase}'=Running", "{.status.phase}",
                                                                   "Running"),
     ("{.status.succeeded}", "{.status.succeeded}", None), (".status.phase=Failed", "{.status.phase}", "Failed")],
)
def test_parse_jsonpath_for(text: str, path: str, value: str | None) -> None:
    assert parse_jsonpath_for(text) == (path, value)


def test_parse_for() -> None:
    assert parse_for("delete").check(None)
    assert parse_for("create").check(object())
    with pytest.raises(CLIError):
        parse_for("ready")
    with pytest.raises(CLIError):
        parse_for("condition")


def ds(generation: int = 2, observed: int = 2, desired: int = 3, updated: int = 3, available: int = 3,
       strategy: str = "RollingUpdate") -> Any:
    return manifest.from_dict({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x", "generation": generation, "uid": "u"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "updateStrategy": {"type": strategy},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}},
        "status": {"observedGeneration": observed, "desiredNumberScheduled": desired,
                   "updatedNumberScheduled": updated, "numberAvailable": available}})


@pytest.mark.parametrize(
    ("the_ds", "line", "done"),
    [
        (ds(generation=3), "Waiting for daemon set spec update to be observed...", False),
        (ds(updated=1), 'Waiting for daemon set "x" rollout to finish: 1 out of 3 new pods have been updated...',
         False),
        (ds(available=2), 'Waiting for daemon set "x" rollout to finish: 2 of 3 updated pods are available...',
         False),
        (ds(), 'daemon set "x" successfully rolled out', True),
    ],
)
def test_rollout_status_line(the_ds: Any, line: str, done: bool) -> None:
    assert status_line(the_ds) == (line, done)


def test_rollout_status_refuses_on_delete() -> None:
    with pytest.raises(CLIError, match="only available for RollingUpdate"):
        status_line(ds(strategy="OnDelete"))


def pod(name: str, node: str = "n1", owner: str | None = None, phase: str = "Running", ready: bool = True,
        revision: str = "h2", emptydir: bool = False) -> Any:
    md: dict[str, Any] = {"name": name, "namespace": "default", "labels": {"controller-revision-hash": revision}}
    if owner:
        kind, _, oname = owner.partition("/")
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": kind, "name": oname, "uid": "u", "controller": True}]
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "c", "command": ["x"]}]}
    if emptydir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    return manifest.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec,
                               "status": {"phase": phase, "conditions": [
                                   {"type": "Ready", "status": "True" if ready else "False"}]}})


def test_stuck_nodes_name_old_and_unready_pods() -> None:
    pods = [pod("a", "n1"), pod("b", "n2", ready=False), pod("c", "n3", revision="h1")]
    assert stuck_nodes(ds(), pods, "h2") == ["n2 (pod b Running)", "n3 (old revision)"]


@pytest.mark.parametrize(
    ("ignore_ds", "force", "evicted", "ignored", "errors"),
    [
        (False, False, ["job-pod"], [], ["cannot delete DaemonSet-managed Pods", "declare no controller"]),
        (True, False, ["job-pod"], ["default/ds-pod"], ["declare no controller"]),
        (True, True, ["bare", "done-bare", "job-pod"], ["default/ds-pod"], []),
    ],
)
def test_plan_drain(ignore_ds: bool, force: bool, evicted: list[str], ignored: list[str], errors: list[str]) -> None:
    pods = [pod("ds-pod", owner="DaemonSet/d"), pod("job-pod", owner="Job/j"), pod("bare"),
            pod("done-bare", phase="Succeeded")]
    plan = plan_drain(pods, ignore_ds, force, False, {"default/d"})
    assert sorted(p.metadata.name for p in plan.evict) == (evicted if force else ["done-bare", "job-pod"])
    assert plan.ignored_daemonset == ignored
    assert len(plan.errors) == len(errors)
    for err, want in zip(plan.errors, errors, strict=True):
        assert want in err


def test_plan_drain_local_storage_and_orphaned_daemon_pods() -> None:
    pods = [pod("scratch", owner="Job/j", emptydir=True), pod("orphan", owner="DaemonSet/gone")]
    plan = plan_drain(pods, True, False, False, set())
    assert [e.split(":")[0] for e in plan.errors] == [
        "failed to get the DaemonSet of Pods (use --force to override)",
        "cannot delete Pods with local storage (use --delete-emptydir-data to override)"]
    plan = plan_drain(pods, True, True, True, set())
    assert sorted(p.metadata.name for p in plan.evict) == ["orphan", "scratch"]
