"""The Lease an agent renews states four heartbeat intervals, as the kubelet's (40 s renewed every
10 s), and the agent warns at start when its interval is too long for the default grace period."""

from __future__ import annotations

import pytest

from nodeagent.heartbeat import interval_warning, lease_duration


@pytest.mark.parametrize(("interval", "seconds"), [(0.5, 2), (1.0, 4), (2.5, 10), (10.0, 40), (15.0, 60),
                                                   (0.1, 1), (0.3, 2)])
def test_lease_duration_is_four_intervals(interval: float, seconds: int) -> None:
    assert lease_duration(interval) == seconds


@pytest.mark.parametrize("interval", [0.5, 1.0, 10.0])
def test_no_warning_up_to_a_quarter_of_the_default_grace_period(interval: float) -> None:
    assert interval_warning(interval) == ""


def test_a_slow_heartbeat_is_named_with_both_ways_out() -> None:
    assert interval_warning(15.0) == (
        "--heartbeat-interval 15s is more than a quarter of the control plane's default "
        "--node-monitor-grace-period (40s): a late or lost heartbeat will turn this node NotReady. Keep the "
        "interval at most 10s, or run the control plane with --node-monitor-grace-period 60s or more")


def test_a_heartbeat_longer_than_the_grace_period_flaps_every_time() -> None:
    assert "will turn NotReady between heartbeats and its pods will be evicted" in interval_warning(60.0)
