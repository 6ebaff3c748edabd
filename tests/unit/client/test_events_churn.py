"""The event recorder under churn: what it remembers per involved object stays bounded.

Before, both caches were pruned only of entries older than five or ten minutes; with more than
4,096 objects inside that time (a few thousand short-lived pods) every new event rebuilt them
whole, so the scheduler's create+delete throughput fell by two thirds within three minutes and
its memory grew with every pod.
"""

from __future__ import annotations

import gc
import sys

from controlplane.apiserver.testing import TestAPIServer
from ketch.client.events import MAX_REMEMBERED, EventRecorder, SpamFilter
from ketch.v1 import core_pb2
from tests.conftest import eventually


def _pod(i: int) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = f"p-{i}", "default", f"uid-{i}"
    return pod


def test_spam_filter_remembers_at_most_max_keys_least_recently_used_out() -> None:
    now = [0.0]
    spam = SpamFilter(lambda: now[0])
    for i in range(3 * MAX_REMEMBERED):
        assert spam.allow(f"pod-{i}")
        now[0] += 0.001  # all well inside the five-minute refill time
    assert len(spam._buckets) == MAX_REMEMBERED
    # A key used recently keeps its (spent) budget; the oldest ones were let go.
    assert all(spam.allow("busy") for _ in range(25))
    for i in range(MAX_REMEMBERED - 1):
        spam.allow(f"again-{i}")
    assert not spam.allow("busy")


async def test_recorder_remembers_at_most_max_written_events_under_churn() -> None:
    async with TestAPIServer(grpc=False) as api:
        assert api.local is not None
        rec = EventRecorder(api.local, "default-scheduler")
        n = MAX_REMEMBERED + 1500
        for first in range(0, n, 500):
            for i in range(first, min(n, first + 500)):
                rec.event(_pod(i), "Warning", "FailedScheduling", "no nodes available to schedule pods")
            await rec.flush()
        events, _ = await api.local.list("Event", "default")
        assert len(events) == n  # nothing dropped: every pod got its event
        assert len(rec._written) <= MAX_REMEMBERED
        assert len(rec.spam._buckets) <= MAX_REMEMBERED
        # The most recent objects still aggregate their repeats into one Event.
        rec.event(_pod(n - 1), "Warning", "FailedScheduling", "no nodes available to schedule pods")
        await rec.flush()
        again, _ = await api.local.list("Event", "default")
        assert len(again) == n
        assert max(e.count for e in again) == 2
        await rec.close()


async def test_what_is_remembered_about_a_deleted_object_is_dropped_in_one_sweep() -> None:
    """A big Job's pods leave thousands of entries; once they are deleted they can never be used
    again, and held (small objects among the pods' freed ones) they kept the heap from shrinking."""
    async with TestAPIServer(grpc=False) as api:
        assert api.local is not None
        rec = EventRecorder(api.local, "default-scheduler")
        job = _pod(-1)
        for i in range(20):  # within the owner's burst of 25
            rec.event(_pod(i), "Normal", "Scheduled", f"Successfully assigned default/p-{i} to n1")
            rec.event(job, "Normal", "SuccessfulCreate", f"Created pod: p-{i}", spam_key="uid--1/pods")
        await rec.flush()
        assert len(rec._written) == 40 and len(rec.spam) == 21
        for i in range(15):
            rec.forget(f"uid-{i}")
        assert len(rec._written) == 40  # not yet: one sweep for the burst, a moment later
        await eventually(lambda: len(rec._written) == 25, what="the sweep")
        assert {k[0] for k in rec._written} == {"uid--1"} | {f"uid-{i}" for i in range(15, 20)}
        assert sorted(rec.spam._buckets) == sorted(["uid--1/pods", *(f"uid-{i}" for i in range(15, 20))])
        rec.forget("uid--1")  # the owner: its own events and its pods' budget
        await eventually(lambda: len(rec._written) == 5, what="the owner's sweep")
        assert "uid--1/pods" not in rec.spam._buckets
        # A survivor still aggregates its repeat into its one Event.
        rec.event(_pod(17), "Normal", "Scheduled", "Successfully assigned default/p-17 to n1")
        await rec.flush()
        events, _ = await api.local.list("Event", "default")
        assert len(events) == 40 and max(e.count for e in events) == 2
        await rec.close()



async def test_a_remembered_event_is_its_name_and_count_not_the_event() -> None:
    """Thousands are remembered (one per pod of a big Job): each was the whole serialized Event,
    ~450 bytes; a repeat needs only the name and count to patch."""
    async with TestAPIServer(grpc=False) as api:
        assert api.local is not None
        rec = EventRecorder(api.local, "default-scheduler")
        for i in range(100):
            rec.event(_pod(i), "Normal", "Scheduled", f"Successfully assigned default/p-{i} to node-{i}")
        await rec.flush()
        sizes = [sys.getsizeof(w) + sum(sys.getsizeof(getattr(w, f)) for f in w.__slots__)
                 for w in rec._written.values()]
        assert len(sizes) == 100 and max(sizes) <= 160
        # Its repeat is patched onto the Event that name and count point at.
        rec.event(_pod(7), "Normal", "Scheduled", "Successfully assigned default/p-7 to node-7")
        await rec.flush()
        events, _ = await api.local.list("Event", "default")
        again = [e for e in events if e.count == 2]
        assert len(again) == 1 and again[0].involved_object.uid == "uid-7"
        assert again[0].last_timestamp >= again[0].first_timestamp
        await rec.close()


async def test_recorder_keeps_no_written_event_once_its_batch_is_sent() -> None:
    """The recorder's loop lets a batch's messages go once they are written: after a burst, its
    task held the last batch (hundreds of Events) until the next event came."""
    async with TestAPIServer(grpc=False) as api:
        assert api.local is not None
        rec = EventRecorder(api.local, "default-scheduler")
        for i in range(300):
            rec.event(_pod(i), "Normal", "Scheduled", f"Successfully assigned default/p-{i} to n1")

        async def written() -> bool:
            events, _ = await api.local.list("Event", "default")
            return len(events) == 300
        await eventually(written, what="the burst written")

        def holds_events() -> bool:
            assert rec._task is not None and not rec._task.done()
            return any(isinstance(o, list) and o and isinstance(o[0], core_pb2.Event)
                       for o in gc.get_referents(rec._task.get_coro()))
        await eventually(lambda: not holds_events(), what="the recorder's loop to hold no Event")
        await rec.close()
