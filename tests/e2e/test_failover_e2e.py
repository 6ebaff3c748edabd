"""`--server DEAD,LIVE`: the CLI and the agent move past an address where nothing answers, within
one command, and the agent joins and runs a pod through the live one."""

from __future__ import annotations

import json

from ketch.local.launcher import free_port
from ketch.testing.deadends import closed_port, listener

from .agent_helpers import pod_manifest, wait_phase
from .harness import Cluster, wait_until

NS = '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"generateName": "fo-"}}'


def test_cli_and_agent_fail_over_past_a_dead_address(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = cluster_factory()
    cluster.start_controlplane()
    refused = closed_port()
    servers = f"{refused},{cluster.server}"
    # The agent joins (CA pinning, certificate signing), registers, heartbeats, watches its pods.
    cluster.start_agent("node-a", ["--server", servers])

    for _ in range(3):  # each run is a new process: no remembered address
        out = cluster.ketch("--server", servers, "get", "ns").stdout
        assert "default" in out
    with listener(reset=True) as reset, listener(reset=False) as silent:
        for dead in (reset, silent):
            assert "default" in cluster.ketch("--server", f"{dead},{cluster.server}", "get", "ns").stdout

    # A write whose first address refuses connections was never sent there: made exactly once.
    cluster.ketch("--server", servers, "create", "-f", "-", input=NS)
    names = json.loads(cluster.ketch("get", "ns", "-o", "json").stdout)["items"]
    assert len([n for n in names if n["metadata"]["name"].startswith("fo-")]) == 1

    cluster.ketch("--server", servers, "apply", "-f", "-",
                  input=pod_manifest("hello", "node-a", ["sh", "-c", "echo hi"]))
    wait_phase(cluster, "hello", "Succeeded")


def test_agent_follows_the_control_plane_to_its_second_address(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    """The control plane moves (stopped, started again on the agent's second address with the
    same data dir): the agent's watches and writes go there, and it runs a pod made after the move."""
    cluster: Cluster = cluster_factory()
    cluster.start_controlplane()
    first, second = cluster.server, f"127.0.0.1:{free_port()}"
    cluster.start_agent("node-a", ["--server", f"{first},{second}"])
    cluster.ketch("apply", "-f", "-", input=pod_manifest("before", "node-a", ["sh", "-c", "echo before"]))
    wait_phase(cluster, "before", "Succeeded")

    cluster.stop_process("controlplane")
    cluster.port, cluster.server = int(second.rsplit(":", 1)[1]), second
    cluster.start_controlplane()
    wait_until(lambda: cluster.ketch("get", "ns", check=False).returncode == 0, 30, "the moved control plane")
    cluster.ketch("apply", "-f", "-", input=pod_manifest("after", "node-a", ["sh", "-c", "echo after"]))
    wait_phase(cluster, "after", "Succeeded")
    assert cluster.node_ready("node-a")
