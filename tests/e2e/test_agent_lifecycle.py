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
    # Not waiting to see it Running first: with a 2 s deadline, a loaded machine's polls could miss
    # that state altogether. The terminated status still names the process that ran.
    p = wait_phase(cluster, "slowjob", "Failed", timeout=30)
    assert p["status"]["reason"] == "DeadlineExceeded"
    assert "terminated" in container(p)["state"]
    pid = pid_of(p)
    wait_until(lambda: not _alive(pid), 10, "the process to be gone")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _events(cluster: Cluster, reason: str, name: str) -> list[dict]:
    return [e for e in cluster.items("events")
            if e.get("reason") == reason and e.get("involvedObject", {}).get("name") == name]


def test_lifecycle_hooks(cluster: Cluster) -> None:
    """preStop runs before SIGTERM and its time counts in the grace period (a sleep hook delays
    the stop); a failing preStop is reported and the pod still goes; postStart runs beside the
    new process, and a failing one kills the container, which restartPolicy then restarts."""
    trap = f"trap 'cat prestop-ran 2>/dev/null || echo no-hook; exit 0' TERM; echo up; {LOOP}"
    apply_all(
        cluster,
        pod_manifest("hooked", "node-a", ["sh", "-c", trap], container_fields={"lifecycle": {
            "postStart": {"exec": {"command": ["sh", "-c", "echo started > poststart-ran"]}},
            "preStop": {"exec": {"command": ["sh", "-c", "echo hook-ran > prestop-ran"]}}}}),
        pod_manifest("sleepy", "node-a", ["sh", "-c", trap], container_fields={"lifecycle": {
            "preStop": {"sleep": {"seconds": 3}}}}),
        pod_manifest("broken-stop", "node-a", ["sh", "-c", trap], container_fields={"lifecycle": {
            "preStop": {"exec": {"command": ["false"]}}}}),
        pod_manifest("broken-start", "node-a", ["sh", "-c", LOOP], restart="Always", container_fields={"lifecycle": {
            "postStart": {"exec": {"command": ["false"]}}}}),
    )
    for name in ("hooked", "sleepy", "broken-stop"):
        wait_running(cluster, name)
        wait_until(lambda name=name: logs(cluster, name) == "up\n", 10, f"{name} to start")

    started = time.monotonic()
    cluster.ketch("delete", "pod", "hooked", "sleepy", "broken-stop", "--wait=false")
    wait_until(lambda: _gone(cluster, "hooked") and _gone(cluster, "broken-stop"), 20, "hooked pods to go")
    assert logs(cluster, "hooked").endswith("hook-ran\n")  # the hook ran, and before SIGTERM
    assert logs(cluster, "broken-stop").endswith("no-hook\n")
    assert _events(cluster, "FailedPreStopHook", "broken-stop")
    wait_until(lambda: _gone(cluster, "sleepy"), 20, "sleepy to go")
    assert time.monotonic() - started >= 3  # SIGTERM only after the 3 s sleep
    assert logs(cluster, "sleepy").endswith("no-hook\n")

    p = wait_until(lambda: (q := pod(cluster, "broken-start")) and q["status"].get("containerStatuses")
                   and container(q)["restartCount"] >= 1 and q, 40, "a restart after the failed postStart")
    assert _events(cluster, "FailedPostStartHook", "broken-start")
    assert container(p)["lastState"]["terminated"]["exitCode"] in (137, 143)


def test_invalid_lifecycle_is_refused_with_the_field(cluster: Cluster) -> None:
    bad = pod_manifest("bad-hook", "node-a", ["true"], container_fields={"lifecycle": {
        "preStop": {"sleep": {"seconds": 60}}}}, spec={"terminationGracePeriodSeconds": 10})
    out = cluster.ketch("apply", "-f", "-", input=bad, check=False)
    assert out.returncode != 0
    assert "spec.containers[0].lifecycle.preStop.sleep.seconds" in out.stderr
    assert pod(cluster, "bad-hook") is None
