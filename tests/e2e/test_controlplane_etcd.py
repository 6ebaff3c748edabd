"""A control plane on a real etcd (`--store etcd://...`): the API's semantics, kill -9, and a Job.

etcd is started by the test on free loopback ports (ketch.testing.etcd); under CI=true a skip
for want of an etcd binary is a failure.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from ketch.api import errors
from ketch.testing.etcd import Etcd
from ketch.v1 import secret_pb2

from .harness import Cluster, admin_client
from .test_controlplane_durability import _create_many, _snapshot
from .test_job_e2e import FLAGS, job_yaml, wait_job


def _cm(name: str, value: str) -> secret_pb2.Secret:
    cm = secret_pb2.Secret()
    cm.metadata.name, cm.metadata.namespace = name, "default"
    cm.data["v"] = value.encode()
    return cm


async def _crud(server: str) -> None:
    client = admin_client(server)
    try:
        _, rv = await client.list("Secret", "default")
        events: list[tuple[str, str]] = []

        async def follow() -> None:
            async for ev in client.watch("Secret", "default", resource_version=rv):
                if ev.type != "BOOKMARK":
                    events.append((ev.type, ev.object.data["v"].decode()))
                if ev.type == "DELETED":
                    return

        watcher = asyncio.create_task(follow())
        created = await client.create(_cm("c", "1"))
        got = await client.get("Secret", "c", "default")
        assert got.data["v"] == b"1" and got.metadata.resource_version == created.metadata.resource_version
        got.data["v"] = b"2"
        updated = await client.update(got)
        assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
        stale = _cm("c", "3")
        stale.metadata.resource_version = created.metadata.resource_version
        with pytest.raises(errors.Conflict):
            await client.update(stale)
        items, _ = await client.list("Secret", "default")
        assert [(o.metadata.name, o.data["v"]) for o in items] == [("c", b"2")]
        await client.delete("Secret", "c", "default")
        with pytest.raises(errors.NotFound):
            await client.get("Secret", "c", "default")
        async with asyncio.timeout(30):
            await watcher
        assert events == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]
    finally:
        await client.close()


def test_the_api_on_etcd_over_tls_and_acknowledged_writes_survive_sigkill(
        cluster_factory: Any, etcd_tls: Etcd) -> None:
    c: Cluster = cluster_factory(["--controllers", "none", *etcd_tls.client_flags])
    c.start_controlplane()
    asyncio.run(_crud(c.server))
    acked = asyncio.run(_create_many(c.server, 600))
    c.stop_process("controlplane", signal.SIGKILL)
    c.start_controlplane()
    after = asyncio.run(_snapshot(c.server))
    lost = {name: rv for name, rv in acked.items() if after.get(name) != rv}
    assert not lost, f"{len(lost)} acknowledged objects lost or changed, e.g. {list(lost.items())[:3]}"
    more = asyncio.run(_create_many(c.server, 1, prefix="later"))
    assert int(next(iter(more.values()))) > max(int(rv) for rv in acked.values())


def test_a_control_plane_on_etcd_runs_the_pi_job(cluster_factory: Any, etcd: Etcd) -> None:
    c: Cluster = cluster_factory([*FLAGS, "--store", etcd.url])
    c.start_controlplane()
    c.start_agent("node-a")
    c.apply(job_yaml("pi", ["perl", "-Mbignum=bpi", "-wle", "print bpi(200)"], completions=3, parallelism=2))
    pi = wait_job(c, "pi", "Complete")
    assert pi["status"]["succeeded"] == 3
    pods = c.items("pods", "-l", "job-name=pi")
    assert "3.14159" in c.ketch("logs", pods[0]["metadata"]["name"]).stdout


def test_an_etcd_off_loopback_without_tls_is_refused_at_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    from ketch.local.launcher import free_port

    proc = subprocess.run(
        [sys.executable, "-m", "controlplane.main", "--data-dir", str(tmp_path), "--store",
         "etcd://10.0.0.1:2379", "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--etcd-cafile, --etcd-certfile and --etcd-keyfile are required" in proc.stderr


def test_the_etcd_tls_flags_go_together(tmp_path: Path) -> None:
    import subprocess
    import sys

    from ketch.local.launcher import free_port

    proc = subprocess.run(
        [sys.executable, "-m", "controlplane.main", "--data-dir", str(tmp_path), "--store", "etcd://127.0.0.1:2379",
         "--etcd-cafile", str(tmp_path / "ca.crt"), "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--etcd-cafile, --etcd-certfile and --etcd-keyfile go together" in proc.stderr
