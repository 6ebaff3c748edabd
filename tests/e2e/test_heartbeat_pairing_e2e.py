"""Heartbeat interval against grace period, end to end: a control plane whose grace period is
shorter than an agent's lease (four heartbeats) puts a Warning Event on that Node naming both
flags, and only on that one; an agent whose interval is over a quarter of the default grace
period warns in its log at start."""

from __future__ import annotations

from typing import Any

from .harness import Cluster, wait_until

GRACE = 3  # seconds: four 1 s heartbeats (lease 4 s) outlast it, four 0.5 s ones (2 s) do not
REASON = "LeaseDurationExceedsGracePeriod"


def warnings_for(c: Cluster, node: str) -> list[dict[str, Any]]:
    return [e for e in c.items("events", "-A") if e.get("reason") == REASON
            and e.get("involvedObject", {}).get("name") == node]


def test_a_lease_longer_than_the_grace_period_is_warned_about(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory(["--node-monitor-grace-period", f"{GRACE}s"])
    c.start_controlplane()
    c.start_agent("fast", ["--heartbeat-interval", "500ms"])
    c.start_agent("slow", ["--heartbeat-interval", "1s"])
    (event,) = wait_until(lambda: warnings_for(c, "slow"), 30, "the Warning Event on node slow")
    assert event["type"] == "Warning" and event["involvedObject"]["kind"] == "Node"
    assert event["message"] == (
        f"Node slow renews its Lease about every 1s (leaseDurationSeconds 4), too slowly for the node-monitor grace "
        f"period of {GRACE}s: a late heartbeat will turn it NotReady. Set its agent's --heartbeat-interval to at "
        f"most 0.75s, or the control plane's --node-monitor-grace-period to at least 4s")
    # The fast node's lease has been seen as often (each renewal re-checks it): no warning for it.
    assert warnings_for(c, "fast") == []
    assert "more than a quarter" not in c.logs("agent-slow")  # 1 s is fine for the default 40 s


def test_an_agent_warns_at_start_when_its_interval_is_too_long(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory()
    c.start_controlplane()
    c.start_agent("lazy", ["--heartbeat-interval", "15s"], wait_ready=False)
    line = wait_until(lambda: next((x for x in c.logs("agent-lazy").splitlines() if "more than a quarter" in x), ""),
                      30, "the agent's warning")
    assert "WARNING" in line and (
        "--heartbeat-interval 15s is more than a quarter of the control plane's default "
        "--node-monitor-grace-period (40s): a late or lost heartbeat will turn this node NotReady. Keep the "
        "interval at most 10s, or run the control plane with --node-monitor-grace-period 60s or more") in line
