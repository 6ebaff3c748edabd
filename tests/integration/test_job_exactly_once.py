"""Exactly-once counting when the Job controller dies at any point: it is cancelled (its RPCs
in flight with it) again and again while a Job runs, and a fresh controller with empty
memory takes over each time. Every pod that finished is counted once: status.succeeded equals
the number of Succeeded pods, and no pod keeps the tracking finalizer."""

from __future__ import annotations

import asyncio
import random

from controlplane.apiserver.testing import TestAPIServer
from tests.conftest import eventually

from .cp_helpers import running
from .test_job_controller import FAST, TRACKING, FakeAgent, JobController, job_manifest, job_pods


async def test_counts_survive_controller_crashes(api: TestAPIServer) -> None:
    client = api.client
    rng = random.Random(4)
    completions = 60
    agent = FakeAgent(client, lambda pod: 0 if rng.random() < 0.8 else 1)
    await agent.start()
    try:
        await client.create(job_manifest("crashy", completions=completions, parallelism=8, backoffLimit=1000))
        for _ in range(12):
            async with running(client, JobController, options=FAST):
                await asyncio.sleep(rng.uniform(0.05, 0.4))  # then killed mid-flight
        async with running(client, JobController, options=FAST):
            async def complete() -> bool:
                job = await client.get("Job", "crashy", "default")
                return any(c.type == "Complete" and c.status == "True" for c in job.status.conditions)

            await eventually(complete, timeout=60, what="the job to complete")
    finally:
        await agent.stop()
    job = await client.get("Job", "crashy", "default")
    pods = await job_pods(client, "crashy")
    succeeded = sum(1 for p in pods if p.status.phase == "Succeeded")
    failed = sum(1 for p in pods if p.status.phase == "Failed")
    assert job.status.succeeded == succeeded
    assert job.status.failed == failed
    assert succeeded >= completions
    assert not any(TRACKING in p.metadata.finalizers for p in pods)
    assert not job.status.uncounted_terminated_pods.succeeded and not job.status.uncounted_terminated_pods.failed
