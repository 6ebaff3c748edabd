"""Stopping pods: graceful deletion (SIGTERM, grace, SIGKILL), memory limits (OOMKilled),
liveness and readiness probes, and activeDeadlineSeconds."""

from __future__ import annotations

import time

import pytest

from .agent_helpers import apply_all, container, logs, pid_of, pod, pod_manifest, wait_phase, wait_running
from .harness import Cluster, wait_until

LOOP = "while :; do sleep 0.1; done"


@pytest.fixture
def cluster(cluster_factory) -> Cluster:  # type: ignore[no-untyped-def]
    c = cluster_factory()
    c.start_controlplane()
    c.start_agent("node-a", ["--crash-loop-backoff-base", "1s"])
    return c


def _gone(cluster: Cluster, name: str) -> bool:
    return pod(cluster, name) is None


def test_graceful_deletion(cluster: Cluster) -> None:
    apply_all(
        cluster,
        pod_manifest("trapper", "node-a", ["sh", "-c", f"trap 'echo bye; exit 0' TERM; echo up; {LOOP}"],
                     spec={"terminationGracePeriodSeconds": 30}),
        pod_manifest("stubborn", "node-a", ["sh", "-c", f"trap '' TERM; echo up; {LOOP}"],
                     spec={"terminationGracePeriodSeconds": 3}),
    )
    wait_running(cluster, "trapper")
    wait_running(cluster, "stubborn")
    wait_until(lambda: logs(cluster, "trapper") == "up\n", 10, "trapper to start")

    started = time.monotonic()
    cluster.ketch("delete", "pod", "trapper", "stubborn", "--wait=false")
    # The trapping process exits at SIGTERM, well within its 30 s grace.
    wait_until(lambda: _gone(cluster, "trapper"), 15, "trapper to be removed")
    assert time.monotonic() - started < 10
    # The pod that ignores SIGTERM is killed once its 3 s are up, not before.
    wait_until(lambda: _gone(cluster, "stubborn"), 20, "stubborn to be removed")
    assert time.monotonic() - started >= 3
    # Its logs (and the SIGTERM it handled) outlive the pod object.
    out = logs(cluster, "trapper")
    assert out.startswith("up\n") and out.endswith("bye\n")


def test_memory_limit_is_oomkilled(cluster: Cluster) -> None:
    hog = "import time\nx = []\nwhile True:\n    x.append(bytearray(8 * 1024 * 1024))\n    time.sleep(0.01)\n"
    apply_all(cluster, pod_manifest("hog", "node-a", ["python3", "-c", hog],
                                    container_fields={"resources": {"limits": {"memory": "64Mi"}}}))
    p = wait_phase(cluster, "hog", "Failed", timeout=40)
    term = container(p)["state"]["terminated"]
    assert (term["reason"], term["exitCode"]) == ("OOMKilled", 137)


def test_liveness_failure_restarts_and_readiness_gates_ready(cluster: Cluster) -> None:
    probe = {"exec": {"command": ["test", "-f", "healthy"]}, "periodSeconds": 1, "failureThreshold": 2}
    # Healthy for a while, then the health file goes away: the liveness probe restarts it.
    script = f"touch healthy; sleep 2; rm healthy; {LOOP}"
    apply_all(cluster, pod_manifest("sick", "node-a", ["sh", "-c", script], restart="Always",
                                    container_fields={"livenessProbe": probe}))
    p = wait_until(lambda: (q := pod(cluster, "sick")) and q["status"].get("containerStatuses")
                   and container(q)["restartCount"] >= 1 and q, 40, "a liveness restart")
    assert container(p)["lastState"]["terminated"]["exitCode"] in (137, 143)

    ready_probe = {"exec": {"command": ["test", "-f", "ready"]}, "periodSeconds": 1}
    apply_all(cluster, pod_manifest("slow", "node-a", ["sh", "-c", f"sleep 4; touch ready; {LOOP}"],
                                    container_fields={"readinessProbe": ready_probe}))
    p = wait_running(cluster, "slow")
    assert container(p)["ready"] is False
    p = wait_until(lambda: (q := pod(cluster, "slow")) and container(q)["ready"] and q, 30, "readiness")
    ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"


def test_active_deadline_kills_the_pod(cluster: Cluster) -> None:
    apply_all(cluster, pod_manifest("slowjob", "node-a", ["sh", "-c", LOOP],
                                    spec={"activeDeadlineSeconds": 2, "terminationGracePeriodSeconds": 2}))
    p = wait_running(cluster, "slowjob")
    pid = pid_of(p)
    p = wait_phase(cluster, "slowjob", "Failed", timeout=30)
    assert p["status"]["reason"] == "DeadlineExceeded"
    assert "terminated" in container(p)["state"]
    wait_until(lambda: not _alive(pid), 10, "the process to be gone")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
