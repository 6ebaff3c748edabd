"""The event recorder under churn: what it remembers per involved object stays bounded.

Before, both caches were pruned only of entries older than five or ten minutes; with more than
4,096 objects inside that time (a few thousand short-lived pods) every new event rebuilt them
whole, so the scheduler's create+delete throughput fell by two thirds within three minutes and
its memory grew with every pod.
"""

from __future__ import annotations

from controlplane.apiserver.testing import TestAPIServer
from ketch.client.events import MAX_REMEMBERED, EventRecorder, SpamFilter
from ketch.v1 import core_pb2


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
