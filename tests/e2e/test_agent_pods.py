"""The agent runs pods as real processes: restart policies, exit codes, start errors, init
containers, the environment, and logs through the API server (current and --previous)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from .agent_helpers import apply_all, container, logs, pod_manifest, wait_phase, wait_running
from .harness import Cluster, wait_until

# Each run counts itself in a file in its working dir; runs 1 and 2 fail, run 3 succeeds.
FLAKY = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo run $n; [ $n -ge 3 ]"


@pytest.fixture
def cluster(cluster_factory) -> Cluster:  # type: ignore[no-untyped-def]
    c = cluster_factory()
    c.start_controlplane()
    c.start_agent("node-a", ["--crash-loop-backoff-base", "1s", "--crash-loop-backoff-max", "4s"])
    return c


def test_restart_policies_exit_codes_and_logs(cluster: Cluster) -> None:
    apply_all(
        cluster,
        pod_manifest("flaky", "node-a", ["sh", "-c", FLAKY], restart="OnFailure"),
        pod_manifest("fails", "node-a", ["sh", "-c", "echo bad >&2; exit 3"], restart="Never"),
        pod_manifest("nobin", "node-a", ["no-such-binary-here", "--x"], restart="Never"),
    )
    # OnFailure: fails twice, then succeeds in place.
    flaky = wait_phase(cluster, "flaky", "Succeeded")
    cs = container(flaky)
    assert cs["restartCount"] == 2
    assert cs["state"]["terminated"]["exitCode"] == 0
    assert cs["state"]["terminated"]["reason"] == "Completed"
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert flaky["status"]["conditions"]
    ready = next(c for c in flaky["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")
    assert flaky["status"]["hostIP"] == "127.0.0.1"

    # Never: Failed with the exit code.
    fails = wait_phase(cluster, "fails", "Failed")
    term = container(fails)["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")
    assert container(fails)["restartCount"] == 0

    # A missing executable is a container error with a clear message, not an agent crash.
    nobin = wait_phase(cluster, "nobin", "Failed")
    term = container(nobin)["state"]["terminated"]
    assert term["reason"] == "ContainerCannotRun"
    assert "no-such-binary-here" in term["message"] and "not found" in term["message"]

    # Logs through the API server: the current run and the one before it.
    assert logs(cluster, "flaky") == "run 3\n"
    assert logs(cluster, "flaky", "--previous") == "run 2\n"
    assert logs(cluster, "fails") == "bad\n"
    missing = cluster.ketch("logs", "fails", "--previous", check=False)
    assert missing.returncode != 0 and "previous terminated container" in missing.stderr

    # The agent is still there and healthy.
    assert cluster.node_ready("node-a")


def test_crash_loop_back_off_is_visible(cluster: Cluster) -> None:
    apply_all(cluster, pod_manifest("crash", "node-a", ["sh", "-c", "echo boom; exit 1"], restart="Always"))

    def backing_off() -> dict | None:
        p = cluster.try_get("pod", "crash")
        if not p or not p["status"].get("containerStatuses"):
            return None
        cs = container(p)
        waiting = cs["state"].get("waiting", {})
        return p if waiting.get("reason") == "CrashLoopBackOff" and cs["restartCount"] >= 2 else None

    p = wait_until(backing_off, 40, "CrashLoopBackOff")
    assert p["status"]["phase"] == "Running"
    cs = container(p)
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert "back-off" in cs["state"]["waiting"]["message"]
    out = cluster.ketch("get", "pod", "crash").stdout
    assert "CrashLoopBackOff" in out


def test_init_containers_env_and_working_dir(cluster: Cluster) -> None:
    manifest = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "envpod", "labels": {"app": "demo"}},
        "spec": {
            "nodeName": "node-a", "restartPolicy": "Never", "hostname": "envpod-3",
            "initContainers": [
                {"name": "first", "image": "x", "command": ["sh", "-c", "echo first >> order"]},
                {"name": "second", "image": "x", "command": ["sh", "-c", "echo second >> order"]},
            ],
            "containers": [{
                "name": "main", "image": "x",
                "command": ["sh", "-c", "cat order; echo $(GREETING) '$$(GREETING)' $POD_NAME $APP $HOSTNAME; pwd"],
                "env": [
                    {"name": "GREETING", "value": "hello"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                ],
            }],
        },
    }
    cluster.apply(json.dumps(manifest))
    p = wait_phase(cluster, "envpod", "Succeeded")
    inits = p["status"]["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in inits] == ["Completed", "Completed"]
    out = logs(cluster, "envpod").splitlines()
    assert out[:2] == ["first", "second"]
    assert out[2] == "hello $(GREETING) envpod demo envpod-3"
    # The default working dir is the pod's sandbox, next to its checkpoint (flat); the logs are
    # in the kubelet's layout, one dir per container that wrote something (the init containers
    # wrote to a file).
    pods, uid = cluster.dir / "agent-node-a" / "pods", p["metadata"]["uid"]
    assert Path(out[3]) == pods / uid
    assert sorted(n for n in os.listdir(pods) if n.startswith(uid)) == [uid, f"{uid}.state.json"]
    pod_logs = cluster.dir / "agent-node-a" / "logs" / "pods" / f"default_envpod_{uid}"
    assert sorted(str(f.relative_to(pod_logs)) for f in pod_logs.rglob("*.log")) == ["main/0.log"]


def test_logs_follow_a_running_pod(cluster: Cluster) -> None:
    script = "for i in 1 2 3; do echo line $i; sleep 0.3; done"
    apply_all(cluster, pod_manifest("talker", "node-a", ["sh", "-c", script]))
    wait_running(cluster, "talker")
    # -f returns when the container exits, with every line.
    out = cluster.ketch("logs", "-f", "talker", timeout=30).stdout
    assert out == "line 1\nline 2\nline 3\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="runAsUser needs the agent to run as root")
def test_sidecar_run_as_user_and_top(cluster: Cluster) -> None:
    loop = "while :; do sleep 0.1; done"
    # The main container runs until the test has seen it in `top` (a world-readable marker: it
    # runs as nobody), however slow the machine.
    gate = Path(tempfile.mkdtemp(prefix="ketch-gate-"))
    gate.chmod(0o755)
    done = gate / "done"
    wait_done = f"until [ -e {done} ]; do sleep 0.1; done"
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "withsidecar"},
        "spec": {
            "nodeName": "node-a", "restartPolicy": "Never",
            "securityContext": {"runAsUser": 65534, "runAsGroup": 65534},
            "initContainers": [{"name": "helper", "image": "x", "restartPolicy": "Always",
                                "command": ["sh", "-c", f"echo helper as $(id -u); {loop}"]}],
            "containers": [{"name": "main", "image": "x",
                            "command": ["sh", "-c", f"id -u; id -g; touch mine; {wait_done}"],
                            "resources": {"limits": {"memory": "200Mi", "cpu": "500m"}}}],
        },
    }
    cluster.apply(json.dumps(manifest))
    wait_running(cluster, "withsidecar")
    try:
        top = wait_until(lambda: (out := cluster.ketch("top", "pods", check=False).stdout) and out, 30,
                         "metrics for the pod")
        assert "withsidecar" in top
        assert "node-a" in cluster.ketch("top", "nodes").stdout
    finally:
        done.touch()
    # The main container finishing ends the pod; the sidecar is stopped and does not count.
    p = wait_phase(cluster, "withsidecar", "Succeeded")
    assert p["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert logs(cluster, "withsidecar", "-c", "main") == "65534\n65534\n"
    assert logs(cluster, "withsidecar", "-c", "helper").startswith("helper as 65534")
    shutil.rmtree(gate, ignore_errors=True)
