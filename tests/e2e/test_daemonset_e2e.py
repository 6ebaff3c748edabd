"""DaemonSets end to end with real agents: one pod per node, a node that joins gets one, an
agent leaving with --drain-on-exit takes its pod and its Node away, a killed daemon process is
restarted in place, a nodeSelector DaemonSet follows label changes; RollingUpdate never takes
more than maxUnavailable pods down, maxSurge brings the new pod up before the old one goes,
OnDelete changes nothing until a pod is deleted, and `rollout undo` goes back without
restarting the pods that already match."""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

from ketch.api import meta

from .harness import Cluster, WatchObserver, wait_until


def daemonset(name: str, version: str = "1", node_selector: dict[str, str] | None = None,
              update: dict[str, Any] | None = None, readiness_fails: bool = False) -> str:
    container: dict[str, Any] = {"name": "main", "image": "busybox", "command": ["sleep", "3600"],
                                 "env": [{"name": "VERSION", "value": version}]}
    if readiness_fails:
        container["readinessProbe"] = {"exec": {"command": ["false"]}, "periodSeconds": 1}
    spec: dict[str, Any] = {"restartPolicy": "Always", "terminationGracePeriodSeconds": 2, "containers": [container]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return json.dumps({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name}, "spec": {
        "selector": {"matchLabels": {"app": name}},
        "updateStrategy": update or {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}})


def pods(c: Cluster, app: str) -> list[dict[str, Any]]:
    return [p for p in c.items("pods", "-l", f"app={app}") if not p["metadata"].get("deletionTimestamp")]


def running_on(c: Cluster, app: str) -> dict[str, dict[str, Any]]:
    """node -> its running, ready daemon pod (a node with two pods is not counted)."""
    out: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for p in pods(c, app):
        node = p["spec"].get("nodeName", "")
        seen[node] = seen.get(node, 0) + 1
        ready = any(x["type"] == "Ready" and x["status"] == "True" for x in p.get("status", {}).get("conditions", []))
        if p.get("status", {}).get("phase") == "Running" and ready:
            out[node] = p
    return {n: p for n, p in out.items() if seen[n] == 1}


def env_version(p: dict[str, Any]) -> str:
    return str(p["spec"]["containers"][0]["env"][0]["value"])


class RolloutObserver(WatchObserver):
    """Watches one DaemonSet's pods through the API and keeps the worst moments: the most nodes
    without a ready pod, and the most live pods on one node."""

    def __init__(self, server: str, app: str, nodes: set[str]) -> None:
        super().__init__(server, [("Pod", f"app={app}")])
        self.app, self.nodes = app, nodes
        self.pods: dict[str, Any] = {}
        self.max_unavailable = 0
        self.max_per_node = 0
        self.unavailable = len(nodes)
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Start counting afresh, once the watch shows every node with a ready pod."""
        wait_until(lambda: self.unavailable == 0, 30, "the observer to see every pod ready")
        with self._lock:
            self.max_unavailable = self.max_per_node = 0

    def on_event(self, kind: str, etype: str, pod: Any) -> None:
        self._seen(etype, pod)

    def _seen(self, etype: str, pod: Any) -> None:
        with self._lock:
            if etype == "DELETED" or pod.metadata.deletion_timestamp:
                self.pods.pop(pod.metadata.name, None)
            else:
                self.pods[pod.metadata.name] = pod
            ready: set[str] = set()
            per_node: dict[str, int] = {}
            for p in self.pods.values():
                per_node[p.spec.node_name] = per_node.get(p.spec.node_name, 0) + 1
                if meta.condition_true(p.status.conditions, "Ready"):
                    ready.add(p.spec.node_name)
            self.unavailable = len(self.nodes - ready)
            self.max_unavailable = max(self.max_unavailable, self.unavailable)
            self.max_per_node = max([self.max_per_node, *per_node.values()])


def test_daemon_pods_follow_joins_leaves_labels_and_restart_in_place(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory()
    c.start_controlplane()
    for node in ("node-a", "node-b", "node-c"):
        c.start_agent(node)
    c.apply(daemonset("agentd"))
    wait_until(lambda: set(running_on(c, "agentd")) == {"node-a", "node-b", "node-c"}, 30, "a daemon pod per node")

    c.start_agent("node-d", extra=["--drain-on-exit"])
    wait_until(lambda: "node-d" in running_on(c, "agentd"), 30, "a daemon pod on the node that joined")
    assert c.get("ds", "agentd")["status"]["desiredNumberScheduled"] in (3, 4)
    c.stop_process("agent-node-d")
    wait_until(lambda: set(running_on(c, "agentd")) == {"node-a", "node-b", "node-c"}
               and c.try_get("node", "node-d") is None
               and all(p["spec"]["nodeName"] != "node-d" for p in c.items("pods", "-l", "app=agentd")),
               40, "the node that left to lose its pod and its Node")
    wait_until(lambda: c.get("ds", "agentd")["status"].get("desiredNumberScheduled") == 3, 20, "desired 3")

    # Killing the daemon process restarts it in place (restartPolicy Always): same pod.
    victim = running_on(c, "agentd")["node-a"]
    pid = int(victim["status"]["containerStatuses"][0]["containerID"].rsplit("/", 1)[1])
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        p = c.try_get("pod", victim["metadata"]["name"])
        return bool(p) and p["status"]["containerStatuses"][0].get("restartCount", 0) >= 1 \
            and p["status"].get("phase") == "Running"

    wait_until(restarted, 40, "the killed daemon process to restart in place")
    assert running_on(c, "agentd")["node-a"]["metadata"]["uid"] == victim["metadata"]["uid"] or restarted()

    # A nodeSelector DaemonSet follows node labels.
    c.apply(daemonset("edge", node_selector={"role": "edge"}))
    wait_until(lambda: c.get("ds", "edge").get("status", {}).get("observedGeneration") == 1, 20, "edge observed")
    assert pods(c, "edge") == []
    c.ketch("label", "node", "node-a", "role=edge")
    c.ketch("label", "node", "node-b", "role=edge")
    wait_until(lambda: set(running_on(c, "edge")) == {"node-a", "node-b"}, 30, "edge pods on labelled nodes")
    c.ketch("label", "node", "node-a", "role-")
    wait_until(lambda: {p["spec"]["nodeName"] for p in c.items("pods", "-l", "app=edge")} == {"node-b"}, 30,
               "the edge pod to leave the unlabelled node")
    status = c.get("ds", "edge")["status"]
    assert status["desiredNumberScheduled"] == 1


def test_rolling_update_surge_on_delete_and_undo(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory()
    c.start_controlplane()
    nodes = {"node-a", "node-b", "node-c"}
    for node in sorted(nodes):
        c.start_agent(node)
    c.apply(daemonset("roll"))
    wait_until(lambda: set(running_on(c, "roll")) == nodes, 30, "a daemon pod per node")
    observer = RolloutObserver(c.server, "roll", nodes)
    observer.start()
    try:
        def rolled_to(version: str) -> bool:
            now = running_on(c, "roll")
            return set(now) == nodes and all(env_version(p) == version for p in now.values()) \
                and len(pods(c, "roll")) == len(nodes)

        # RollingUpdate, maxUnavailable 1: one node at a time.
        observer.reset()
        c.apply(daemonset("roll", version="2"))
        wait_until(lambda: rolled_to("2"), 60, "the rollout to version 2")
        assert observer.max_unavailable == 1
        assert observer.max_per_node == 1
        status = c.get("ds", "roll")["status"]
        assert status["updatedNumberScheduled"] == 3 and status["numberAvailable"] == 3
        assert c.ketch("rollout", "status", "daemonset/roll").returncode == 0

        # maxSurge 1, maxUnavailable 0: the new pod is ready before the old one goes.
        observer.reset()
        c.apply(daemonset("roll", version="3", update={"type": "RollingUpdate", "rollingUpdate": {
            "maxUnavailable": 0, "maxSurge": 1}}))
        wait_until(lambda: rolled_to("3"), 60, "the surge rollout to version 3")
        assert observer.max_unavailable == 0
        assert observer.max_per_node == 2
        v3 = {p["metadata"]["name"] for p in pods(c, "roll")}

        # A bad version never becomes ready: the rollout stalls at one pod; undo goes back to 3
        # and leaves the pods still on version 3 alone.
        c.apply(daemonset("roll", version="4", readiness_fails=True))
        wait_until(lambda: any(env_version(p) == "4" for p in pods(c, "roll")), 30, "a version 4 pod")
        stalled = c.ketch("rollout", "status", "daemonset/roll", "--timeout", "3s", check=False)
        assert stalled.returncode != 0
        assert sum(1 for p in pods(c, "roll") if env_version(p) == "4") == 1
        c.ketch("rollout", "undo", "daemonset/roll")
        wait_until(lambda: rolled_to("3"), 60, "the undo back to version 3")
        assert len(v3 & {p["metadata"]["name"] for p in pods(c, "roll")}) >= 2, "matching pods were restarted"
        history = c.ketch("rollout", "history", "daemonset/roll").stdout
        assert "5" in history

        # OnDelete: a template change waits for a pod to be deleted.
        c.apply(daemonset("roll", version="6", update={"type": "OnDelete"}))
        generation = c.get("ds", "roll")["metadata"]["generation"]
        wait_until(lambda: c.get("ds", "roll")["status"].get("observedGeneration") == generation, 20,
                   "the OnDelete change observed")
        before = {p["metadata"]["name"] for p in pods(c, "roll")}
        assert all(env_version(p) == "3" for p in pods(c, "roll"))
        victim = sorted(before)[0]
        c.ketch("delete", "pod", victim)
        wait_until(lambda: set(running_on(c, "roll")) == nodes and victim not in
                   {p["metadata"]["name"] for p in c.items("pods", "-l", "app=roll")}, 40, "the replacement")
        versions = sorted(env_version(p) for p in pods(c, "roll"))
        assert versions == ["3", "3", "6"]
    finally:
        observer.stop()
