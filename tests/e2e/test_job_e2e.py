"""Jobs end to end: a real control plane and agents as processes, real pods, driven through
the CLI with the back-off base turned down to 1 s. What a user relies on: the pi Job, retries
and backoffLimit, activeDeadlineSeconds, podFailurePolicy, Indexed Jobs (environment and
hostname), backoffLimitPerIndex, suspend/resume, and exact counts across a SIGKILL of the
control plane.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from .harness import Cluster, WatchObserver, condition, wait_until

FLAGS = ["--job-backoff-base", "1s", "--job-backoff-max", "4s"]


class JobObserver(WatchObserver):
    """Watches (through the API) every Job's status.active and the pods of each Job that are
    not finished yet, and keeps the most ever seen at once."""

    def __init__(self, server: str) -> None:
        super().__init__(server, [("Job", ""), ("Pod", "")])
        self.max_active: dict[str, int] = {}
        self.max_live_pods: dict[str, int] = {}
        self._live: dict[str, set[str]] = {}
        self.seen_pods: dict[str, set[str]] = {}

    def on_event(self, kind: str, etype: str, obj: Any) -> None:
        (self._job if kind == "Job" else self._pod)(etype, obj)

    def _job(self, etype: str, job: Any) -> None:
        name = job.metadata.name
        self.max_active[name] = max(self.max_active.get(name, 0), job.status.active)

    def _pod(self, etype: str, pod: Any) -> None:
        job = pod.metadata.labels.get("job-name")
        if not job:
            return
        self.seen_pods.setdefault(job, set()).add(pod.metadata.name)
        live = self._live.setdefault(job, set())
        if etype != "DELETED" and pod.status.phase in ("Pending", "Running") and not pod.metadata.deletion_timestamp:
            live.add(pod.metadata.name)
        else:
            live.discard(pod.metadata.name)
        self.max_live_pods[job] = max(self.max_live_pods.get(job, 0), len(live))


def job_yaml(name: str, command: list[str], **spec: Any) -> str:
    template = {"spec": {"restartPolicy": spec.pop("restartPolicy", "Never"),
                         "containers": [{"name": "main", "image": "busybox", "command": command}]}}
    return json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                       "spec": {**spec, "template": template}})


def wait_job(c: Cluster, name: str, ctype: str, timeout: float = 90) -> dict[str, Any]:
    return wait_until(lambda: condition(c.get("job", name), ctype) and c.get("job", name), timeout,
                      f"job {name} to be {ctype}")


def pods_of(c: Cluster, job: str) -> list[dict[str, Any]]:
    return c.items("pods", "-l", f"job-name={job}")


def start(c: Cluster, agents: int = 2, agent_flags: list[str] | None = None) -> JobObserver:
    c.start_controlplane()
    for i in range(agents):
        c.start_agent(f"node-{'abc'[i]}", extra=agent_flags)
    observer = JobObserver(c.server)
    observer.start()
    return observer


def test_jobs_run_retry_and_fail_as_kubernetes(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(FLAGS)
    observer = start(c)
    marker = tmp_path / "flaky-ran-once"
    try:
        c.apply(job_yaml("pi", ["perl", "-Mbignum=bpi", "-wle", "print bpi(200)"], completions=8, parallelism=2))
        c.apply(job_yaml("flaky", ["sh", "-c", f"test -e {marker} || {{ touch {marker}; exit 1; }}"]))
        c.apply(job_yaml("hopeless", ["sh", "-c", "exit 1"], backoffLimit=2))
        c.apply(job_yaml("slow", ["sleep", "60"], activeDeadlineSeconds=3, parallelism=2, completions=2))
        c.apply(job_yaml("exit42", ["sh", "-c", "exit 42"], backoffLimit=6, podFailurePolicy={"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}]}))

        pi = wait_job(c, "pi", "Complete")
        assert pi["status"]["succeeded"] == 8
        assert observer.max_active["pi"] <= 2 and observer.max_live_pods["pi"] <= 2
        pi_pods = pods_of(c, "pi")
        assert len(pi_pods) == 8 and {p["spec"]["nodeName"] for p in pi_pods} <= {"node-a", "node-b"}
        assert c.ketch("logs", pi_pods[0]["metadata"]["name"]).stdout.startswith("3.14159")
        assert [x["type"] for x in pi["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
        assert pi["status"]["completionTime"]

        flaky = wait_job(c, "flaky", "Complete")
        assert (flaky["status"]["succeeded"], flaky["status"]["failed"]) == (1, 1)

        hopeless = wait_job(c, "hopeless", "Failed")
        failed = condition(hopeless, "Failed")
        assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
        assert hopeless["status"]["failed"] == 3
        assert len(pods_of(c, "hopeless")) == 3

        slow = wait_job(c, "slow", "Failed")
        assert condition(slow, "Failed")["reason"] == "DeadlineExceeded"  # type: ignore[index]
        assert slow["status"].get("active", 0) == 0

        exit42 = wait_job(c, "exit42", "Failed")
        assert condition(exit42, "Failed")["reason"] == "PodFailurePolicy"  # type: ignore[index]
        assert exit42["status"]["failed"] == 1 and len(pods_of(c, "exit42")) == 1

        described = c.ketch("describe", "job", "hopeless").stdout
        assert "BackoffLimitExceeded" in described and "SuccessfulCreate" in described
        table = c.ketch("get", "jobs").stdout
        assert "pi" in table and "8/8" in table
    finally:
        observer.stop()


def test_indexed_jobs_suspend_and_restarts_in_place(cluster_factory: Any) -> None:
    c = cluster_factory(FLAGS)
    observer = start(c, agent_flags=["--crash-loop-backoff-base", "200ms", "--crash-loop-backoff-max", "1s"])
    try:
        c.apply(job_yaml("crashy", ["sh", "-c", "exit 3"], restartPolicy="OnFailure", backoffLimit=2))
        c.apply(job_yaml("idx", ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX host=$HOSTNAME"],
                         completions=3, parallelism=3, completionMode="Indexed"))
        c.apply(job_yaml("odd", ["sh", "-c", "exit $((JOB_COMPLETION_INDEX % 2))"], completions=4, parallelism=4,
                         completionMode="Indexed", backoffLimitPerIndex=1))

        idx = wait_job(c, "idx", "Complete")
        assert idx["status"]["completedIndexes"] == "0-2"
        seen = {}
        for p in pods_of(c, "idx"):
            i = p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
            assert p["spec"]["hostname"] == f"idx-{i}"
            seen[i] = c.ketch("logs", p["metadata"]["name"]).stdout.strip()
        assert seen == {str(i): f"index={i} host=idx-{i}" for i in range(3)}

        c.apply(job_yaml("sus", ["sleep", "6"], completions=2, parallelism=2))
        wait_until(lambda: c.get("job", "sus").get("status", {}).get("active") == 2, 30, "two active sus pods")
        c.ketch("patch", "job", "sus", "-p", '{"spec":{"suspend":true}}')
        sus = wait_job(c, "sus", "Suspended", timeout=30)
        wait_until(lambda: not [p for p in pods_of(c, "sus") if not p["metadata"].get("deletionTimestamp")],
                   30, "the suspended job's pods to go")
        sus = c.get("job", "sus")
        assert sus["status"].get("failed", 0) == 0 and sus["status"].get("active", 0) == 0
        c.ketch("patch", "job", "sus", "-p", '{"spec":{"suspend":false}}')
        sus = wait_job(c, "sus", "Complete")
        assert (sus["status"]["succeeded"], sus["status"].get("failed", 0)) == (2, 0)
        assert any(x["type"] == "Suspended" and x["status"] == "False" and x["reason"] == "JobResumed"
                   for x in sus["status"]["conditions"])

        crashy = wait_job(c, "crashy", "Failed")
        assert condition(crashy, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
        assert len(observer.seen_pods["crashy"]) == 1  # restarted in place, never replaced
        assert crashy["status"]["failed"] == 1  # the pod, deleted when the Job failed

        odd = wait_job(c, "odd", "Failed")
        st = odd["status"]
        assert (st["completedIndexes"], st["failedIndexes"]) == ("0,2", "1,3")
        assert condition(odd, "Failed")["reason"] == "FailedIndexes"  # type: ignore[index]
        assert (st["succeeded"], st["failed"]) == (2, 4)
    finally:
        observer.stop()


def test_sigkill_of_the_control_plane_loses_no_count(cluster_factory: Any) -> None:
    c = cluster_factory(FLAGS)
    observer = start(c)
    try:
        c.apply(job_yaml("many", ["sleep", "0.3"], completions=200, parallelism=10))
        def succeeded() -> int:
            n = int(c.get("job", "many").get("status", {}).get("succeeded", 0))
            return n if n >= 30 else 0

        before = wait_until(succeeded, 120, "30 completions before the crash")
        c.send("controlplane", signal.SIGKILL)
        assert before < 200, "the job finished before the crash"
        c.members["controlplane"].stop(10, signal.SIGKILL)  # already killed: reap it
        c.start_controlplane()
        many = wait_job(c, "many", "Complete", timeout=180)
        pods = pods_of(c, "many")
        succeeded_pods = [p for p in pods if p["status"].get("phase") == "Succeeded"]
        assert many["status"]["succeeded"] == 200
        assert len(succeeded_pods) == 200
        assert not any("batch.kubernetes.io/job-tracking" in p["metadata"].get("finalizers", []) for p in pods)
        assert many["status"].get("failed", 0) == len([p for p in pods if p["status"].get("phase") == "Failed"])
    finally:
        observer.stop()


def test_disruptions_are_ignored_and_deleted_jobs_release_their_pods(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(FLAGS)
    observer = start(c)
    marker = tmp_path / "evicted-once"
    try:
        # The first pod sleeps until it is evicted by a drain; its replacement finds the marker.
        c.apply(job_yaml("evictee", ["sh", "-c", f"test -e {marker} && exit 0; touch {marker}; sleep 60"],
                         backoffLimit=0, podFailurePolicy={"rules": [
                             {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}))
        first = wait_until(lambda: [p for p in pods_of(c, "evictee") if p["status"].get("phase") == "Running"],
                           30, "the first pod to run")[0]
        c.ketch("drain", first["spec"]["nodeName"], "--timeout", "60s")
        evictee = wait_job(c, "evictee", "Complete")
        assert (evictee["status"]["succeeded"], evictee["status"].get("failed", 0)) == (1, 0)
        c.ketch("uncordon", first["spec"]["nodeName"])

        c.apply(job_yaml("doomed", ["sleep", "60"], completions=2, parallelism=2))
        wait_until(lambda: c.get("job", "doomed").get("status", {}).get("active") == 2, 30, "two active pods")
        c.ketch("delete", "job", "doomed", "--cascade=background")
        wait_until(lambda: not pods_of(c, "doomed"), 60, "the deleted job's pods to be gone")
    finally:
        observer.stop()
