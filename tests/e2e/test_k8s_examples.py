"""The Kubernetes docs' Job, CronJob and DaemonSet examples, applied unchanged (the files under
k8s_examples/ are the docs' manifests verbatim) to a real local cluster, and checked against
what the docs say happens on Kubernetes. Where an example cannot run as a host process (no
`command`), the test pins what the user sees instead: a clear refusal.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ketch.api import safeyaml

from .harness import Cluster, condition, wait_until

EXAMPLES = Path(__file__).parent / "k8s_examples"
FLAGS = ["--job-backoff-base", "1s", "--job-backoff-max", "4s"]
HELLO = "Hello from the Kubernetes cluster"


def example(name: str) -> str:
    return str(EXAMPLES / name)


def manifest(name: str) -> dict[str, Any]:
    return dict(safeyaml.safe_load((EXAMPLES / name).read_text()))


def start(cluster_factory: Any, agents: int = 2) -> Cluster:
    c: Cluster = cluster_factory(FLAGS)
    c.start_controlplane()
    for i in range(agents):
        c.start_agent(f"node-{'abc'[i]}")
    return c


def wait_job(c: Cluster, name: str, ctype: str, timeout: float = 120) -> dict[str, Any]:
    return wait_until(lambda: condition(c.get("job", name), ctype) and c.get("job", name), timeout,
                      f"job {name} to be {ctype}")


def pods_of(c: Cluster, job: str) -> list[dict[str, Any]]:
    return c.items("pods", "-l", f"job-name={job}")


def logs(c: Cluster, pod: dict[str, Any], container: str | None = None) -> str:
    extra = ["-c", container] if container else []
    return c.ketch("logs", pod["metadata"]["name"], *extra).stdout


def finished(c: Cluster, job: str) -> dict[str, Any] | None:
    got = c.get("job", job)
    return got if condition(got, "Complete") or condition(got, "Failed") else None


def test_pi_job_and_hello_cronjob_run_unchanged(cluster_factory: Any) -> None:
    c = start(cluster_factory)
    c.ketch("apply", "-f", example("cronjob.yaml"))
    c.ketch("apply", "-f", example("job.yaml"))

    # The docs' way to run a CronJob now; the schedule (every minute) is checked below too.
    c.ketch("create", "job", "hello-now", "--from=cronjob/hello")
    now = wait_job(c, "hello-now", "Complete")
    assert now["status"]["succeeded"] == 1
    [pod] = pods_of(c, "hello-now")
    assert HELLO in logs(c, pod)

    # Ketch runs the command with the host's perl (the image is ignored), so the pi Job does
    # what that command does here: on Kubernetes' perl:5.34.0 it prints 2000 digits of pi.
    command = manifest("job.yaml")["spec"]["template"]["spec"]["containers"][0]["command"]
    host = subprocess.run(command, capture_output=True, text=True, timeout=300)
    pi = wait_until(lambda: finished(c, "pi"), 240, "the pi job to finish")
    pi_pods = pods_of(c, "pi")
    if host.returncode == 0:
        assert condition(pi, "Complete") and pi["status"]["succeeded"] == 1
        out = logs(c, pi_pods[0])
        assert out.startswith("3.14159") and out == host.stdout
    else:  # e.g. Debian's perl 5.36: Math::BigInt::Calc dies on bpi(2000)
        assert condition(pi, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
        assert pi["status"]["failed"] == 5 and len(pi_pods) == 5  # backoffLimit: 4
        assert host.stderr.strip() and host.stderr.strip() in logs(c, pi_pods[0])

    def scheduled() -> list[dict[str, Any]]:
        return [j for j in c.items("jobs") if j["metadata"]["name"].startswith("hello-")
                and j["metadata"]["name"] != "hello-now" and condition(j, "Complete")]

    [job, *_] = wait_until(scheduled, 150, "the hello CronJob's scheduled Job to complete")
    assert job["metadata"]["ownerReferences"][0]["name"] == "hello"
    assert HELLO in logs(c, pods_of(c, job["metadata"]["name"])[0])


def test_pod_failure_policy_and_backoff_limit_per_index_examples(cluster_factory: Any) -> None:
    c = start(cluster_factory)
    for name in ("job-pod-failure-policy-example.yaml", "job-pod-failure-policy-failjob.yaml",
                 "job-backoff-limit-per-index-example.yaml", "job-backoff-limit-per-index-failindex.yaml"):
        c.ketch("apply", "-f", example(name))

    # FailJob on exit code 42: the Job fails on the first pod failure, no retries.
    for name, parallelism in (("job-pod-failure-policy-example", 3), ("job-pod-failure-policy-failjob", 2)):
        job = wait_job(c, name, "Failed")
        failed = condition(job, "Failed")
        assert failed is not None and failed["reason"] == "PodFailurePolicy"
        assert "exit code 42" in failed["message"] and "FailJob rule at index 0" in failed["message"]
        # The first wave only: the pod that exited 42 and the others, terminated, count as failed.
        st = job["status"]
        assert (st.get("succeeded", 0), st.get("failed", 0), st.get("active", 0)) == (0, parallelism, 0), name
        assert logs(c, pods_of(c, name)[0]).startswith("Hello world!")

    # backoffLimitPerIndex: 1, even indexes always fail -> each fails twice, the Job fails.
    job = wait_job(c, "job-backoff-limit-per-index-example", "Failed")
    st = job["status"]
    assert (st["completedIndexes"], st["failedIndexes"]) == ("1,3,5,7,9", "0,2,4,6,8")
    assert (st["succeeded"], st["failed"]) == (5, 10)
    assert [(x["type"], x["reason"]) for x in st["conditions"]] == [
        ("FailureTarget", "FailedIndexes"), ("Failed", "FailedIndexes")]

    # FailIndex on exit code 42: index 1 fails without a retry, index 0 after one retry.
    job = wait_job(c, "job-backoff-limit-per-index-failindex", "Failed")
    st = job["status"]
    assert (st["completedIndexes"], st["failedIndexes"]) == ("2,3", "0,1")
    assert (st["succeeded"], st["failed"]) == (2, 3)
    assert condition(job, "Failed")["reason"] == "FailedIndexes"  # type: ignore[index]


def test_pod_failure_policy_ignore_example_survives_a_drain(cluster_factory: Any) -> None:
    c = start(cluster_factory)
    c.ketch("apply", "-f", example("job-pod-failure-policy-ignore.yaml"))
    name = "job-pod-failure-policy-ignore"
    first = wait_until(lambda: [p for p in pods_of(c, name) if p["status"].get("phase") == "Running"], 60,
                       "a running pod")[0]
    node = first["spec"]["nodeName"]
    # The docs: kubectl drain nodes/$nodeName --ignore-daemonsets --grace-period=0
    c.ketch("drain", node, "--ignore-daemonsets", "--grace-period=0")

    def replaced() -> list[dict[str, Any]]:
        pods = pods_of(c, name)
        gone = first["metadata"]["name"] not in {p["metadata"]["name"] for p in pods}
        fresh = [p for p in pods if p["status"].get("phase") == "Running" and p["spec"].get("nodeName") != node]
        return fresh if gone and len(fresh) == 2 else []

    wait_until(replaced, 60, "the evicted pod to be replaced on another node")
    job = c.get("job", name)
    # backoffLimit is 0: had the disruption counted, the Job would have failed.
    assert job["status"].get("failed", 0) == 0 and not condition(job, "Failed")


def test_examples_without_a_command_are_refused_clearly(cluster_factory: Any) -> None:
    c = start(cluster_factory, agents=1)
    for name, kind, obj in (("daemonset.yaml", "DaemonSet", "fluentd-elasticsearch"),
                            ("job-pod-failure-policy-config-issue.yaml", "Job", "job-pod-failure-policy-config-issue")):
        result = c.ketch("apply", "-f", example(name), check=False)
        assert result.returncode != 0
        assert (f'The {kind} "{obj}" is invalid: spec.template.spec.containers[0].command: Required value'
                in result.stderr)
        ns = manifest(name)["metadata"].get("namespace", "default")
        assert c.ketch("get", kind.lower(), obj, "-n", ns, check=False).returncode != 0


def test_indexed_job_examples_run_unchanged(cluster_factory: Any) -> None:
    """Both of the docs' Indexed Job examples: the index reaches each pod through a downwardAPI
    volume (the completion-index annotation as /input/data.txt), or an init container writes
    the index's word into an emptyDir the worker reads. Each pod's `rev` prints what the docs
    say. Needs root (volumes are bind mounts in a private mount namespace)."""
    if os.geteuid() != 0:
        pytest.skip("volumes are mounted in a private mount namespace: needs root (CAP_SYS_ADMIN)")
    input_existed = os.path.exists("/input")
    c = start(cluster_factory, agents=1)
    result = c.ketch("apply", "-f", example("indexed-job-vol.yaml"))
    assert "Warning" not in result.stderr
    job = wait_job(c, "indexed-job", "Complete")
    assert job["status"]["completedIndexes"] == "0-4"
    by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: logs(c, p)
                for p in pods_of(c, "indexed-job")}
    assert by_index == {str(i): str(i) for i in range(5)}  # the annotation has no newline, nor has rev's output
    c.ketch("delete", "job", "indexed-job")
    wait_until(lambda: c.ketch("get", "job", "indexed-job", check=False).returncode != 0, 30, "the job to go")
    wait_until(lambda: not pods_of(c, "indexed-job"), 60, "the job's pods to go")

    result = c.ketch("apply", "-f", example("indexed-job.yaml"))
    assert "Warning" not in result.stderr
    job = wait_job(c, "indexed-job", "Complete")
    by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: logs(c, p, "worker")
                for p in pods_of(c, "indexed-job")}
    assert by_index == {"0": "oof\n", "1": "rab\n", "2": "zab\n", "3": "xuq\n", "4": "zyx\n"}
    if not input_existed:  # the mount point made on the host goes once no pod uses it
        wait_until(lambda: not os.path.exists("/input"), 30, "the /input mount point made for the pods to go")
