"""A write acknowledged by the control plane survives kill -9: the SQLite store with group commit."""

from __future__ import annotations

import asyncio
import signal

from ketch.v1 import core_pb2

from .harness import Cluster, admin_client


async def _create_many(server: str, n: int, prefix: str = "ns") -> dict[str, str]:
    client = admin_client(server)
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> tuple[str, str]:
        obj = core_pb2.Namespace()
        obj.metadata.name = f"{prefix}-{i}"
        async with sem:
            created = await client.create(obj)
        return created.metadata.name, created.metadata.resource_version

    try:
        return dict(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await client.close()


async def _snapshot(server: str) -> dict[str, str]:
    client = admin_client(server)
    try:
        items, _ = await client.list("Namespace")
        return {o.metadata.name: o.metadata.resource_version for o in items}
    finally:
        await client.close()


def test_acknowledged_creates_survive_sigkill(cluster_factory) -> None:
    c: Cluster = cluster_factory(["--controllers", "none"])
    c.start_controlplane()
    acked = asyncio.run(_create_many(c.server, 1000))
    assert len(acked) == 1000
    c.stop_process("controlplane", signal.SIGKILL)
    c.start_controlplane()
    after = asyncio.run(_snapshot(c.server))
    lost = {name: rv for name, rv in acked.items() if after.get(name) != rv}
    assert not lost, f"{len(lost)} acknowledged objects lost or changed, e.g. {list(lost.items())[:3]}"
    # Writes continue from the recovered revision, never reusing one.
    more = asyncio.run(_create_many(c.server, 1, prefix="later"))
    assert int(next(iter(more.values()))) > max(int(rv) for rv in acked.values())


def test_sigterm_stops_the_control_plane_cleanly(cluster_factory) -> None:
    c: Cluster = cluster_factory(["--controllers", "none"])
    c.start_controlplane()
    assert c.stop_process("controlplane", signal.SIGTERM, timeout=15) == 0
