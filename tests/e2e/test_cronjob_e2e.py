"""CronJobs end to end: a real control plane and an agent as processes, real pods, second
schedules, driven through the CLI. What a user relies on: Allow overlaps, Forbid never runs two
and skips, Replace replaces, suspend/resume, exact history limits, only the latest missed time
after the control plane was down (none past startingDeadlineSeconds), `create job --from`, and
invalid schedules and zones refused with field errors.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
from typing import Any

from ketch.api import timeutil

from .harness import Cluster, WatchObserver, condition, wait_until

FLAGS = ["--job-backoff-base", "1s", "--job-backoff-max", "4s"]
SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"


def cronjob_yaml(name: str, schedule: str, command: list[str], **spec: Any) -> str:
    job_spec = {"backoffLimit": 0, "template": {"spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": "busybox", "command": command}]}}}
    return json.dumps({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
        "spec": {"schedule": schedule, **spec,
                 "jobTemplate": {"metadata": {"labels": {"cron": name}}, "spec": job_spec}},
    })


class Observer(WatchObserver):
    """Watches Jobs through the API and keeps, per CronJob (label `cron`), the most unfinished
    Jobs ever seen at once."""

    def __init__(self, server: str) -> None:
        super().__init__(server, [("Job", "")])
        self.max_running: dict[str, int] = {}
        self._running: dict[str, set[str]] = {}

    def on_event(self, kind: str, etype: str, job: Any) -> None:
        self._job(etype, job)

    def _job(self, etype: str, job: Any) -> None:
        cj = job.metadata.labels.get("cron")
        if not cj:
            return
        running = self._running.setdefault(cj, set())
        finished = any(c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions)
        if etype == "DELETED" or finished or job.metadata.deletion_timestamp:
            running.discard(job.metadata.name)
        else:
            running.add(job.metadata.name)
        self.max_running[cj] = max(self.max_running.get(cj, 0), len(running))


def jobs_of(c: Cluster, cj: str) -> list[dict[str, Any]]:
    return sorted(c.items("jobs", "-l", f"cron={cj}"), key=lambda j: j["metadata"]["name"])


def scheduled(job: dict[str, Any]) -> float:
    return timeutil.parse(job["metadata"]["annotations"][SCHEDULED])


def finished(job: dict[str, Any]) -> str | None:
    for ctype in ("Complete", "Failed"):
        if condition(job, ctype):
            return ctype
    return None


def events(c: Cluster, reason: str, name: str) -> list[dict[str, Any]]:
    return [e for e in c.items("events") if e.get("reason") == reason
            and e.get("involvedObject", {}).get("name") == name]


def start(cluster_factory: Any) -> Cluster:
    c: Cluster = cluster_factory(FLAGS)
    c.start_controlplane()
    c.start_agent("node-a")
    return c


def test_concurrency_policies(cluster_factory: Any) -> None:
    """Allow overlaps; Forbid never has two running and skips; Replace deletes the running Job."""
    c = start(cluster_factory)
    observer = Observer(c.server)
    observer.start()
    try:
        c.apply(cronjob_yaml("allow", "*/2 * * * * *", ["sleep", "5"]))
        c.apply(cronjob_yaml("forbid", "*/1 * * * * *", ["sleep", "3"], concurrencyPolicy="Forbid"))
        c.apply(cronjob_yaml("replace", "*/3 * * * * *", ["sleep", "60"], concurrencyPolicy="Replace"))

        wait_until(lambda: len(c.get("cronjob", "allow")["status"].get("active", [])) >= 2, 30,
                   "two overlapping runs under Allow")

        first = wait_until(lambda: jobs_of(c, "replace"), 20, "the first Replace run")[0]["metadata"]["name"]
        wait_until(lambda: c.try_get("job", first) is None and jobs_of(c, "replace"), 20,
                   "the first Replace run deleted and a new one started")
        active = c.get("cronjob", "replace")["status"].get("active", [])
        assert len(active) == 1 and active[0]["name"] != first
        wait_until(lambda: events(c, "SuccessfulDelete", "replace"), 10, "SuccessfulDelete for Replace")
        wait_until(lambda: not c.items("pods", "-l", f"job-name={first}"), 30, "the replaced Job's pods gone")

        wait_until(lambda: len([j for j in jobs_of(c, "forbid") if finished(j)]) >= 2, 40,
                   "two finished Forbid runs")
        assert events(c, "JobAlreadyActive", "forbid"), "Forbid skipped no run"
        jobs = sorted(jobs_of(c, "forbid"), key=scheduled)
        for prev, nxt in itertools.pairwise(jobs):
            done = prev.get("status", {}).get("completionTime")
            assert done and timeutil.parse(nxt["metadata"]["creationTimestamp"]) >= timeutil.parse(done), \
                f"{nxt['metadata']['name']} started before {prev['metadata']['name']} finished"
    finally:
        observer.stop()
    assert observer.max_running.get("forbid") == 1, observer.max_running
    assert observer.max_running.get("allow", 0) >= 2, observer.max_running


def test_suspend_resume_and_exact_history(cluster_factory: Any) -> None:
    c = start(cluster_factory)
    # Even seconds succeed, odd seconds fail.
    c.apply(cronjob_yaml("hist", "*/1 * * * * *", ["sh", "-c", "test $(( $(date +%s) % 2 )) -eq 0"],
                         successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1))
    c.apply(cronjob_yaml("nap", "*/1 * * * * *", ["true"]))

    wait_until(lambda: jobs_of(c, "nap"), 20, "a run")
    c.ketch("patch", "cronjob", "nap", "-p", '{"spec":{"suspend":true}}')
    # A run already in flight may land: take the runs once none has been added for two schedule
    # periods (the controller runs in another process, so that is what can be observed), not
    # after a fixed guess that a loaded machine overruns.
    seen: dict[str, Any] = {"names": None, "since": time.monotonic()}

    def quiet() -> set[str] | None:
        names = {j["metadata"]["name"] for j in jobs_of(c, "nap")}
        if names != seen["names"]:
            seen.update(names=names, since=time.monotonic())
            return None
        return names if time.monotonic() - seen["since"] >= 2 else None

    names = wait_until(quiet, 30, "no new run of the suspended CronJob")
    time.sleep(3)
    assert {j["metadata"]["name"] for j in jobs_of(c, "nap")} == names, "a suspended CronJob ran"
    assert c.get("cronjob", "nap")["spec"]["suspend"] is True
    c.ketch("patch", "cronjob", "nap", "-p", '{"spec":{"suspend":false}}')
    wait_until(lambda: {j["metadata"]["name"] for j in jobs_of(c, "nap")} - names, 20, "a run after resume")

    def both_kinds_seen() -> bool:
        cj = c.get("cronjob", "hist")
        return bool(cj["status"].get("lastSuccessfulTime")) and bool(events(c, "SawCompletedJob", "hist"))

    wait_until(both_kinds_seen, 40, "finished runs of the history CronJob")
    time.sleep(4)
    c.ketch("patch", "cronjob", "hist", "-p", '{"spec":{"suspend":true}}')

    def exact() -> bool:
        jobs = jobs_of(c, "hist")
        if any(finished(j) is None for j in jobs):
            return False
        kinds = sorted(finished(j) or "" for j in jobs)
        return kinds == ["Complete", "Complete", "Failed"]

    wait_until(exact, 40, "exactly 2 successful and 1 failed Job kept")
    time.sleep(2)
    assert exact(), [(j["metadata"]["name"], finished(j)) for j in jobs_of(c, "hist")]


def test_control_plane_downtime_runs_only_the_latest_missed_time(cluster_factory: Any) -> None:
    c = start(cluster_factory)
    c.apply(cronjob_yaml("every", "*/1 * * * * *", ["true"]))
    # One run per 10 s: the one that falls in the downtime is long past its 1 s deadline.
    c.apply(cronjob_yaml("deadline", "*/10 * * * * *", ["true"], startingDeadlineSeconds=1))
    c.apply(cronjob_yaml("nodeadline", "*/10 * * * * *", ["true"]))
    wait_until(lambda: jobs_of(c, "deadline") and jobs_of(c, "nodeadline"), 40, "a first */10 run")
    seen_deadline = {j["metadata"]["name"] for j in jobs_of(c, "deadline")}
    seen_nodeadline = {j["metadata"]["name"] for j in jobs_of(c, "nodeadline")}
    # Stop just after a */10 tick has been run, stay down across the next tick, come back
    # 3 s after it.
    now = time.time()
    next_tick = (int(now) // 10 + 1) * 10
    time.sleep(max(0.0, next_tick + 0.5 - time.time()))
    c.stop_process("controlplane", signal.SIGTERM)
    stopped = time.time()
    missed_tick = next_tick + 10
    time.sleep(max(0.0, missed_tick + 3 - time.time()))
    restarting = time.time()
    c.start_controlplane()

    def every_after_stop() -> list[dict[str, Any]]:
        return [j for j in jobs_of(c, "every") if scheduled(j) > stopped]

    wait_until(lambda: len(every_after_stop()) >= 3, 30, "runs after the restart")
    times = sorted(scheduled(j) for j in every_after_stop())
    # The seconds of the downtime were skipped: the first run after the stop is the most
    # recent missed second at the first sync, which comes after the new process started.
    assert times[0] >= int(restarting) - 1, (stopped, restarting, times)
    assert not events(c, "TooManyMissedTimes", "every")

    wait_until(lambda: {j["metadata"]["name"] for j in jobs_of(c, "nodeadline")} - seen_nodeadline, 20,
               "the missed */10 time run late without a deadline")
    late = [j for j in jobs_of(c, "nodeadline") if scheduled(j) == missed_tick]
    assert len(late) == 1
    assert not [j for j in jobs_of(c, "deadline") if scheduled(j) == missed_tick], \
        "a time past startingDeadlineSeconds ran"
    assert events(c, "MissSchedule", "deadline")
    assert {j["metadata"]["name"] for j in jobs_of(c, "deadline")} >= seen_deadline


def test_create_job_from_cronjob_and_invalid_specs(cluster_factory: Any) -> None:
    c = start(cluster_factory)
    c.apply(cronjob_yaml("nightly", "0 3 * * *", ["true"], timeZone="Europe/Paris"))
    out = c.ketch("create", "job", "nightly-manual", "--from=cronjob/nightly").stdout
    assert out.strip() == "job.batch/nightly-manual created"
    job = c.get("job", "nightly-manual")
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner.get("controller")) == ("CronJob", "nightly", True)
    wait_until(lambda: condition(c.get("job", "nightly-manual"), "Complete"), 30, "the manual run to complete")

    table = c.ketch("get", "cronjobs").stdout.splitlines()
    assert table[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert "Europe/Paris" in table[1]

    cases = [
        ("61 * * * *", {}, 'spec.schedule: Invalid value: "61 * * * *"'),
        ("*/5 * * * * * *", {}, "spec.schedule: Invalid value"),
        ("TZ=UTC 0 * * * *", {}, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
        ("0 * * * *", {"timeZone": "Mars/Olympus_Mons"}, "spec.timeZone: Invalid value"),
        ("0 * * * *", {"timeZone": "Local"}, "spec.timeZone: Invalid value"),
    ]
    for i, (schedule, extra, message) in enumerate(cases):
        result = c.ketch("apply", "-f", "-", input=cronjob_yaml(f"bad-{i}", schedule, ["true"], **extra),
                         check=False)
        assert result.returncode != 0, schedule
        assert message in result.stderr, result.stderr
        assert c.try_get("cronjob", f"bad-{i}") is None
