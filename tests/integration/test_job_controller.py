"""The Job controller in-process against a real API server (real watches, real writes), with a
fake agent playing the pods: it binds each new pod, runs it to the exit code a test chooses,
and finishes graceful deletions as the real agent does (terminal phase, then a grace-0 delete).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.job.controller import JobController
from controlplane.controllers.options import ControllerOptions, JobOptions
from ketch.api import errors, manifest, timeutil
from ketch.client.cache import copy_of
from ketch.client.clientset import Client
from ketch.client.informer import Informer
from ketch.v1 import batch_pb2, core_pb2
from tests.conftest import eventually

from .cp_helpers import running

FAST = ControllerOptions(job=JobOptions(backoff_base=0.05, backoff_max=0.2))
TRACKING = "batch.kubernetes.io/job-tracking"
Outcome = Callable[[core_pb2.Pod], "int | None"]  # exit code, or None to keep running


def index_of(pod: core_pb2.Pod) -> int:
    return int(pod.metadata.annotations.get("batch.kubernetes.io/job-completion-index", "-1"))


class FakeAgent:
    """Plays every pod: bind, then Running (and Ready) or a terminal phase with a terminated
    container carrying the outcome's exit code. `conditions(pod)` may add pod conditions."""

    def __init__(self, client: Client, outcome: Outcome,
                 conditions: Callable[[core_pb2.Pod], list[tuple[str, str]]] | None = None) -> None:
        self.client = client
        self.outcome = outcome
        self.conditions = conditions or (lambda pod: [])
        self.informer = Informer(client, "Pod")
        self.todo: asyncio.Queue[str] = asyncio.Queue()
        self.informer.add_handler(self._enqueue, lambda old, new: self._enqueue(new), self._forget)
        self.max_running: dict[str, int] = {}
        self._running: dict[str, set[str]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self.paused = False

    def _enqueue(self, pod: Any) -> None:
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        self.todo.put_nowait(key)
        job = pod.metadata.labels.get("job-name", "")
        running = self._running.setdefault(job, set())
        if pod.status.phase in ("Pending", "Running") and not pod.metadata.deletion_timestamp:
            running.add(key)
            self.max_running[job] = max(self.max_running.get(job, 0), len(running))
        else:
            running.discard(key)

    def _forget(self, pod: Any) -> None:
        pod = getattr(pod, "obj", pod)
        self._running.get(pod.metadata.labels.get("job-name", ""), set()).discard(
            f"{pod.metadata.namespace}/{pod.metadata.name}")

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self.informer.run()), asyncio.create_task(self._work())]
        await self.informer.wait_for_sync()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    async def _work(self) -> None:
        while True:
            key = await self.todo.get()
            while self.paused:
                await asyncio.sleep(0.05)
            ns, _, name = key.partition("/")
            pod = self.informer.get(ns, name)
            if pod is None:
                continue
            try:
                await self._step(pod)
            except (errors.Conflict, errors.NotFound):
                pass  # a newer version (or the deletion) is on its way

    async def _step(self, pod: core_pb2.Pod) -> None:
        md = pod.metadata
        now = timeutil.now()
        terminal = pod.status.phase in ("Succeeded", "Failed")
        if md.deletion_timestamp:
            if not terminal:
                killed = copy_of(pod)
                self._terminate(killed, 137, now)
                await self.client.update_status(killed)
            elif md.deletion_grace_period_seconds != 0:
                await self.client.delete("Pod", md.name, md.namespace, grace_period_seconds=0)
            return
        if terminal:
            return
        if not pod.spec.node_name:
            bound = copy_of(pod)
            bound.spec.node_name = "node-1"
            await self.client.update(bound)
            return
        code = self.outcome(pod)
        new = copy_of(pod)
        for ctype, cstatus in self.conditions(pod):
            c = new.status.conditions.add()
            c.type, c.status, c.last_transition_time = ctype, cstatus, now
        if code is None:
            if pod.status.phase == "Running":
                return
            new.status.phase = "Running"
            cs = new.status.container_statuses.add()
            cs.name, cs.ready = pod.spec.containers[0].name, True
            cs.state.running.started_at = now
            c = new.status.conditions.add()
            c.type, c.status, c.last_transition_time = "Ready", "True", now
        else:
            self._terminate(new, code, now)
        await self.client.update_status(new)

    @staticmethod
    def _terminate(pod: core_pb2.Pod, code: int, now: str) -> None:
        pod.status.phase = "Succeeded" if code == 0 else "Failed"
        del pod.status.container_statuses[:]
        cs = pod.status.container_statuses.add()
        cs.name = pod.spec.containers[0].name
        t = cs.state.terminated
        t.exit_code, t.finished_at, t.started_at = code, now, now
        t.reason = "Completed" if code == 0 else "Error"
        for c in pod.status.conditions:
            if c.type == "Ready":
                c.status, c.last_transition_time = "False", now


@asynccontextmanager
async def cluster(client: Client, outcome: Outcome, options: ControllerOptions = FAST,
                  conditions: Callable[[core_pb2.Pod], list[tuple[str, str]]] | None = None
                  ) -> AsyncIterator[FakeAgent]:
    agent = FakeAgent(client, outcome, conditions)
    await agent.start()
    try:
        async with running(client, JobController, options=options):
            yield agent
    finally:
        await agent.stop()


def job_manifest(name: str, **spec: Any) -> batch_pb2.Job:
    doc: dict[str, Any] = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox", "command": ["true"]}]}}, **spec},
    }
    return manifest.from_dict(doc)  # type: ignore[return-value]


async def wait_condition(client: Client, name: str, ctype: str, timeout: float = 20) -> batch_pb2.Job:
    async def check() -> batch_pb2.Job | None:
        job = await client.get("Job", name, "default")
        for c in job.status.conditions:
            if c.type == ctype and c.status == "True":
                return job  # type: ignore[no-any-return]
        return None

    return await eventually(check, timeout=timeout, what=f"job {name} to be {ctype}")  # type: ignore[no-any-return]


async def job_pods(client: Client, name: str) -> list[core_pb2.Pod]:
    items, _ = await client.list("Pod", "default", label_selector=f"job-name={name}")
    return items


async def events_for(client: Client, name: str) -> list[str]:
    items, _ = await client.list("Event", "default", field_selector=f"involvedObject.name={name}")
    return [e.reason for e in items]


def types(job: batch_pb2.Job) -> list[str]:
    return [c.type for c in job.status.conditions]


# -- tests -------------------------------------------------------------------------------------


async def test_completions_and_parallelism(api: TestAPIServer) -> None:
    client = api.client
    async with cluster(client, lambda pod: 0) as agent:
        await client.create(job_manifest("pi", completions=8, parallelism=2))
        job = await wait_condition(client, "pi", "Complete")

        async def recorded() -> bool:
            reasons = await events_for(client, "pi")
            return reasons.count("SuccessfulCreate") == 8 and "Completed" in reasons

        await eventually(recorded, timeout=10, what="SuccessfulCreate and Completed events")
    st = job.status
    assert (st.succeeded, st.failed, st.active, st.ready, st.terminating) == (8, 0, 0, 0, 0)
    assert types(job) == ["SuccessCriteriaMet", "Complete"]
    assert job.status.conditions[1].reason == "CompletionsReached"
    assert st.completion_time == job.status.conditions[1].last_transition_time and st.start_time
    assert agent.max_running["pi"] <= 2
    pods = await job_pods(client, "pi")
    assert len(pods) == 8 and all(p.status.phase == "Succeeded" for p in pods)
    assert not any(TRACKING in p.metadata.finalizers for p in pods)
    assert all(p.metadata.generate_name == "pi-" for p in pods)


async def test_work_queue_mode_stops_after_the_first_success(api: TestAPIServer) -> None:
    client = api.client
    first = itertools.count()

    def outcome(pod: core_pb2.Pod) -> int | None:
        return 0 if next(first) == 0 else None  # one pod succeeds, the others keep working

    async with cluster(client, outcome) as agent:
        await client.create(job_manifest("wq", parallelism=3))

        async def one_succeeded() -> bool:
            job = await client.get("Job", "wq", "default")
            return job.status.succeeded == 1

        await eventually(one_succeeded, timeout=10, what="a success")
        agent.outcome = lambda pod: 0  # the workers notice the queue is empty
        for p in await job_pods(client, "wq"):
            agent._enqueue(p)
        job = await wait_condition(client, "wq", "Complete")
    assert job.status.succeeded == 3
    assert len(await job_pods(client, "wq")) == 3  # no pod was started after the first success


async def test_backoff_limit_exceeded(api: TestAPIServer) -> None:
    client = api.client
    async with cluster(client, lambda pod: 1):
        await client.create(job_manifest("fail", backoffLimit=2))
        job = await wait_condition(client, "fail", "Failed")

        async def recorded() -> bool:
            return "BackoffLimitExceeded" in await events_for(client, "fail")

        await eventually(recorded, timeout=10, what="the BackoffLimitExceeded event")
        await asyncio.sleep(0.3)  # nothing more happens to a failed Job
        job = await client.get("Job", "fail", "default")
    assert job.status.failed == 3
    assert types(job) == ["FailureTarget", "Failed"]
    assert job.status.conditions[1].reason == "BackoffLimitExceeded"
    assert job.status.conditions[1].message == "Job has reached the specified backoff limit"
    assert len(await job_pods(client, "fail")) == 3


async def test_fails_then_succeeds(api: TestAPIServer) -> None:
    client = api.client
    attempts = itertools.count()
    async with cluster(client, lambda pod: 1 if next(attempts) < 2 else 0):
        await client.create(job_manifest("flaky", backoffLimit=6))
        job = await wait_condition(client, "flaky", "Complete")
    assert (job.status.succeeded, job.status.failed) == (1, 2)


async def test_active_deadline(api: TestAPIServer) -> None:
    client = api.client
    async with cluster(client, lambda pod: None):
        await client.create(job_manifest("slow", parallelism=2, completions=2, activeDeadlineSeconds=1))
        job = await wait_condition(client, "slow", "Failed", timeout=10)
    assert job.status.conditions[-1].reason == "DeadlineExceeded"
    assert job.status.conditions[-1].message == "Job was active longer than specified deadline"
    assert (job.status.active, job.status.failed, job.status.terminating) == (0, 2, 0)


async def test_indexed_job(api: TestAPIServer) -> None:
    client = api.client
    async with cluster(client, lambda pod: 0):
        await client.create(job_manifest("idx", completions=4, parallelism=2, completionMode="Indexed"))
        job = await wait_condition(client, "idx", "Complete")
    assert job.status.completed_indexes == "0-3" and job.status.succeeded == 4
    pods = await job_pods(client, "idx")
    assert sorted(index_of(p) for p in pods) == [0, 1, 2, 3]
    for p in pods:
        i = index_of(p)
        assert p.spec.hostname == f"idx-{i}"
        assert p.metadata.labels["batch.kubernetes.io/job-completion-index"] == str(i)
        assert p.metadata.name.startswith(f"idx-{i}-")


async def test_backoff_limit_per_index_fails_only_the_odd_indexes(api: TestAPIServer) -> None:
    client = api.client
    async with cluster(client, lambda pod: index_of(pod) % 2):
        await client.create(job_manifest("odd", completions=4, parallelism=4, completionMode="Indexed",
                                         backoffLimitPerIndex=1))
        job = await wait_condition(client, "odd", "Failed")
    st = job.status
    assert (st.completed_indexes, st.failed_indexes, st.succeeded, st.failed) == ("0,2", "1,3", 2, 4)
    assert job.status.conditions[-1].reason == "FailedIndexes"
    counts = sorted((index_of(p), p.metadata.annotations["batch.kubernetes.io/job-index-failure-count"])
                    for p in await job_pods(client, "odd") if index_of(p) % 2)
    assert counts == [(1, "0"), (1, "1"), (3, "0"), (3, "1")]


async def test_pod_failure_policy_fail_job(api: TestAPIServer) -> None:
    client = api.client
    async with cluster(client, lambda pod: 42):
        await client.create(job_manifest("exit42", parallelism=1, completions=3, backoffLimit=6, podFailurePolicy={
            "rules": [{"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In",
                                                            "values": [42]}}]}))
        job = await wait_condition(client, "exit42", "Failed")
    assert job.status.failed == 1
    assert job.status.conditions[-1].reason == "PodFailurePolicy"
    assert "failed with exit code 42 matching FailJob rule at index 0" in job.status.conditions[-1].message


async def test_pod_failure_policy_ignore_disruption(api: TestAPIServer) -> None:
    client = api.client
    attempts = itertools.count()
    first: set[str] = set()

    def outcome(pod: core_pb2.Pod) -> int:
        if next(attempts) == 0:
            first.add(pod.metadata.name)
            return 1
        return 0

    def conditions(pod: core_pb2.Pod) -> list[tuple[str, str]]:
        return [("DisruptionTarget", "True")] if pod.metadata.name in first or not first else []

    async with cluster(client, outcome, conditions=conditions):
        await client.create(job_manifest("disrupted", backoffLimit=0, podFailurePolicy={
            "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}))
        job = await wait_condition(client, "disrupted", "Complete")
    assert (job.status.succeeded, job.status.failed) == (1, 0)


async def test_suspend_and_resume(api: TestAPIServer) -> None:
    client = api.client
    async with cluster(client, lambda pod: None) as agent:
        await client.create(job_manifest("sus", parallelism=2, completions=2))

        async def active(n: int) -> bool:
            job = await client.get("Job", "sus", "default")
            return job.status.active == n

        await eventually(lambda: active(2), what="two active pods")
        await client.patch("Job", "sus", {"spec": {"suspend": True}}, namespace="default")
        job = await wait_condition(client, "sus", "Suspended")
        assert job.status.conditions[0].reason == "JobSuspended"

        async def no_pods() -> bool:
            return not await job_pods(client, "sus")

        await eventually(no_pods, what="the suspended job's pods to be deleted")
        job = await client.get("Job", "sus", "default")
        assert (job.status.active, job.status.failed) == (0, 0)
        agent.outcome = lambda pod: 0
        await client.patch("Job", "sus", {"spec": {"suspend": False}}, namespace="default")
        job = await wait_condition(client, "sus", "Complete")

        async def recorded() -> bool:
            reasons = await events_for(client, "sus")
            return "Suspended" in reasons and "Resumed" in reasons and "SuccessfulDelete" in reasons

        await eventually(recorded, timeout=10, what="Suspended, Resumed and SuccessfulDelete events")
    assert (job.status.succeeded, job.status.failed) == (2, 0)
    suspended = next(c for c in job.status.conditions if c.type == "Suspended")
    assert (suspended.status, suspended.reason) == ("False", "JobResumed")


async def test_scaling_parallelism(api: TestAPIServer) -> None:
    client = api.client
    async with cluster(client, lambda pod: None) as agent:
        await client.create(job_manifest("scale", parallelism=1, completions=4))

        async def active(n: int) -> bool:
            job = await client.get("Job", "scale", "default")
            return job.status.active == n

        await eventually(lambda: active(1), what="one active pod")
        await client.patch("Job", "scale", {"spec": {"parallelism": 3}}, namespace="default")
        await eventually(lambda: active(3), what="three active pods")
        await client.patch("Job", "scale", {"spec": {"parallelism": 2}}, namespace="default")
        await eventually(lambda: active(2), what="two active pods")
        agent.outcome = lambda pod: 0
        for p in await job_pods(client, "scale"):
            agent._enqueue(p)
        job = await wait_condition(client, "scale", "Complete")
    assert (job.status.succeeded, job.status.failed) == (4, 0)


async def test_deleted_job_releases_its_pods(api: TestAPIServer) -> None:
    client = api.client
    async with cluster(client, lambda pod: None):
        await client.create(job_manifest("gone", parallelism=2, completions=2))

        async def two_running() -> list[core_pb2.Pod] | None:
            pods = [p for p in await job_pods(client, "gone") if p.status.phase == "Running"]
            return pods if len(pods) == 2 else None

        await eventually(two_running, what="two running pods")
        await client.delete("Job", "gone", "default", propagation_policy="Background")

        async def released() -> bool:
            pods = await job_pods(client, "gone")
            return bool(pods) and not any(TRACKING in p.metadata.finalizers for p in pods)

        await eventually(released, what="the pods of the deleted job to lose the finalizer")


async def test_orphan_pod_is_adopted(api: TestAPIServer) -> None:
    client = api.client
    async with cluster(client, lambda pod: 0):
        job = job_manifest("adopter", parallelism=1, completions=1, manualSelector=True,
                           selector={"matchLabels": {"app": "adopt-me"}})
        job.spec.template.metadata.labels["app"] = "adopt-me"
        orphan = core_pb2.Pod()
        orphan.metadata.name, orphan.metadata.namespace = "stray", "default"
        orphan.metadata.labels["app"] = "adopt-me"
        orphan.spec.CopyFrom(job.spec.template.spec)
        await client.create(orphan)
        await client.create(job)
        done = await wait_condition(client, "adopter", "Complete")
    assert done.status.succeeded == 1
    stray = await client.get("Pod", "stray", "default")
    assert stray.metadata.owner_references[0].name == "adopter"
    items, _ = await client.list("Pod", "default", label_selector="app=adopt-me")
    assert len(items) == 1  # the adopted pod did the work: none was created
