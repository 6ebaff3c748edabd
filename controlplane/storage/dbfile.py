"""The database file: telling a Ketch database from an empty, foreign or damaged file, making a
new one so that a crash cannot leave a half-made one, and the lock that says a data dir is in use.

A Ketch database carries SQLite's application_id "KTCH" and an `initialized` row written in the
same transaction as its schema. It is built under a temporary name and renamed into place only
once synced, so `ketch.db` either does not exist (the data dir was never used: a new cluster
starts) or is a whole database; a zero-length or unreadable `ketch.db` therefore means the
cluster's state was lost, and the control plane refuses to start rather than start empty while
agents still run the pods it forgot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from pathlib import Path

DB_NAME = "ketch.db"
LOCK_NAME = "ketch.lock"
APPLICATION_ID = 0x4B544348  # "KTCH", in the database header (PRAGMA application_id)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS objects (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        rv INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)


class StorageError(Exception):
    """The store cannot be opened or used as asked; the message is one line for the operator."""


def fsync_path(path: Path) -> None:
    """fsync a file or directory (a rename is durable only once its directory is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_db_files(path: Path) -> None:
    """A database file and its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def create(path: Path) -> None:
    """Make a new, initialized, empty database at path, atomically (see the module's doc)."""
    tmp = path.with_name(path.name + ".init")
    remove_db_files(tmp)
    conn = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        # Before any table: auto_vacuum can be chosen freely only on an empty file.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('initialized', ?)", (int(time.time()),))
        conn.execute("INSERT INTO meta VALUES ('revision', 0)")
        conn.execute("COMMIT")
    finally:
        conn.close()
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


def check(conn: sqlite3.Connection, path: Path) -> bool:
    """Raise StorageError unless conn holds a Ketch database. Returns False for one made before
    databases were marked (tables but no application_id and no marker), which the caller adopts."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    has_tables = {"objects", "meta"} <= tables
    if app_id == APPLICATION_ID and has_tables:
        if conn.execute("SELECT 1 FROM meta WHERE name='initialized'").fetchone() is None:
            raise StorageError(f"{path} is a Ketch database without its initialization record: "
                               "it was not made by ketch-controlplane; restore a backup")
        return True
    if app_id == 0 and has_tables and not tables - {"objects", "meta"}:
        return False
    raise StorageError(f"{path} is not a Ketch database (application_id {app_id:#x}, "
                       f"tables: {', '.join(sorted(tables)) or 'none'})")


def adopt(conn: sqlite3.Connection) -> None:
    """Mark a database made before markers existed as initialized (its objects are kept)."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('initialized', ?)", (int(time.time()),))
    conn.execute("COMMIT")


def empty_file_error(path: Path) -> StorageError:
    return StorageError(
        f"{path} is empty (0 bytes), but the data dir was used: the cluster's state is lost. Restore "
        f"a backup (ketch-controlplane restore --data-dir {path.parent} --from FILE), or remove the "
        "file to start a new, empty cluster")


_DAMAGE = ("malformed", "not a database", "corrupt")


def unusable_error(path: Path, err: BaseException) -> StorageError:
    """Damage gets the advice to restore; anything else (a full disk, permissions, I/O) must not,
    or an operator might throw away a good database."""
    if not any(word in str(err) for word in _DAMAGE):
        return StorageError(f"cannot open {path}: {err} ({_free_space(path.parent)}); the file was "
                            "not changed: fix the cause and start again")
    return StorageError(
        f"{path} cannot be read as a Ketch database ({err}). Restore a backup "
        f"(ketch-controlplane restore --data-dir {path.parent} --from FILE), or move the file "
        "away to start a new, empty cluster")


def _free_space(directory: Path) -> str:
    try:
        st = os.statvfs(directory)
    except OSError as err:
        return f"free space unknown: {err.strerror}"
    return f"{st.f_bavail * st.f_frsize} bytes free in {directory}"


class DataDirLock:
    """An exclusive lock on DIR/ketch.lock, held while a control plane or a restore uses the
    data dir (flock: the kernel lets go when the process dies, so a crash leaves no stale lock)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, what: str = "start") -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StorageError(f"cannot {what}: the data dir {self.path.parent} is in use by another "
                               f"control plane (pid {holder}); stop it first") from None
        try:  # the pid only names the holder in the message above: a full disk may refuse it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing lets go of the flock
            self._fd = None
