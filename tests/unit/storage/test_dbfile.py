"""Making a new database cannot leave a zero-length ketch.db behind, and an empty but initialized
database is told apart from a lost one."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from controlplane.storage import dbfile
from controlplane.storage.backend import Record
from controlplane.storage.dbfile import StorageError
from controlplane.storage.sqlite import SQLiteBackend


def test_a_crash_while_making_the_database_leaves_no_ketch_db(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def crash(src: str, dst: str) -> None:
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        SQLiteBackend(tmp_path / dbfile.DB_NAME)
    monkeypatch.undo()
    assert not (tmp_path / dbfile.DB_NAME).exists()  # never a zero-length or half-made one
    # The next start makes it afresh (the leftover temporary file is replaced).
    backend = SQLiteBackend(tmp_path / dbfile.DB_NAME)
    assert backend.load() == (0, [])
    backend.close()


def test_an_empty_initialized_database_opens_and_a_zero_length_one_does_not(tmp_path: Path) -> None:
    path = tmp_path / dbfile.DB_NAME
    SQLiteBackend(path).close()  # initialized, no objects
    backend = SQLiteBackend(path)
    assert backend.load() == (0, [])
    backend.close()

    path.write_bytes(b"")
    with pytest.raises(StorageError, match=r"empty \(0 bytes\)"):
        SQLiteBackend(path)


def test_the_data_dir_lock_is_let_go_when_a_backend_cannot_open(tmp_path: Path) -> None:
    path = tmp_path / dbfile.DB_NAME
    path.write_bytes(b"")
    with pytest.raises(StorageError):
        SQLiteBackend(path)
    path.unlink()
    SQLiteBackend(path).close()  # not "in use by another control plane"


def test_freed_pages_are_given_back_to_the_file_system(tmp_path: Path) -> None:
    path = tmp_path / dbfile.DB_NAME
    backend = SQLiteBackend(path)
    backend.commit([Record("Pod", f"default/p{i}", i + 1, os.urandom(2000)) for i in range(3000)], 3000)
    used = backend.used_bytes
    backend.commit([Record("Pod", f"default/p{i}", 3001 + i, None) for i in range(2900)], 5900)
    assert backend.used_bytes < used / 10  # the quota counts pages in use: deletions count at once
    assert backend.wants_compaction()
    while backend.wants_compaction():
        assert backend.compact() > 0
    backend.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages, free = conn.execute("PRAGMA page_count").fetchone()[0], conn.execute("PRAGMA freelist_count").fetchone()[0]
    conn.close()
    assert free < 1024 and path.stat().st_size == pages * 4096 < used / 5


def test_a_database_from_before_markers_is_adopted_and_converted_once(tmp_path: Path) -> None:
    path = tmp_path / dbfile.DB_NAME
    conn = sqlite3.connect(path, isolation_level=None)  # as the previous version made it
    conn.execute("PRAGMA journal_mode=WAL")
    for statement in dbfile.SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO objects VALUES ('Namespace', 'kept', 7, x'0a060a046b657074')")
    conn.execute("INSERT INTO meta VALUES ('revision', 9)")
    conn.close()
    backend = SQLiteBackend(path)
    assert backend.load() == (9, [Record("Namespace", "kept", 7, b"\n\x06\n\x04kept")])
    backend.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == dbfile.APPLICATION_ID
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    assert conn.execute("SELECT 1 FROM meta WHERE name='initialized'").fetchone() == (1,)
    conn.close()
