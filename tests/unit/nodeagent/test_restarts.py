"""Crash-loop back-off: immediate first restart, 10 s doubling to the cap, reset after 2x cap."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nodeagent.runtime.restarts import BackOff, init_should_restart, should_restart


def test_backoff_sequence_doubles_to_the_cap() -> None:
    b = BackOff(base=10, cap=300)
    now, delays = 0.0, []
    for _ in range(8):
        finished = now  # the run failed just now
        wait = b.delay("k", finished, now)
        delays.append(wait)
        now += wait
        b.next("k", finished, now)
        now += 1  # ran one second, then failed again
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]


def test_backoff_counts_from_the_finish_time() -> None:
    b = BackOff(base=10, cap=300)
    b.next("k", finished_at=0.0, now=0.0)
    assert b.delay("k", finished_at=100.0, now=104.0) == pytest.approx(6.0)
    assert b.delay("k", finished_at=100.0, now=111.0) == 0.0


def test_backoff_resets_after_running_twice_the_cap() -> None:
    b = BackOff(base=10, cap=300)
    b.next("k", 0.0, 0.0)
    b.next("k", 20.0, 20.0)
    assert b.current("k") == 20
    # The next failure comes 10 min + 1 s after the last one: start over, restart at once.
    assert b.delay("k", finished_at=621.0, now=621.0) == 0.0
    assert b.next("k", 621.0, 621.0) == 10


def test_keys_are_independent_and_forgotten_per_pod() -> None:
    b = BackOff(base=1, cap=8)
    b.next("pod1/a", 0, 0)
    b.next("pod2/a", 0, 0)
    b.forget_prefix("pod1/")
    assert b.current("pod1/a") == 0
    assert b.current("pod2/a") == 1


@dataclass(frozen=True)
class RestartCase:
    policy: str
    exit_code: int
    regular: bool
    init: bool


RESTARTS = [
    RestartCase("Always", 0, True, False),
    RestartCase("Always", 1, True, True),
    RestartCase("OnFailure", 0, False, False),
    RestartCase("OnFailure", 2, True, True),
    RestartCase("Never", 0, False, False),
    RestartCase("Never", 1, False, False),
]


@pytest.mark.parametrize("case", RESTARTS, ids=[f"{c.policy}-exit{c.exit_code}" for c in RESTARTS])
def test_restart_policy(case: RestartCase) -> None:
    assert should_restart(case.policy, case.exit_code) is case.regular
    assert init_should_restart(case.policy, case.exit_code) is case.init
