"""Per-key back-off (client-go's flowcontrol.Backoff) as its two users rely on it: the agent's
crash-loop restarts (immediate first restart, 10 s doubling to the cap, counted from the finish
time, reset after 2x cap) and the DaemonSet controller's failed-pod back-off per node."""

from __future__ import annotations

import pytest

from ketch.client.flowcontrol import Backoff


def test_crash_loop_sequence_doubles_to_the_cap() -> None:
    b = Backoff(10, 300)
    now, delays = 0.0, []
    for _ in range(8):
        finished = now  # the run failed just now
        wait = b.remaining("k", finished, now)
        delays.append(wait)
        now += wait
        b.next("k", finished, now)
        now += 1  # ran one second, then failed again
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]


def test_remaining_counts_from_the_finish_time() -> None:
    b = Backoff(10, 300)
    b.next("k", 0.0, 0.0)
    assert b.remaining("k", since=100.0, now=104.0) == pytest.approx(6.0)
    assert b.remaining("k", since=100.0, now=111.0) == 0.0


def test_a_failure_twice_the_cap_after_the_last_starts_over() -> None:
    b = Backoff(10, 300)
    b.next("k", 0.0, 0.0)
    b.next("k", 20.0, 20.0)
    assert b.get("k") == 20
    # The next failure comes 10 min + 1 s after the last one: start over, restart at once.
    assert b.remaining("k", since=621.0, now=621.0) == 0.0
    assert b.next("k", 621.0, 621.0) == 10


def test_doubles_to_the_cap_and_resets_after_idle() -> None:
    b = Backoff(1.0, 8.0)
    t = 0.0
    delays = []
    for _ in range(6):
        b.next("k", t)
        delays.append(b.get("k"))
        t += 1
    assert delays == [1, 2, 4, 8, 8, 8]
    b.next("k", t + 17)
    assert b.get("k") == 1


def test_in_backoff_since_update_until_the_delay_passes() -> None:
    b = Backoff(2.0, 8.0)
    assert not b.in_backoff_since_update("k", 0.0)
    b.next("k", 10.0)
    assert b.in_backoff_since_update("k", 11.9)
    assert not b.in_backoff_since_update("k", 12.0)


def test_keys_are_independent_forgotten_by_prefix_restored_and_collected() -> None:
    b = Backoff(1, 8)
    b.next("pod1/a", 0, 0)
    b.next("pod2/a", 0, 0)
    b.forget_prefix("pod1/")
    assert b.get("pod1/a") == 0
    assert b.get("pod2/a") == 1
    b.restore("pod3/a", 4.0, 10.0)
    assert b.remaining("pod3/a", since=10.0, now=11.0) == 3.0
    b.gc(now=10.0 + 2 * 8 + 1)
    assert b.get("pod2/a") == 0 and b.get("pod3/a") == 0
