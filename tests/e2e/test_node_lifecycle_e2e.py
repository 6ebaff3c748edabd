"""Losing a node, end to end: an agent killed with SIGKILL turns its node Unknown (NotReady) and
tainted within the grace period; after the eviction timeout its Job pods get DisruptionTarget
and are replaced on another node, while its daemon pod stays; the restarted agent makes the
node Ready again and the taints go. Then drain evicts everything but daemon pods."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

from .harness import Cluster, wait_until

GRACE = 4
EVICTION = 4
FLAGS = ["--node-monitor-grace-period", f"{GRACE}s", "--pod-eviction-timeout", f"{EVICTION}s",
         "--job-backoff-base", "1s"]

DAEMONSET = json.dumps({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "nodeagentd"}, "spec": {
    "selector": {"matchLabels": {"app": "nodeagentd"}},
    "template": {"metadata": {"labels": {"app": "nodeagentd"}}, "spec": {
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}}})

JOB = json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "work"}, "spec": {
    "parallelism": 2, "completions": 2, "template": {"spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}}})


def ready(obj: dict[str, Any], ctype: str = "Ready") -> str:
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == ctype:
            return str(c.get("status"))
    return ""


def taints(c: Cluster, node: str) -> set[tuple[str, str]]:
    obj = c.try_get("node", node) or {}
    return {(t["key"], t["effect"]) for t in obj.get("spec", {}).get("taints", []) or []}


def job_pods(c: Cluster) -> list[dict[str, Any]]:
    return c.items("pods", "-l", "job-name=work")


def test_lost_node_is_detected_its_job_pods_replaced_and_it_comes_back(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(FLAGS)
    c.start_controlplane()
    for node in ("node-a", "node-b"):
        c.start_agent(node)
    c.apply(DAEMONSET)
    c.apply(JOB)

    def job_running() -> list[dict[str, Any]]:
        pods = [p for p in job_pods(c) if p.get("status", {}).get("phase") == "Running"]
        return pods if len(pods) == 2 else []

    pods = wait_until(job_running, 40, "two running job pods")
    wait_until(lambda: len([p for p in c.items("pods", "-l", "app=nodeagentd")
                            if p.get("status", {}).get("phase") == "Running"]) == 2, 30, "two daemon pods")
    lost = pods[0]["spec"]["nodeName"]
    survivor = "node-b" if lost == "node-a" else "node-a"
    lost_pods = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == lost}
    daemon = next(p for p in c.items("pods", "-l", "app=nodeagentd") if p["spec"]["nodeName"] == lost)

    killed_at = time.monotonic()
    c.stop_process(f"agent-{lost}", signal.SIGKILL)
    wait_until(lambda: ready(c.get("node", lost)) == "Unknown", GRACE + 15, f"{lost} to turn NotReady")
    assert time.monotonic() - killed_at >= GRACE - 1.5  # heartbeats came every second until the kill
    wait_until(lambda: ("node.kubernetes.io/unreachable", "NoExecute") in taints(c, lost), 10, "the NoExecute taint")
    nodes_table = c.ketch("get", "nodes").stdout
    assert "NotReady" in nodes_table

    def replaced() -> bool:
        live = [p for p in job_pods(c) if not p["metadata"].get("deletionTimestamp")
                and p.get("status", {}).get("phase") == "Running"]
        return len(live) == 2 and all(p["spec"]["nodeName"] == survivor for p in live)

    wait_until(replaced, EVICTION + 40, "the job pods to be replaced on the surviving node")
    for name in lost_pods:
        p = c.try_get("pod", name)
        if p is not None:  # Terminating until the agent is back (or the Node is deleted)
            assert p["metadata"].get("deletionTimestamp")
            assert ready(p, "DisruptionTarget") == "True"
    d = c.try_get("pod", daemon["metadata"]["name"])
    assert d is not None and not d["metadata"].get("deletionTimestamp"), "the daemon pod must stay"

    # The agent comes back: Ready again, taints gone, the evicted pods finished off.
    c.start_agent(lost, wait_ready=False)
    wait_until(lambda: ready(c.get("node", lost)) == "True", 30, f"{lost} to be Ready again")
    wait_until(lambda: not {k for k, _ in taints(c, lost)} & {"node.kubernetes.io/unreachable",
                                                             "node.kubernetes.io/not-ready"}, 20, "taints to go")
    wait_until(lambda: all(c.try_get("pod", n) is None for n in lost_pods), 30, "the evicted pods to be gone")
    assert c.try_get("pod", daemon["metadata"]["name"]) is not None

    # Drain the surviving node: everything but the daemon pod is evicted; the Job moves back.
    c.ketch("drain", survivor, "--ignore-daemonsets", "--timeout", "60s", timeout=90)
    on_survivor = [p for p in c.items("pods") if p["spec"].get("nodeName") == survivor
                   and not p["metadata"].get("deletionTimestamp")]
    assert {p["metadata"]["labels"].get("app") for p in on_survivor} == {"nodeagentd"}
    assert (c.get("node", survivor)["spec"].get("unschedulable")) is True
    wait_until(lambda: len([p for p in job_pods(c) if p.get("status", {}).get("phase") == "Running"
                            and p["spec"]["nodeName"] == lost]) == 2, 40, "the job pods to run on the other node")
