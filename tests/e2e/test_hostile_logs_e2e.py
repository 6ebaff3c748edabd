"""A log request that names a path, through a real control plane and a real agent (processes):
INVALID_ARGUMENT, and the file it aims at is not read. (Before, `pods/../secret.*` was served.)"""

from __future__ import annotations

import asyncio

import pytest

from ketch.api import errors
from ketch.v1 import api_pb2
from nodeagent.runtime import checkpoint
from nodeagent.runtime.checkpoint import PodRecord
from nodeagent.status import ContainerRun, PodRun

from .harness import Cluster, admin_client


async def _read(server: str, req: api_pb2.PodLogsRequest) -> bytes:
    client = admin_client(server)
    try:
        async def go() -> bytes:
            return b"".join([c.data async for c in client.transport.stream("PodLogs", req)])
        return await asyncio.wait_for(go(), 30)
    finally:
        await client.close()


def test_a_log_request_with_dot_dot_reads_nothing(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory()
    c.start_controlplane()
    c.start_agent("node-a")
    data = c.dir / "agent-node-a"  # the agent's --data-dir; its pods live in data/pods
    rec = PodRecord("../secret", "default", "ghost", PodRun(start_time=1.0), container_names=["c"])
    rec.run.containers["c"] = ContainerRun("c", state="terminated")
    checkpoint.write(str(data / "secret.state.json"), checkpoint.to_dict(rec))
    (data / "secret.c.0.log").write_text("TOP SECRET\n")

    req = api_pb2.PodLogsRequest(namespace="default", name="ghost", pod_uid="../secret")
    with pytest.raises(errors.Invalid) as caught:
        asyncio.run(_read(c.server, req))
    assert caught.value.code == errors.INVALID_ARGUMENT
    assert 'podUID: Invalid value: "../secret": must be a UUID' in caught.value.message
    # The CLI, asking for that pod by name, is told it is not found (and sees nothing either).
    r = c.ketch("logs", "ghost", check=False)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == 'Error from server (NotFound): pods "ghost" not found\n'
