"""A Job's sync batching period grows with the pods its sync walks: a sync of a Job of thousands
of running pods holds the event loop for a tenth of a second or more, so such a Job must not sync
every 20 ms (the API server's clients wait meanwhile); a small Job keeps the short period."""

from __future__ import annotations

import pytest

from controlplane.controllers.job.controller import MAX_SYNC_BATCH_PERIOD

from .builders import harness, new_job, pods


async def _period_after_sync(n: int) -> float:
    h = harness()
    job = new_job(parallelism=n, completions=n)
    h.add(job, *pods(job, n, "Running"))
    await h.controller.sync(h.key)
    h.controller.enqueue_batched(job)  # a pod event right after the sync
    at = h.controller.queue._delayed[h.key][0]  # when the next sync may start
    h.controller.queue.shutdown()
    return at - h.controller._last_sync[h.key]


async def test_a_small_job_keeps_the_short_period() -> None:
    period = await _period_after_sync(10)
    assert period == pytest.approx(harness().controller.sync_batch_period, abs=1e-3)


async def test_a_job_of_thousands_of_pods_syncs_less_often() -> None:
    assert await _period_after_sync(3000) == pytest.approx(0.3, abs=1e-3)


def test_the_period_is_kubernetes_one_second_at_most_and_never_below_the_option() -> None:
    c = harness().controller
    assert c.period_for(0) == c.sync_batch_period
    assert c.period_for(50_000) == MAX_SYNC_BATCH_PERIOD
    c.sync_batch_period = 2.0
    assert c.period_for(50_000) == 2.0

