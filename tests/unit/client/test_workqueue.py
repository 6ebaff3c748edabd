from __future__ import annotations

import asyncio
import sys

from ketch.client.workqueue import ItemExponentialFailureRateLimiter, WorkQueue


async def test_items_are_deduplicated_and_fifo() -> None:
    q: WorkQueue[str] = WorkQueue()
    for k in ["a", "b", "a", "c", "b"]:
        q.add(k)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_item_added_while_processing_is_requeued_after_done_never_concurrently() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    item = await q.get()
    q.add("a")
    assert len(q) == 0, "not handed out twice while processing"
    q.done(item)
    assert len(q) == 1 and await q.get() == "a"


async def test_add_after_keeps_the_earliest_time() -> None:
    q: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_after("a", 5)
    q.add_after("a", 0.05)
    item = await asyncio.wait_for(q.get(), 2)
    assert item == "a" and loop.time() - start < 1


async def test_rate_limited_backoff_grows_and_forget_resets() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000)
    assert [limiter.when("x") for _ in range(4)] == [0.005, 0.01, 0.02, 0.04]
    assert limiter.num_requeues("x") == 4
    limiter.forget("x")
    assert limiter.when("x") == 0.005
    capped = ItemExponentialFailureRateLimiter(1, 3)
    assert [capped.when("y") for _ in range(4)] == [1, 2, 3, 3]


async def test_shutdown_releases_waiting_workers() -> None:
    q: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    assert await asyncio.wait_for(waiter, 1) is None


async def test_a_drained_queue_gives_back_what_a_burst_grew() -> None:
    """Python's sets keep the table they grew to: after a burst of 10,000 keys (a big Job's
    pods) a drained queue held ~1 MB of empty tables until the next burst."""
    q: WorkQueue[str] = WorkQueue()
    small = sys.getsizeof(q._dirty)
    for i in range(10_000):
        q.add(f"scale/pod-{i}")
    taken = [await q.get() for _ in range(10_000)]
    assert sys.getsizeof(q._dirty) == small and len(q._processing) == 10_000
    for item in taken:
        q.done(item)
    assert sys.getsizeof(q._processing) == small
    q.add("scale/again")  # still a queue
    assert await q.get() == "scale/again"
