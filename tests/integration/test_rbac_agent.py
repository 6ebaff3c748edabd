"""A real agent, in this process, authenticated as system:node:n1 against Node,RBAC over gRPC: it
registers its Node, renews its Lease, reports its pod's status, finishes a graceful deletion and
records events, and on leaving deletes its own Node and Lease: everything it needs is allowed,
and not one of its requests is refused."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

import nodeagent.agent as agent_module
from ketch.api import errors, manifest
from ketch.client.clientset import Client, connect
from ketch.client.transport import TLSConfig
from nodeagent.agent import Agent, AgentConfig
from tests.conftest import eventually

from .rbac_helpers import secured


async def test_an_agent_does_its_whole_job_as_its_node_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with secured() as api:
        assert api.pki is not None
        tls = TLSConfig(api.pki.ca_pem)
        monkeypatch.setattr(agent_module, "connect",
                            lambda server, **_: connect(server, tls=tls, token="n1"))
        cfg = AgentConfig(server=api.address, node_name="n1", data_dir=tmp_path / "n1", heartbeat_interval=0.5,
                          backoff_base=0.2, drain_on_exit=True, use_cgroups=False)
        agent = Agent(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        admin: Client = api.local
        try:
            node = await eventually(lambda: _get(admin, "Node", "n1"), what="n1 registered")
            assert node.metadata.labels["kubernetes.io/hostname"] == "n1"
            await eventually(lambda: _get(admin, "Lease", "n1", "kube-node-lease"), what="its lease")
            pod = manifest.from_dict({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper", "namespace": "default"},
                "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 5,
                         "containers": [{"name": "c", "command": ["sleep", "60"]}]}})
            await admin.create(pod)

            async def running() -> bool:
                p = await _get(admin, "Pod", "sleeper", "default")
                return p is not None and p.status.phase == "Running"

            await eventually(running, timeout=20, what="the agent to report the pod Running")
            await admin.delete("Pod", "sleeper", "default")  # graceful: the agent finishes it
            await eventually(lambda: _gone(admin, "Pod", "sleeper", "default"), timeout=20,
                             what="the node to finish the graceful deletion")
            events, _ = await admin.list("Event", "default")
            assert any(e.source.component == "kubelet" for e in events)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        assert await _gone(admin, "Node", "n1")
        assert await _gone(admin, "Lease", "n1", "kube-node-lease")
        refused = [r.getMessage() for r in caplog.records if "forbidden" in r.getMessage().lower()]
        assert refused == []


async def _get(client: Client, kind: str, name: str, ns: str = "") -> object | None:
    try:
        return await client.get(kind, name, ns)
    except errors.NotFound:
        return None


async def _gone(client: Client, kind: str, name: str, ns: str = "") -> bool:
    return await _get(client, kind, name, ns) is None
