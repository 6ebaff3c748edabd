"""TTL-after-finished against a real API server: a finished Job goes (with its pods) after its TTL,
and a TTL changed after the Job finished is honoured."""

from __future__ import annotations

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.garbagecollector import GarbageCollector
from controlplane.controllers.ttlafterfinished import TTLAfterFinishedController
from tests.conftest import eventually

from .cp_helpers import exists, finish_job, job, pod, running


async def test_finished_job_is_deleted_with_its_pods_after_its_ttl(api: TestAPIServer) -> None:
    client = api.client
    async with running(client, TTLAfterFinishedController, GarbageCollector):
        j = await client.create(job("short", ttl=1))
        await client.create(pod("short-0", owner=j))
        kept = await client.create(job("unfinished", ttl=1))
        await finish_job(client, j)
        assert await exists(client, "Job", "short", "default")

        async def gone():
            return not await exists(client, "Job", "short", "default")

        await eventually(gone, timeout=10, what="the job to be deleted after its TTL")
        assert not await exists(client, "Pod", "short-0", "default")
        assert await exists(client, "Job", kept.metadata.name, "default")


async def test_ttl_changed_after_finishing_applies(api: TestAPIServer) -> None:
    client = api.local
    async with running(client, TTLAfterFinishedController, GarbageCollector):
        j = await client.create(job("long", ttl=3600))
        await finish_job(client, j, condition="Failed")
        j = await client.get("Job", "long", "default")
        j.spec.ttl_seconds_after_finished = 1
        await client.update(j)

        async def gone():
            return not await exists(client, "Job", "long", "default")

        await eventually(gone, timeout=10, what="the job to go with its shortened TTL")
