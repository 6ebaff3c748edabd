"""`ketch local up` passes both timing flags, so it can tell at once when they do not pair."""

from __future__ import annotations

import pytest

from ketch.cli.cmd_local import pairing_warning


@pytest.mark.parametrize(("heartbeat", "grace"), [("", ""), ("1s", "4s"), ("500ms", "2s"), ("10s", "")])
def test_pairs_that_give_four_heartbeats_per_grace_period_are_fine(heartbeat: str, grace: str) -> None:
    assert pairing_warning(heartbeat, grace) == ""


def test_a_heartbeat_too_slow_for_the_grace_period_is_named() -> None:
    assert pairing_warning("2s", "5s") == ("--heartbeat-interval 2s is more than a quarter of "
                                           "--node-monitor-grace-period 5s: a late heartbeat will turn a node "
                                           "NotReady; keep the interval at most 1.25s")
    assert pairing_warning("15s", "").startswith("--heartbeat-interval 15s is more than a quarter of "
                                                 "--node-monitor-grace-period 40s")
