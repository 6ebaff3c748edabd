"""When the watch hub gives up on a watcher: its backlog bounds count once its writer has not taken
its queue for backlog_grace, so one commit bigger than max_events (a big Job's creates and binds
together) does not drop a watcher that keeps up, while one that stopped taking is still dropped;
a writer that waits for events is not behind however long it has waited."""

from __future__ import annotations

import asyncio

from controlplane.apiserver.watch import Filter, Watcher, WatchHub, WatchLimits
from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.backend import MemoryBackend
from ketch.api.selectors import parse_label_selector
from ketch.v1 import core_pb2

REGISTRY = Registry()
LIMITS = WatchLimits(max_events=20, max_bytes=0, max_stall=0, backlog_grace=1.0)


def _pod(name: str) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.spec.containers.add(name="c", command=["true"])
    return pod


async def _burst(store: Store, first: int, n: int) -> None:
    """n pods in one commit: one publish of n events."""
    staged = [store.stage("Pod", f"default/p-{i}", _pod(f"p-{i}"), create=True) for i in range(first, first + n)]
    await store.commit(staged)


async def _hub() -> tuple[Store, WatchHub, list[float]]:
    now = [100.0]
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    return store, WatchHub(store, clock=lambda: now[0]), now


def _watch(hub: WatchHub) -> Watcher:
    return hub.watch("Pod", Filter("default", parse_label_selector(""), ()), None, LIMITS)


async def test_a_burst_bigger_than_max_events_reaches_a_waiting_writer() -> None:
    store, hub, now = await _hub()
    w = _watch(hub)
    assert await w.next_batch(0) is None  # nothing to take (an empty listing)
    waiting = asyncio.create_task(w.next_batch(None))
    await asyncio.sleep(0)
    now[0] += 30.0  # it has waited long: waiting is not being behind
    await _burst(store, 0, 100)
    got = await waiting
    assert got is not None and len(got) == 100 and not w.closed
    await store.stop()


async def test_a_writer_that_stopped_taking_is_dropped_after_the_grace() -> None:
    store, hub, now = await _hub()
    w = _watch(hub)
    assert await w.next_batch(0) is None
    await _burst(store, 0, 100)  # the writer is busy (not waiting): within the grace, kept
    assert not w.closed
    now[0] += 0.5
    await _burst(store, 100, 10)
    assert not w.closed
    now[0] += 0.6  # 1.1 s since it took any, 110 events waiting
    await _burst(store, 110, 1)
    assert w.closed and not w.items  # dropped, and what it held let go
    await store.stop()


async def test_a_writer_that_takes_its_queue_in_time_is_kept_through_many_bursts() -> None:
    store, hub, now = await _hub()
    w = _watch(hub)
    assert await w.next_batch(0) is None
    for round_ in range(5):
        await _burst(store, round_ * 100, 100)
        now[0] += 0.9
        got = await w.next_batch(0)
        assert got is not None and len(got) == 100
    assert not w.closed
    await store.stop()
