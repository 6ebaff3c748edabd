"""A full disk under a running control plane: writes fail with SQLite's own error, health says
NOT_SERVING while reads go on, writes come back by themselves once there is room, and a restart
shows exactly the objects whose creation was acknowledged.

The data dir is a small tmpfs mounted for the test (needs root; skipped otherwise).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ketch.api import errors
from ketch.v1 import core_pb2

from .harness import Cluster, admin_client, health_channel

API_SERVICE = "ketch.v1.API"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def _fill(path: Path) -> None:
    """Write zeros to path until the file system has no room left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = b"\0" * 65536
        while True:
            try:
                os.write(fd, chunk)
            except OSError:
                if len(chunk) == 512:
                    return
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)


def _namespace(name: str) -> core_pb2.Namespace:
    ns = core_pb2.Namespace()
    ns.metadata.name = name
    ns.metadata.annotations["filler"] = "x" * 2000
    return ns


async def _health(server: str) -> dict[str, int]:
    async with health_channel(server) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {name: (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)).status
                for name in ("", API_SERVICE)}


async def _until(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def _fill_and_recover(server: str, filler: Path) -> dict[str, str]:
    client = admin_client(server)
    acked: dict[str, str] = {}
    try:
        for i in range(20):
            made = await client.create(_namespace(f"before-{i}"))
            acked[made.metadata.name] = made.metadata.resource_version
        _fill(filler)

        failure: errors.StatusError | None = None
        for i in range(3000):  # the WAL may still have room for a few
            try:
                made = await client.create(_namespace(f"during-{i}"))
            except errors.StatusError as err:
                failure = err
                break
            acked[made.metadata.name] = made.metadata.resource_version
        assert failure is not None, "writes never failed on a full disk"
        assert isinstance(failure, errors.InternalError), failure
        assert "database or disk is full" in failure.message, failure.message

        healthy = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        await _until(lambda: _all_health(server, not_serving), 10, "health NOT_SERVING")
        # Writes are refused with the real error; reads are served.
        with pytest.raises(errors.InternalError, match="database or disk is full"):
            await client.create(_namespace("refused"))
        items, _ = await client.list("Namespace")
        assert {n.metadata.name for n in items} >= set(acked)

        filler.unlink()

        async def writes_again() -> bool:
            try:
                made = await client.create(_namespace("after"))
            except errors.InternalError:
                return False
            acked[made.metadata.name] = made.metadata.resource_version
            return True

        await _until(writes_again, 15, "writes to succeed once the disk has room")
        await _until(lambda: _all_health(server, healthy), 10, "health SERVING again")
        return acked
    finally:
        await client.close()


async def _all_health(server: str, status: int) -> bool:
    return set((await _health(server)).values()) == {status}


async def _snapshot(server: str) -> dict[str, str]:
    client = admin_client(server)
    try:
        items, _ = await client.list("Namespace")
        return {n.metadata.name: n.metadata.resource_version for n in items if n.metadata.annotations.get("filler")}
    finally:
        await client.close()


def test_full_disk_refuses_writes_reports_not_serving_and_recovers(tmpfs: Path, cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory(["--controllers", "none"])
    c.controlplane_dir = tmpfs / "cp"
    c.start_controlplane()
    acked = asyncio.run(_fill_and_recover(c.server, tmpfs / "filler"))
    assert c.members["controlplane"].proc.poll() is None, "the control plane exited on a full disk"
    assert "database or disk is full" in c.logs("controlplane")
    assert "cannot rollback" not in c.logs("controlplane")

    assert c.stop_process("controlplane", signal.SIGTERM) == 0
    c.start_controlplane()
    after = asyncio.run(_snapshot(c.server))
    assert after == acked  # exactly the acknowledged objects, at their acknowledged versions


def test_a_start_on_a_full_disk_names_the_cause_and_keeps_the_database(tmpfs: Path, cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory(["--controllers", "none"])
    c.controlplane_dir = tmpfs / "cp"
    c.start_controlplane()
    acked = asyncio.run(_create(c.server, 5))
    assert c.stop_process("controlplane", signal.SIGTERM) == 0
    _fill(tmpfs / "filler")

    result = subprocess.run([str(Path(sys.executable).parent / "ketch-controlplane"), "--listen", c.server,
                             "--data-dir", str(c.controlplane_dir), "--controllers", "none"],
                            capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "cannot open" in lines[0] and "bytes free" in lines[0]
    assert "restore" not in lines[0]  # a full disk is not a damaged database: no advice to replace it

    (tmpfs / "filler").unlink()
    c.start_controlplane()
    assert asyncio.run(_snapshot(c.server)) == acked


async def _create(server: str, n: int) -> dict[str, str]:
    client = admin_client(server)
    try:
        made = [await client.create(_namespace(f"ns-{i}")) for i in range(n)]
        return {m.metadata.name: m.metadata.resource_version for m in made}
    finally:
        await client.close()
