"""Backup while running, restore while stopped: the cluster comes back with exactly the backed-up
objects, at a revision far past the old one, every watch from an old resourceVersion is told it
is too old (410 Gone), and an agent that stayed up through it all converges on the restored
state (the pod made after the backup is stopped, the one before it keeps running)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ketch.api import errors

from .agent_helpers import apply_all, pid_of, pod_manifest, processes_with, wait_running
from .harness import Cluster, admin_client, wait_until

BIN = Path(sys.executable).parent / "ketch-controlplane"


def _maintenance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=60)


async def _revision(server: str) -> int:
    client = admin_client(server)
    try:
        _, rv = await client.list("Namespace")
        return int(rv)
    finally:
        await client.close()


async def _watch_from(server: str, rv: int) -> errors.StatusError | None:
    client = admin_client(server)
    try:
        async for _ in client.watch("Pod", "default", resource_version=str(rv), allow_bookmarks=False):
            return None
    except errors.StatusError as err:
        return err
    finally:
        await client.close()
    return None


def _names(c: Cluster, kind: str) -> set[str]:
    return {o["metadata"]["name"] for o in c.items(kind)}


def test_backup_while_running_then_restore(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory()
    c.start_controlplane()
    c.start_agent("n1")
    data = c.dir / "controlplane"
    kept_marker, later_marker = f"{c.port}1", f"{c.port}2"
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: before\n")
    apply_all(c, pod_manifest("kept", "n1", ["sleep", kept_marker]))
    kept_pid = pid_of(wait_running(c, "kept"))

    backup = tmp_path / "cluster.backup"
    result = _maintenance("backup", "--data-dir", str(data), "--to", str(backup))
    assert result.returncode == 0, result.stderr
    saved = re.match(r"saved revision (\d+) \((\d+) objects", result.stdout)
    assert saved, result.stdout
    assert not Path(f"{backup}.part").exists()

    # Changes after the backup: gone after the restore.
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: after\n")
    apply_all(c, pod_manifest("later", "n1", ["sleep", later_marker]))
    wait_running(c, "later")
    assert len(processes_with(f"sleep {later_marker}")) == 1
    old_revision = asyncio.run(_revision(c.server))

    refused = _maintenance("restore", "--data-dir", str(data), "--from", str(backup))
    assert refused.returncode != 0 and "in use by another control plane" in refused.stderr

    assert c.stop_process("controlplane") == 0
    result = _maintenance("restore", "--data-dir", str(data), "--from", str(backup))
    assert result.returncode == 0, result.stderr
    assert "revision raised to" in result.stdout
    assert list(data.glob("ketch.db.before-restore-*")), "the replaced database is kept"
    c.start_controlplane()

    assert "before" in _names(c, "namespace") and "after" not in _names(c, "namespace")
    assert _names(c, "pod") == {"kept"}
    new_revision = asyncio.run(_revision(c.server))
    assert new_revision >= old_revision + 1_000_000_000
    err = asyncio.run(_watch_from(c.server, old_revision))
    assert isinstance(err, errors.Gone) and "too old resource version" in err.message, err

    # The agent (never restarted) relists: the pod made after the backup stops; the other runs on.
    wait_until(lambda: not processes_with(f"sleep {later_marker}"), 60, "the agent to stop the later pod")
    assert processes_with(f"sleep {kept_marker}") == [kept_pid]
    assert pid_of(wait_running(c, "kept")) == kept_pid
    # New writes follow the raised revision.
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: afterwards\n")
    assert int(c.get("namespace", "afterwards")["metadata"]["resourceVersion"]) > new_revision


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100])
def test_restore_refuses_a_file_that_is_not_a_backup(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.backup"
    bad.write_bytes(content)
    data = tmp_path / "data"
    result = _maintenance("restore", "--data-dir", str(data), "--from", str(bad))
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and str(bad) in result.stderr
    assert not (data / "ketch.db").exists()


def test_backup_of_a_data_dir_without_a_database_fails_clearly(tmp_path: Path) -> None:
    result = _maintenance("backup", "--data-dir", str(tmp_path / "nothing"), "--to", str(tmp_path / "b"))
    assert result.returncode != 0 and "does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
