"""Jobs, pods and a controller wired to fakes, for the Job controller's unit tests.

Mirrors Kubernetes' job_controller_test.go helpers: newJob, newPodList, a FakePodControl and
informer caches seeded directly (no API server, no watch), and a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controlplane.controllers.base import ControllerContext
from controlplane.controllers.job.controller import JobController
from controlplane.controllers.job.indexed import COMPLETION_INDEX_KEY, INDEX_FAILURE_COUNT_KEY
from controlplane.controllers.job.podcontrol import FakePodControl
from controlplane.controllers.job.pods import TRACKING_FINALIZER
from controlplane.controllers.options import ControllerOptions, JobOptions
from ketch.api import errors, meta, timeutil
from ketch.client.cache import copy_of
from ketch.client.informer import InformerFactory
from ketch.testing.fake_clock import FakeClock
from ketch.v1 import batch_pb2, core_pb2

NOW = 1_700_000_000.0
JOB_UID = "11111111-2222-3333-4444-555555555555"
LONG_AGO = NOW - 3600


def ts(t: float) -> str:
    return timeutil.format(t)


def new_job(parallelism: int | None = None, completions: int | None = None, backoff_limit: int | None = 6,
            mode: str | None = None, name: str = "foobar", restart_policy: str = "Never",
            suspend: bool | None = None, **fields: Any) -> batch_pb2.Job:
    """Like Kubernetes' newJob: None leaves parallelism/completions unset."""
    job = batch_pb2.Job(api_version="batch/v1", kind="Job")
    md = job.metadata
    md.name, md.namespace, md.uid = name, "default", JOB_UID
    md.resource_version, md.generation = "10", 1
    md.creation_timestamp = ts(NOW - 100)
    s = job.spec
    s.selector.match_labels["batch.kubernetes.io/controller-uid"] = JOB_UID
    labels = s.template.metadata.labels
    labels["batch.kubernetes.io/controller-uid"] = JOB_UID
    labels["controller-uid"] = JOB_UID
    labels["batch.kubernetes.io/job-name"] = name
    labels["job-name"] = name
    c = s.template.spec.containers.add()
    c.name, c.image = "main", "foo/bar"
    c.command.extend(["true"])
    s.template.spec.restart_policy = restart_policy
    if parallelism is not None:
        s.parallelism = parallelism
    if completions is not None:
        s.completions = completions
    if backoff_limit is not None:
        s.backoff_limit = backoff_limit
    if mode is not None:
        s.completion_mode = mode
    if suspend is not None:
        s.suspend = suspend
    for k, v in fields.items():
        setattr(s, k, v)
    return job


_counter = 0


def new_pod(job: batch_pb2.Job, phase: str = "Running", *, name: str | None = None, index: int | str | None = None,
            ready: bool = False, finalizer: bool = True, deleting: bool = False, node: str = "node-1",
            finished_at: float | None = None, exit_code: int | None = None, created: float | None = None,
            failure_count: int | None = None, restarts: int = 0, conditions: tuple[tuple[str, str], ...] = (),
            owned: bool = True) -> core_pb2.Pod:
    """A pod of the job. Terminal pods get a terminated container (exit 0 for Succeeded, 1 for
    Failed unless exit_code is given) that finished at finished_at (long ago by default)."""
    global _counter
    _counter += 1
    pod = core_pb2.Pod(api_version="v1", kind="Pod")
    md = pod.metadata
    md.name = name or f"{job.metadata.name}-{_counter:05d}"
    md.namespace = job.metadata.namespace
    md.uid = f"uid-{md.name}"
    md.resource_version = str(100 + _counter)
    md.creation_timestamp = ts(created if created is not None else NOW - 1000 + _counter)
    for k, v in job.spec.template.metadata.labels.items():
        md.labels[k] = v
    if owned:
        md.owner_references.append(meta.owner_ref_for(job))
    if finalizer:
        md.finalizers.append(TRACKING_FINALIZER)
    if deleting:
        md.deletion_timestamp = ts(NOW - 1)
        md.deletion_grace_period_seconds = 30
    if index is not None:
        md.annotations[COMPLETION_INDEX_KEY] = str(index)
        md.labels[COMPLETION_INDEX_KEY] = str(index)
    if failure_count is not None:
        md.annotations[INDEX_FAILURE_COUNT_KEY] = str(failure_count)
    pod.spec.CopyFrom(job.spec.template.spec)
    pod.spec.node_name = node
    pod.status.phase = phase
    cs = pod.status.container_statuses.add()
    cs.name = "main"
    cs.restart_count = restarts
    if phase in ("Succeeded", "Failed"):
        t = cs.state.terminated
        t.exit_code = exit_code if exit_code is not None else (0 if phase == "Succeeded" else 1)
        t.finished_at = ts(finished_at if finished_at is not None else LONG_AGO)
        t.reason = "Completed" if phase == "Succeeded" else "Error"
    elif phase == "Running":
        cs.state.running.started_at = ts(NOW - 500)
    if ready:
        c = pod.status.conditions.add()
        c.type, c.status, c.last_transition_time = "Ready", "True", ts(NOW - 400)
    for ctype, cstatus in conditions:
        c = pod.status.conditions.add()
        c.type, c.status, c.last_transition_time = ctype, cstatus, ts(NOW - 10)
    return pod


def pods(job: batch_pb2.Job, n: int, phase: str, **kw: Any) -> list[core_pb2.Pod]:
    return [new_pod(job, phase, **kw) for _ in range(n)]


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: Any, etype: str, reason: str, message: str) -> None:
        self.events.append((etype, reason, message))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.events]


class FakeClient:
    """What the controller calls directly: status writes (recorded) and a job GET."""

    def __init__(self) -> None:
        self.status_updates: list[batch_pb2.Job] = []
        self.jobs: dict[str, batch_pb2.Job] = {}
        self.status_error: errors.StatusError | None = None

    async def update_status(self, job: batch_pb2.Job) -> batch_pb2.Job:
        if self.status_error is not None:
            raise self.status_error
        out = copy_of(job)
        out.metadata.resource_version = str(int(job.metadata.resource_version or "0") + 1)
        self.status_updates.append(copy_of(out))
        return out  # type: ignore[no-any-return]

    async def get(self, kind: str, name: str, namespace: str = "") -> Any:
        job = self.jobs.get(f"{namespace}/{name}")
        if job is None:
            raise errors.NotFound(f'jobs.batch "{name}" not found')
        return job


@dataclass
class Harness:
    controller: JobController
    pod_control: FakePodControl
    client: FakeClient
    recorder: FakeRecorder
    clock: FakeClock
    added: list[Any] = field(default_factory=list)
    _applied: int = 0

    @property
    def key(self) -> str:
        return "default/foobar"

    def add(self, *objs: Any) -> None:
        for obj in objs:
            if isinstance(obj, batch_pb2.Job):
                self.controller.jobs.store.upsert(obj)
                self.client.jobs[meta.key_of(obj)] = obj
            else:
                self.controller.pods.store.upsert(obj)

    def catch_up(self) -> None:
        """The caches observe our own writes: released pods lose the finalizer (through the
        update handler), and the Job in the cache becomes the last status written."""
        by_name = {p.metadata.name: p for p in self.controller.pods.list()}
        for name in self.pod_control.finalizers_removed[self._applied:]:
            old = by_name.get(name)
            if old is None or TRACKING_FINALIZER not in old.metadata.finalizers:
                continue
            new = copy_of(old)
            new.metadata.finalizers.remove(TRACKING_FINALIZER)
            new.metadata.resource_version = str(int(old.metadata.resource_version) + 10_000)
            self.controller.pods.store.upsert(new)
            self.controller.update_pod(old, new)
        self._applied = len(self.pod_control.finalizers_removed)
        if self.client.status_updates:
            self.add(self.client.status_updates[-1])

    async def sync_again(self) -> None:
        self.catch_up()
        self.controller.expectations.delete(self.key)
        await self.controller.sync_job(self.key)

    @property
    def status(self) -> batch_pb2.JobStatus:
        """The last status written."""
        assert self.client.status_updates, "no status was written"
        return self.client.status_updates[-1].status


def harness(pod_control: FakePodControl | None = None, backoff_base: float = 10.0,
            backoff_max: float = 360.0, now: float = NOW) -> Harness:
    client = FakeClient()
    clock = FakeClock(now)
    recorder = FakeRecorder()
    ctx = ControllerContext(client=client, informers=InformerFactory(client),  # type: ignore[arg-type]
                            options=ControllerOptions(job=JobOptions(backoff_base, backoff_max)),
                            clock=clock, recorders={"job-controller": recorder})  # type: ignore[dict-item]
    pc = pod_control or FakePodControl()
    return Harness(JobController(ctx, pod_control=pc), pc, client, recorder, clock)


def conditions(status: batch_pb2.JobStatus) -> list[tuple[str, str, str]]:
    return [(c.type, c.status, c.reason) for c in status.conditions]
