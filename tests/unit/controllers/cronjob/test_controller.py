"""One CronJob sync against an in-memory API server and a fake clock: what it creates, deletes,
records and writes, and when it looks again. Table-driven; times are offsets from T0 (a whole
minute)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.base import ControllerContext
from controlplane.controllers.cronjob import schedule as S
from controlplane.controllers.cronjob.controller import CronJobController
from ketch.api import errors, manifest, meta, timeutil
from ketch.client.informer import InformerFactory
from ketch.testing.fake_clock import FakeClock
from ketch.v1 import batch_pb2
from tests.conftest import eventually

T0 = 1_699_999_200.0  # 2023-11-14T22:00:00Z, a whole hour
NS = "default"
CJ = "hello"


@dataclass(frozen=True)
class Child:
    at: float                    # the scheduled time (offset) it was made for
    state: str = "running"       # running | Complete | Failed | gone
    in_active: bool = True
    manual: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    # setup: the CronJob
    schedule: str = "*/1 * * * *"
    policy: str = ""
    suspend: bool = False
    deadline: int | None = None
    successful_limit: int | None = None
    failed_limit: int | None = None
    created: float = -7200.0
    last_schedule: float | None = None
    # setup: its Jobs, and the time of the sync
    children: tuple[Child, ...] = ()
    now: float = 0.01
    # expectations
    created_for: float | None = None
    deleted: tuple[float, ...] = ()
    active: tuple[float, ...] = ()
    last_schedule_after: float | None = None
    events: tuple[str, ...] = ()
    requeue_in: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


SECONDLY = "*/1 * * * * *"

CASES = [
    Case("the time that just came runs", last_schedule=-60, created_for=0, active=(0,), last_schedule_after=0,
         events=("SuccessfulCreate",), requeue_in=60),
    Case("nothing is due before the next time", last_schedule=0, now=30, last_schedule_after=0, requeue_in=30),
    Case("a new CronJob waits for its first time", created=-20, now=0 - 10, requeue_in=10),
    Case("of many missed times only the most recent runs", last_schedule=-600, now=0.5, created_for=0,
         active=(0,), last_schedule_after=0, events=("SuccessfulCreate",), requeue_in=59.5),
    Case("more than 100 missed warns and still runs the latest", schedule=SECONDLY, last_schedule=-500, now=0.2,
         created_for=0, active=(0,), last_schedule_after=0, events=("TooManyMissedTimes", "SuccessfulCreate"),
         requeue_in=0.8),
    Case("a time older than the deadline does not run", schedule="*/5 * * * *", last_schedule=-600, now=200,
         deadline=100, last_schedule_after=-600, events=("MissSchedule",), requeue_in=100),
    Case("a late time within the deadline runs", schedule="*/5 * * * *", last_schedule=-600, now=200,
         deadline=250, created_for=0, active=(0,), last_schedule_after=0, events=("SuccessfulCreate",),
         requeue_in=100),
    Case("Allow runs next to an active Job", last_schedule=-60, children=(Child(-60),), created_for=0,
         active=(-60, 0), last_schedule_after=0, events=("SuccessfulCreate",), requeue_in=60),
    Case("Forbid skips while a Job is active", policy="Forbid", last_schedule=-60, children=(Child(-60),),
         active=(-60,), last_schedule_after=-60, events=("JobAlreadyActive",), requeue_in=60),
    Case("Forbid runs once the active Job has finished", policy="Forbid", last_schedule=-60,
         children=(Child(-60, "Complete"),), created_for=0, active=(0,), last_schedule_after=0,
         events=("SawCompletedJob", "SuccessfulCreate"), requeue_in=60),
    Case("Replace deletes the active Job and starts the new one", policy="Replace", last_schedule=-60,
         children=(Child(-60),), created_for=0, deleted=(-60,), active=(0,), last_schedule_after=0,
         events=("SuccessfulDelete", "SuccessfulCreate"), requeue_in=60),
    Case("suspended: no run and no requeue", suspend=True, last_schedule=-60, last_schedule_after=-60),
    Case("a suspended CronJob still trims its history", suspend=True, last_schedule=-60, successful_limit=0,
         children=(Child(-60, "Complete", False),), deleted=(-60,), last_schedule_after=-60,
         events=("SuccessfulDelete",)),
    Case("a Job made for the time but not recorded is adopted, not made again", last_schedule=-60,
         children=(Child(0, in_active=False),), active=(0,), last_schedule_after=0, requeue_in=60),
    Case("a manual Job is reported as unexpected and not tracked", last_schedule=0, now=30,
         children=(Child(0, manual=True, in_active=False),), last_schedule_after=0,
         events=("UnexpectedJob",), requeue_in=30),
    Case("an active Job that is gone leaves active", last_schedule=0, now=30, children=(Child(0, "gone"),),
         last_schedule_after=0, events=("MissingJob",), requeue_in=30),
    Case("history keeps the newest finished Jobs of each kind", last_schedule=-60, successful_limit=1,
         failed_limit=1,
         children=(Child(-300, "Failed", False), Child(-240, "Failed", False), Child(-180, "Complete", False),
                   Child(-120, "Complete", False), Child(-60, "Complete", False)),
         created_for=0, deleted=(-300, -180, -120), active=(0,), last_schedule_after=0,
         events=("SuccessfulCreate", "SuccessfulDelete", "SuccessfulDelete", "SuccessfulDelete"), requeue_in=60),
    Case("a second schedule names its Job by seconds", schedule=SECONDLY, last_schedule=-1, now=0.004,
         created_for=0, active=(0,), last_schedule_after=0, events=("SuccessfulCreate",), requeue_in=0.996),
]


def _name(at: float, case: Case, manual: bool = False) -> str:
    if manual:
        return f"{CJ}-manual-{int(at)}"
    return S.job_name(CJ, T0 + at, by_seconds=case.schedule == SECONDLY)


def _cronjob(case: Case) -> batch_pb2.CronJob:
    spec: dict[str, Any] = {
        "schedule": case.schedule,
        "jobTemplate": {
            "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}},
        },
    }
    if case.policy:
        spec["concurrencyPolicy"] = case.policy
    if case.suspend:
        spec["suspend"] = True
    if case.deadline is not None:
        spec["startingDeadlineSeconds"] = case.deadline
    if case.successful_limit is not None:
        spec["successfulJobsHistoryLimit"] = case.successful_limit
    if case.failed_limit is not None:
        spec["failedJobsHistoryLimit"] = case.failed_limit
    return manifest.from_dict({"apiVersion": "batch/v1", "kind": "CronJob",
                               "metadata": {"name": CJ, "namespace": NS}, "spec": spec})  # type: ignore[return-value]


async def _make_child(client: Any, cj: batch_pb2.CronJob, child: Child, case: Case) -> batch_pb2.Job:
    from controlplane.controllers.cronjob.controller import job_from_template

    job = job_from_template(cj, T0 + child.at, by_seconds=case.schedule == SECONDLY)
    if child.manual:
        job.metadata.name = _name(child.at, case, manual=True)
        del job.metadata.annotations[S.SCHEDULED_TIMESTAMP_ANNOTATION]
    created = await client.create(job)
    if child.state in ("Complete", "Failed"):
        stamp = timeutil.format(T0 + child.at + 1)
        created.status.start_time = timeutil.format(T0 + child.at)
        interim = "SuccessCriteriaMet" if child.state == "Complete" else "FailureTarget"
        for ctype in (interim, child.state):
            c = created.status.conditions.add()
            c.type, c.status, c.last_transition_time = ctype, "True", stamp
        if child.state == "Complete":
            created.status.completion_time = stamp
            created.status.succeeded = 1
        else:
            created.status.failed = 1
        created = await client.update_status(created)
    return created


@pytest.fixture
async def world() -> AsyncIterator[tuple[TestAPIServer, FakeClock]]:
    clock = FakeClock(T0)
    async with TestAPIServer(grpc=False, clock=clock.now) as api:
        yield api, clock


async def _setup(api: TestAPIServer, clock: FakeClock, case: Case) -> CronJobController:
    client = api.local
    assert client is not None
    clock.set(T0 + case.created)
    cj = await client.create(_cronjob(case))
    jobs = [await _make_child(client, cj, c, case) for c in case.children]
    active = [meta.object_ref(j) for j, c in zip(jobs, case.children, strict=True) if c.in_active]
    if case.last_schedule is not None or active:
        if case.last_schedule is not None:
            cj.status.last_schedule_time = timeutil.format(T0 + case.last_schedule)
        cj.status.active.extend(active)
        await client.update_status(cj)
    for j, c in zip(jobs, case.children, strict=True):
        if c.state == "gone":
            await client.delete("Job", j.metadata.name, NS, propagation_policy="Background")
    clock.set(T0 + case.now)
    informers = InformerFactory(client)
    controller = CronJobController(ControllerContext(client=client, informers=informers, clock=clock))
    informers.start()
    assert await informers.wait_for_sync(5)
    return controller


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_sync(world: tuple[TestAPIServer, FakeClock], case: Case) -> None:
    api, clock = world
    client = api.local
    assert client is not None
    controller = await _setup(api, clock, case)
    before = {j.metadata.name for j in (await client.list("Job", NS))[0]}
    try:
        await controller.sync(f"{NS}/{CJ}")
        await controller.recorder.flush()
        after = {j.metadata.name for j in (await client.list("Job", NS))[0]}
        expected_new = {_name(case.created_for, case)} if case.created_for is not None else set()
        assert after - before == expected_new
        assert before - after == {_name(a, case) for a in case.deleted}
        cj = await client.get("CronJob", CJ, NS)
        assert sorted(r.name for r in cj.status.active) == sorted(_name(a, case) for a in case.active)
        expected_last = timeutil.format(T0 + case.last_schedule_after) if case.last_schedule_after is not None else ""
        assert cj.status.last_schedule_time == expected_last
        events = sorted(e.reason for e in (await client.list("Event", NS))[0]
                        if e.involved_object.kind == "CronJob")
        assert events == sorted(case.events)
        waiting = controller.queue._delayed.get(f"{NS}/{CJ}")
        if case.requeue_in is None:
            assert waiting is None
        else:
            assert waiting is not None
            delay = waiting[0] - asyncio.get_running_loop().time()
            assert delay == pytest.approx(case.requeue_in + S.NEXT_SCHEDULE_DELTA, abs=0.05)
    finally:
        controller.queue.shutdown()
        await controller.ctx.informers.stop()


async def test_the_job_carries_template_metadata_owner_and_scheduled_time(
        world: tuple[TestAPIServer, FakeClock]) -> None:
    api, clock = world
    client = api.local
    assert client is not None
    case = Case("tz", last_schedule=-60)
    controller = await _setup(api, clock, case)
    try:
        cj = await client.get("CronJob", CJ, NS)
        cj.spec.time_zone = "Asia/Tokyo"
        await client.update(cj)
        # sync reads the informer's cache: wait until it holds the update (a bare sleep raced it).
        await eventually(lambda: controller.cronjobs.get(NS, CJ).spec.time_zone == "Asia/Tokyo",
                         what="the cache to see the new time zone")
        await controller.sync(f"{NS}/{CJ}")
        job = await client.get("Job", _name(0, case), NS)
        assert job.metadata.labels["team"] == "a"
        assert job.metadata.annotations["note"] == "x"
        assert job.metadata.annotations[S.SCHEDULED_TIMESTAMP_ANNOTATION] == "2023-11-15T07:00:00+09:00"
        ref = meta.controller_ref(job)
        assert ref is not None and (ref.kind, ref.name, ref.uid) == ("CronJob", CJ, cj.metadata.uid)
        assert ref.block_owner_deletion
        assert job.spec.template.spec.containers[0].command == ["true"]
    finally:
        controller.queue.shutdown()
        await controller.ctx.informers.stop()


async def test_a_second_sync_for_the_same_time_creates_nothing(world: tuple[TestAPIServer, FakeClock]) -> None:
    """Even when the cache has not seen the first sync's writes yet."""
    api, clock = world
    client = api.local
    assert client is not None
    case = Case("twice", schedule=SECONDLY, last_schedule=-1)
    controller = await _setup(api, clock, case)
    try:
        await controller.sync(f"{NS}/{CJ}")
        await controller.sync(f"{NS}/{CJ}")  # no await in between: the informer has not caught up
        await asyncio.sleep(0.05)
        await controller.sync(f"{NS}/{CJ}")
        jobs = (await client.list("Job", NS))[0]
        assert [j.metadata.name for j in jobs] == [_name(0, case)]
        # A controller that lost its memory (a restart) does not make it again either.
        fresh = CronJobController(ControllerContext(client=client, informers=controller.ctx.informers, clock=clock))
        await fresh.sync(f"{NS}/{CJ}")
        assert len((await client.list("Job", NS))[0]) == 1
    finally:
        controller.queue.shutdown()
        await controller.ctx.informers.stop()


async def test_a_deleted_cronjob_is_forgotten(world: tuple[TestAPIServer, FakeClock]) -> None:
    api, clock = world
    client = api.local
    assert client is not None
    controller = await _setup(api, clock, Case("gone", last_schedule=-60))
    try:
        await client.delete("CronJob", CJ, NS)
        await eventually(lambda: controller.cronjobs.get(NS, CJ) is None, what="the cache to drop the CronJob")
        await controller.sync(f"{NS}/{CJ}")
        assert (await client.list("Job", NS))[0] == []
        assert controller.queue._delayed.get(f"{NS}/{CJ}") is None
        with pytest.raises(errors.NotFound):
            await client.get("CronJob", CJ, NS)
    finally:
        controller.queue.shutdown()
        await controller.ctx.informers.stop()
