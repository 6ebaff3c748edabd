"""Agent restarts and leaving: `kill -9` keeps pods running and they are re-adopted (same
processes, not duplicated, later exits reported); SIGTERM leaves pods running; --drain-on-exit
stops them and removes the node; a node deleted under a running agent comes back."""

from __future__ import annotations

import signal
from pathlib import Path

from .agent_helpers import (
    apply_all,
    container,
    logs,
    pid_of,
    pod,
    pod_manifest,
    processes_with,
    wait_phase,
    wait_running,
)
from .harness import Cluster, wait_until


def _waiter(marker: str, go: str, code: int) -> list[str]:
    """A process that runs until the file go exists, then exits with code; marker names it."""
    return ["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.1; done; exit {code}", marker]


def test_kill_9_agent_then_restart_adopts_running_pods(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory()
    c.start_controlplane()
    c.start_agent("node-a")
    go = c.dir / "go"
    marker = f"adopt-me-{c.port}"
    codes = {f"w{i}": (0 if i % 2 == 0 else 3) for i in range(5)}
    apply_all(c, *(pod_manifest(name, "node-a", _waiter(marker, str(go), code)) for name, code in codes.items()))
    before = {name: pid_of(wait_running(c, name)) for name in codes}
    assert sorted(processes_with(marker)) == sorted(before.values())

    c.stop_process("agent-node-a", signal.SIGKILL, 10)
    # The pods' processes live on without their agent.
    assert sorted(processes_with(marker)) == sorted(before.values())

    c.start_agent("node-a")
    wait_until(lambda: "adopted container" in c.logs("agent-node-a"), 20, "the agent to adopt its pods")
    after = {name: pid_of(wait_running(c, name)) for name in codes}
    assert after == before
    assert sorted(processes_with(marker)) == sorted(before.values()), "nothing may be started twice"

    go.touch()
    for name, code in codes.items():
        p = wait_phase(c, name, "Succeeded" if code == 0 else "Failed")
        term = container(p)["state"]["terminated"]
        # The exit code of an adopted process is known where the agent may read process events.
        if term["reason"] != "ContainerStatusUnknown":
            assert term["exitCode"] == code
        assert container(p)["restartCount"] == 0
    assert processes_with(marker) == []


def _nest(pods: Path, uid: str) -> None:
    """Put a pod's files back in the nested layout of earlier agents: pods/<uid>/{state.json,
    sandbox/, <container>.<run>.log}."""
    tmp = pods / f"nesting-{uid}"
    tmp.mkdir()
    if (pods / uid).is_dir():
        (pods / uid).rename(tmp / "sandbox")
    for f in pods.glob(f"{uid}.*"):
        name = f.name[len(uid) + 1:]
        f.rename(tmp / ("state.json" if name == "state.json" else name))
    tmp.rename(pods / uid)


def test_an_agent_upgraded_from_the_nested_layout_adopts_its_pods(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory()
    c.start_controlplane()
    c.start_agent("node-a")
    go = c.dir / "go"
    marker = f"nested-{c.port}"
    script = f"echo before; while [ ! -e {go} ]; do sleep 0.1; done; echo after $(basename $(pwd -P))"
    apply_all(c, pod_manifest("old", "node-a", ["sh", "-c", script, marker]))
    p = wait_running(c, "old")
    pid, uid = pid_of(p), p["metadata"]["uid"]
    c.stop_process("agent-node-a", signal.SIGKILL, 10)
    pods = c.dir / "agent-node-a" / "pods"
    _nest(pods, uid)
    assert (pods / uid / "state.json").is_file() and (pods / uid / "sandbox").is_dir()

    c.start_agent("node-a")
    wait_until(lambda: "adopted container" in c.logs("agent-node-a"), 20, "the agent to adopt its pod")
    assert pid_of(wait_running(c, "old")) == pid
    assert processes_with(marker) == [pid], "nothing may be started twice"
    go.touch()
    wait_phase(c, "old", "Succeeded")
    assert logs(c, "old") == f"before\nafter {uid}\n"
    assert (pods / f"{uid}.state.json").is_file() and not (pods / uid / "state.json").exists()


def test_sigterm_leaves_pods_running_and_drain_removes_the_node(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory()
    c.start_controlplane()
    c.start_agent("node-a")
    marker = f"keep-me-{c.port}"
    apply_all(c, pod_manifest("keeper", "node-a", ["sh", "-c", "sleep 600", marker], restart="Always",
                              spec={"terminationGracePeriodSeconds": 2}))
    pid = pid_of(wait_running(c, "keeper"))

    # Plain SIGTERM: the agent exits, its pod keeps running.
    assert c.stop_process("agent-node-a") == 0
    assert pid in processes_with(marker)
    assert c.try_get("node", "node-a") is not None

    # Back with --drain-on-exit: adopted, then on SIGTERM cordoned, stopped, node deleted.
    c.start_agent("node-a", ["--drain-on-exit"])
    wait_until(lambda: "adopted container" in c.logs("agent-node-a"), 20, "the agent to adopt its pod")
    assert pid_of(wait_running(c, "keeper")) == pid
    assert c.stop_process("agent-node-a", timeout=30) == 0
    assert c.try_get("node", "node-a") is None
    assert c.try_get("lease", "node-a", "-n", "kube-node-lease") is None
    assert pid not in processes_with(marker)
    assert pod(c, "keeper") is None


def test_node_deleted_while_running_registers_again(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory()
    c.start_controlplane()
    c.start_agent("node-a", ["--labels", "tier=batch,zone=z1"])
    node = c.get("node", "node-a")
    labels = node["metadata"]["labels"]
    assert labels["tier"] == "batch" and labels["kubernetes.io/hostname"] == "node-a"
    assert labels["kubernetes.io/os"] == "linux" and "kubernetes.io/arch" in labels
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.31")
    assert {"cpu", "memory", "pods"} <= set(node["status"]["capacity"])
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0
    types = {cond["type"] for cond in node["status"]["conditions"]}
    assert types == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    lease = c.get("lease", "node-a", "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == "node-a"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]

    c.ketch("delete", "node", "node-a")
    wait_until(lambda: (n := c.try_get("node", "node-a")) and n["metadata"]["uid"] != node["metadata"]["uid"],
               20, "the node to be registered again")
    wait_until(lambda: c.node_ready("node-a"), 20, "the new node to be Ready")


def test_status_written_while_the_api_was_down_arrives_later(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory()
    c.start_controlplane()
    c.start_agent("node-a")
    go = c.dir / "go-offline"
    apply_all(c, pod_manifest("offline", "node-a", _waiter(f"offline-{c.port}", str(go), 4)))
    wait_running(c, "offline")
    assert c.stop_process("controlplane") == 0
    # The pod finishes while nobody can be told.
    go.touch()
    wait_until(lambda: not processes_with(f"offline-{c.port}"), 10, "the pod's process to exit")
    c.start_controlplane()
    p = wait_phase(c, "offline", "Failed", timeout=40)
    assert container(p)["state"]["terminated"]["exitCode"] == 4
    assert c.node_ready("node-a")
