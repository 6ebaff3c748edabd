"""What the control plane does at start with the database file it finds.

Only a data dir without ketch.db starts a new, empty cluster. A zero-length, damaged or foreign
ketch.db is refused with one line on stderr and a non-zero exit: starting empty would forget
every pod while the agents still run them. A second control plane on a data dir in use is
refused the same way.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ketch.local.launcher import free_port

from .harness import Cluster

BIN = Path(sys.executable).parent / "ketch-controlplane"


def _start_refused(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data_dir),
                           "--controllers", "none"], capture_output=True, text=True, timeout=60)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, f"it started: {result.stderr[-500:]}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def _used_cluster(c: Cluster) -> Path:
    c.start_controlplane()
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: precious\n")
    assert c.stop_process("controlplane") == 0
    return c.dir / "controlplane" / "ketch.db"


def test_a_zero_length_database_is_refused(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    db = _used_cluster(cluster_factory(["--controllers", "none"]))
    db.write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    line = _one_line(_start_refused(db.parent))
    assert line.startswith("error: ") and str(db) in line and "empty (0 bytes)" in line
    assert "restore" in line


@pytest.mark.parametrize("damage", ["garbage", "pages"])
def test_a_damaged_database_is_refused(cluster_factory, damage: str) -> None:  # type: ignore[no-untyped-def]
    db = _used_cluster(cluster_factory(["--controllers", "none"]))
    data = bytearray(db.read_bytes())
    if damage == "garbage":
        data[:100] = b"\x17" * 100  # not even SQLite's header
    else:
        data[4096 + 8: 4096 + 108] = b"\x05\x06" * 50  # a B-tree page overwritten
    db.write_bytes(bytes(data))
    line = _one_line(_start_refused(db.parent))
    assert str(db) in line and "cannot be read as a Ketch database" in line


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    conn = sqlite3.connect(data / "ketch.db")
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    line = _one_line(_start_refused(data))
    assert "is not a Ketch database" in line


def test_an_initialized_database_restarts_with_its_objects(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory(["--controllers", "none"])
    _used_cluster(c)
    c.start_controlplane()
    assert c.get("namespace", "precious")["metadata"]["name"] == "precious"


def test_a_data_dir_in_use_is_refused(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory(["--controllers", "none"])
    c.start_controlplane()
    line = _one_line(_start_refused(c.dir / "controlplane"))
    assert "in use by another control plane" in line
    assert f"pid {c.members['controlplane'].proc.pid}" in line
    assert c.members["controlplane"].proc.poll() is None


def test_a_database_from_before_markers_is_adopted(tmp_path: Path, cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory(["--controllers", "none"])
    db = _used_cluster(c)
    # Strip what marks it, as a database written before this version looks.
    legacy = tmp_path / "legacy.db"
    shutil.copy(db, legacy)
    conn = sqlite3.connect(legacy, isolation_level=None)
    conn.execute("PRAGMA application_id=0")
    conn.execute("DELETE FROM meta WHERE name='initialized'")
    conn.close()
    shutil.copy(legacy, db)
    c.start_controlplane()
    assert c.get("namespace", "precious")["metadata"]["name"] == "precious"
