"""The launcher's support for members on other hosts: a member runs under an argv prefix that
execs (as `nsenter --net=...` does), so the pid the launcher stops is the member's own; the control
plane listens on the cluster's host and agents dial it there."""

from __future__ import annotations

import sys
from pathlib import Path

from ketch.local.launcher import LocalCluster, Member


def test_a_member_runs_under_its_prefix_with_the_pid_the_launcher_holds(tmp_path: Path) -> None:
    # `env` execs, as nsenter does: the process that prints is the one Popen started.
    member = Member("m", [sys.executable, "-c", "import os; print(os.environ['WHERE'], os.getpid())"],
                    tmp_path / "m.log", prefix=["env", "WHERE=ns-a1"])
    member.start({"PATH": "/usr/bin:/bin"}, tmp_path)
    assert member.proc is not None
    assert member.proc.wait(30) == 0
    member.close()
    assert (tmp_path / "m.log").read_text().split() == ["ns-a1", str(member.proc.pid)]
    assert member.argv[0] == sys.executable  # the prefix is not part of the member's own argv


def test_members_on_other_hosts_listen_and_dial_at_the_cluster_host(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, port=7443, host="10.1.0.1")
    assert c.server == "10.1.0.1:7443"
    cp = c.controlplane(prefix=["nsenter", "--net=/run/netns/cp", "--"])
    assert cp.argv[cp.argv.index("--listen") + 1] == "10.1.0.1:7443"
    assert cp.prefix == ["nsenter", "--net=/run/netns/cp", "--"]
    agent = c.agent("a1", prefix=["nsenter", "--net=/run/netns/a1", "--"])
    assert agent.argv[agent.argv.index("--server") + 1] == "10.1.0.1:7443"
    assert agent.prefix == ["nsenter", "--net=/run/netns/a1", "--"]
    assert LocalCluster(tmp_path / "local", port=7443).server == "127.0.0.1:7443"  # the default stays loopback
