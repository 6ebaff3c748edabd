"""SQLite backend: one file in the data dir, WAL, synchronous=FULL, group commit.

Only the Store's writer thread calls commit, so a connection per backend is enough; every
commit is one transaction holding all the writes that queued up while the previous one
synced (group commit), and returns only after the fsync, so an acknowledged write survives
kill -9.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from .backend import Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    rv INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


CACHE_KIB = 256 * 1024  # an upper bound: pages are cached as they are used


class SQLiteBackend:
    blocking = True

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        # The whole table's pages stay cached (SQLite's default is 2 MiB): a commit that replaces
        # rows all over the B-tree then reads nothing back from the file.
        self._conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def load(self) -> tuple[int, list[Record]]:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE name='revision'").fetchone()
            revision = int(row[0]) if row else 0
            records = [Record(kind, key, rv, data) for kind, key, rv, data in
                       self._conn.execute("SELECT kind, key, rv, data FROM objects ORDER BY rv")]
        if records:
            revision = max(revision, records[-1].rv)
        return revision, records

    def commit(self, records: list[Record], revision: int) -> None:
        upserts = [(r.kind, r.key, r.rv, r.data) for r in records if r.data is not None]
        deletes = [(r.kind, r.key) for r in records if r.data is None]
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Order matters when one batch writes and deletes the same key: apply in sequence
                # only when that happens (rare); otherwise bulk statements.
                keys = [(r.kind, r.key) for r in records]
                if len(set(keys)) != len(keys):
                    for r in records:
                        if r.data is None:
                            conn.execute("DELETE FROM objects WHERE kind=? AND key=?", (r.kind, r.key))
                        else:
                            conn.execute("INSERT OR REPLACE INTO objects VALUES (?,?,?,?)",
                                         (r.kind, r.key, r.rv, r.data))
                else:
                    if upserts:
                        conn.executemany("INSERT OR REPLACE INTO objects VALUES (?,?,?,?)", upserts)
                    if deletes:
                        conn.executemany("DELETE FROM objects WHERE kind=? AND key=?", deletes)
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (revision,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()
