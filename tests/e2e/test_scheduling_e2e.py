"""Scheduling with real agents: 30 unbound pods spread over 3 nodes and each runs on the node it
was bound to; a pinned pod waits, reported unschedulable, until its node joins."""

from __future__ import annotations

import json
from collections import Counter

from .harness import Cluster, wait_until


def unbound_pod(name: str, command: str, **spec: object) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "restartPolicy": "Never", **spec,
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", command],
                        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}]}})


def test_pods_spread_run_where_bound_and_wait_for_a_matching_node(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = cluster_factory()
    cluster.start_controlplane()
    for node in ("node-a", "node-b", "node-c"):
        cluster.start_agent(node)
    cluster.apply("\n---\n".join(unbound_pod(f"p{i}", "echo ran on $NODE") for i in range(30)))

    def all_succeeded() -> list[dict] | None:
        pods = [p for p in cluster.items("pods") if p["metadata"]["name"].startswith("p")]
        done = [p for p in pods if p.get("status", {}).get("phase") == "Succeeded"]
        return done if len(done) == 30 else None

    pods = wait_until(all_succeeded, 90, "30 pods to succeed")
    spread = Counter(p["spec"]["nodeName"] for p in pods)
    assert set(spread) == {"node-a", "node-b", "node-c"}
    assert min(spread.values()) >= 5, spread  # short-lived pods free their room at once: roughly even
    for p in pods[:3]:  # the process ran on the agent of the node it was bound to
        out = cluster.ketch("logs", p["metadata"]["name"]).stdout
        assert out.strip() == f"ran on {p['spec']['nodeName']}"

    # A pod pinned to a node that has not joined yet waits, reported unschedulable.
    cluster.apply(unbound_pod("pinned", "sleep 60", nodeSelector={"kubernetes.io/hostname": "node-d"}))

    def unschedulable() -> dict | None:
        p = cluster.try_get("pod", "pinned")
        conds = (p or {}).get("status", {}).get("conditions", [])
        return next((c for c in conds if c["type"] == "PodScheduled" and c["status"] == "False"), None)

    cond = wait_until(unschedulable, 30, "the pinned pod to be reported unschedulable")
    assert cond["reason"] == "Unschedulable"
    assert "3 node(s) didn't match Pod's node affinity/selector" in cond["message"]
    events = cluster.ketch("get", "events").stdout
    assert "FailedScheduling" in events
    cluster.start_agent("node-d")
    wait_until(lambda: (cluster.try_get("pod", "pinned") or {}).get("status", {}).get("phase") == "Running",
               30, "the pinned pod to run on the node that joined")
