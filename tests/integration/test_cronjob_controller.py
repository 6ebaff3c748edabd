"""The CronJob controller against a real API server over gRPC, on the real clock, with second
schedules. No Job controller runs here: a test finishes a Job by writing its status."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.cronjob import schedule as S
from controlplane.controllers.cronjob.controller import CronJobController
from ketch.api import manifest, timeutil
from ketch.client.clientset import Client
from tests.conftest import eventually
from tests.integration.cp_helpers import running

NS = "default"


def cronjob(name: str, schedule: str = "*/1 * * * * *", **spec: Any) -> Any:
    doc = {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"app": name}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "c", "image": "busybox", "command": ["true"]}]}}},
            },
            **spec,
        },
    }
    return manifest.from_dict(doc)


async def jobs_of(client: Client, cj: str) -> list[Any]:
    items, _ = await client.list("Job", NS, label_selector=f"app={cj}")
    return sorted(items, key=lambda j: j.metadata.name)


async def finish(client: Client, job: Any, ctype: str = "Complete") -> None:
    """Mark a Job finished, as the Job controller would."""
    job = await client.get("Job", job.metadata.name, NS)
    now = timeutil.now()
    job.status.start_time = job.status.start_time or job.metadata.creation_timestamp
    for t in ("SuccessCriteriaMet" if ctype == "Complete" else "FailureTarget", ctype):
        c = job.status.conditions.add()
        c.type, c.status, c.last_transition_time = t, "True", now
    if ctype == "Complete":
        job.status.completion_time = now
        job.status.succeeded = 1
    else:
        job.status.failed = 1
    await client.update_status(job)


async def events(client: Client, reason: str) -> list[Any]:
    items, _ = await client.list("Event", NS)
    return [e for e in items if e.reason == reason and e.involved_object.kind == "CronJob"]


@pytest.fixture
async def client(api: TestAPIServer) -> AsyncIterator[Client]:
    assert api.client is not None
    async with running(api.client, CronJobController):
        yield api.client


async def test_second_schedule_runs_every_second_on_time(client: Client) -> None:
    seen: dict[str, float] = {}

    async def watch() -> None:
        async for ev in client.watch("Job", NS):
            if ev.type == "ADDED" and ev.object is not None:
                seen.setdefault(ev.object.metadata.name, time.time())

    watcher = asyncio.create_task(watch())
    try:
        await client.create(cronjob("tick"))
        await eventually(lambda: len(seen) >= 4, timeout=15, what="four runs")
    finally:
        watcher.cancel()
    jobs = await jobs_of(client, "tick")
    lateness = []
    for job in jobs:
        scheduled = S.scheduled_time_of(job)
        assert scheduled is not None and scheduled == int(scheduled)
        assert job.metadata.name == f"tick-{int(scheduled)}"
        ref = job.metadata.owner_references[0]
        assert (ref.kind, ref.name, ref.controller) == ("CronJob", "tick", True)
        if job.metadata.name in seen:
            lateness.append(seen[job.metadata.name] - scheduled)
    scheduled_times = sorted(S.scheduled_time_of(j) or 0 for j in jobs)
    assert all(b - a == 1 for a, b in itertools.pairwise(scheduled_times))
    assert lateness and max(lateness) < 1.0, lateness
    cj = await client.get("CronJob", "tick", NS)
    assert cj.status.last_schedule_time
    assert {r.name for r in cj.status.active} >= {j.metadata.name for j in jobs[:-1]}
    assert await events(client, "SuccessfulCreate")


async def test_forbid_never_runs_two_and_resumes_when_the_job_ends(client: Client) -> None:
    await client.create(cronjob("solo", concurrencyPolicy="Forbid"))
    first = (await eventually(lambda: jobs_of(client, "solo"), timeout=10, what="the first run"))[0]
    await eventually(lambda: events(client, "JobAlreadyActive"), timeout=10, what="JobAlreadyActive")
    assert [j.metadata.name for j in await jobs_of(client, "solo")] == [first.metadata.name]
    await finish(client, first)
    jobs = await eventually(lambda: _at_least(client, "solo", 2), timeout=10, what="the next run")
    assert jobs[1].metadata.creation_timestamp >= first.metadata.creation_timestamp
    cj = await client.get("CronJob", "solo", NS)
    assert len(cj.status.active) <= 1


async def _at_least(client: Client, cj: str, n: int) -> list[Any]:
    jobs = await jobs_of(client, cj)
    return jobs if len(jobs) >= n else []


async def test_replace_deletes_the_running_job_and_starts_a_new_one(client: Client) -> None:
    await client.create(cronjob("swap", concurrencyPolicy="Replace"))
    first = (await eventually(lambda: jobs_of(client, "swap"), timeout=10, what="the first run"))[0]

    async def replaced() -> bool:
        names = [j.metadata.name for j in await jobs_of(client, "swap")]
        return bool(names) and first.metadata.name not in names

    await eventually(replaced, timeout=10, what="the first run replaced")
    await eventually(lambda: events(client, "SuccessfulDelete"), timeout=5, what="SuccessfulDelete")

    async def one_active() -> bool:
        cj = await client.get("CronJob", "swap", NS)
        return len(cj.status.active) == 1 and cj.status.active[0].name != first.metadata.name

    await eventually(one_active, timeout=10, what="one active run, the new one")


async def test_suspend_stops_new_runs_and_resume_restarts_them(api: TestAPIServer) -> None:
    client = api.client
    assert client is not None
    async with running(client, CronJobController) as [controller]:
        assert isinstance(controller, CronJobController)
        await client.create(cronjob("nap"))
        await eventually(lambda: jobs_of(client, "nap"), timeout=10, what="a run")
        await client.patch("CronJob", "nap", {"spec": {"suspend": True}}, NS)

        # A run already in flight may land; once the controller's cache holds the suspend and no
        # sync of the key is under way (one begun earlier has finished), none can be.
        def settled() -> bool:
            cached = controller.cronjobs.get(NS, "nap")
            return cached is not None and cached.spec.suspend and f"{NS}/nap" not in controller.queue._processing

        await eventually(settled, timeout=10, what="the controller to see the suspend")
        count = len(await jobs_of(client, "nap"))
        await asyncio.sleep(2.5)  # two and a half schedule periods in which nothing may run
        assert len(await jobs_of(client, "nap")) == count
        await client.patch("CronJob", "nap", {"spec": {"suspend": False}}, NS)
        await eventually(lambda: _at_least(client, "nap", count + 1), timeout=10, what="a run after resume")


async def test_history_limits_keep_exactly_the_configured_number(client: Client) -> None:
    await client.create(cronjob("hist", successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1))
    finished: set[str] = set()
    n = 0

    async def finish_new() -> bool:
        nonlocal n
        for job in await jobs_of(client, "hist"):
            if job.metadata.name not in finished:
                finished.add(job.metadata.name)
                n += 1
                await finish(client, job, "Failed" if n % 3 == 0 else "Complete")
        return n >= 7

    await eventually(finish_new, timeout=20, what="seven finished runs")
    await client.patch("CronJob", "hist", {"spec": {"suspend": True}}, NS)

    async def exact() -> bool:
        jobs = [j for j in await jobs_of(client, "hist") if S.finished_condition(j)]
        kinds = sorted(S.finished_condition(j) or "" for j in jobs)
        return kinds == ["Complete", "Complete", "Failed"]

    # Runs that landed before the suspend are finished too, so the limits apply to all of them.
    async def settle() -> bool:
        await finish_new()
        return await exact()

    await eventually(settle, timeout=10, what="2 Complete and 1 Failed Job kept")


async def test_after_downtime_only_the_most_recent_missed_time_runs(api: TestAPIServer) -> None:
    client = api.client
    assert client is not None
    created = await client.create(cronjob("late", "*/1 * * * *"))
    now = time.time()
    created.status.last_schedule_time = timeutil.format(now - 3 * 3600)  # 180 missed minutes
    await client.update_status(created)
    async with running(client, CronJobController):
        jobs = await eventually(lambda: jobs_of(client, "late"), timeout=10, what="the catch-up run")
        await eventually(lambda: events(client, "TooManyMissedTimes"), timeout=5, what="TooManyMissedTimes")
        await asyncio.sleep(0.5)
        jobs = await jobs_of(client, "late")
    assert len(jobs) == 1
    latest_minute = int(time.time() // 60)
    assert jobs[0].metadata.name in (f"late-{latest_minute}", f"late-{latest_minute - 1}")


async def test_after_downtime_nothing_runs_past_the_starting_deadline(api: TestAPIServer) -> None:
    client = api.client
    assert client is not None
    # Yearly, last run two years ago: this year's time is months old, beyond a 60 s deadline.
    created = await client.create(cronjob("yearly", "@yearly", startingDeadlineSeconds=60))
    created.status.last_schedule_time = timeutil.format(time.time() - 2 * 366 * 86400)
    await client.update_status(created)
    created2 = await client.create(cronjob("yearly-nodeadline", "@yearly"))
    created2.status.last_schedule_time = timeutil.format(time.time() - 2 * 366 * 86400)
    await client.update_status(created2)
    async with running(client, CronJobController):
        await eventually(lambda: jobs_of(client, "yearly-nodeadline"), timeout=10, what="the catch-up run")
        await asyncio.sleep(0.5)
        assert await jobs_of(client, "yearly") == []
    cj = await client.get("CronJob", "yearly", NS)
    assert not cj.status.active


async def test_a_new_schedule_takes_effect_from_its_next_time(client: Client) -> None:
    await client.create(cronjob("moved", "@yearly"))
    await asyncio.sleep(0.5)
    assert await jobs_of(client, "moved") == []
    await client.patch("CronJob", "moved", {"spec": {"schedule": "*/1 * * * * *"}}, NS)
    jobs = await eventually(lambda: jobs_of(client, "moved"), timeout=5, what="a run on the new schedule")
    assert len(jobs) == 1
    assert (S.scheduled_time_of(jobs[0]) or 0) >= time.time() - 2
