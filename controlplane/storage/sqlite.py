"""SQLite backend: one file in the data dir, WAL, synchronous=FULL, group commit.

Only the Store's writer thread calls commit, so a connection per backend is enough; every
commit is one transaction holding all the writes that queued up while the previous one
synced (group commit), and returns only after the fsync, so an acknowledged write survives
kill -9.

A commit that fails (a full disk, an I/O error) is rolled back whole and raises SQLite's own
error; the connection stays usable, so the Store can probe and carry on once the disk has room.
After each commit the backend knows the database's size in use, for the quota, and how much of
the file is free pages, which `compact` gives back to the file system (auto_vacuum=INCREMENTAL).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from . import dbfile
from .backend import Record
from .dbfile import StorageError

log = logging.getLogger(__name__)

# SQLite's own page cache, per connection. Not the whole table: the store serves every read from
# memory and the kernel caches the file, so pages kept here were a second copy of both (at 10,000
# pods, ~48 MiB of the control plane's RSS). 8 MiB holds the B-tree's inner pages and the rows
# written most (leases, nodes); a commit finds its other leaves with a pread from the kernel's cache.
CACHE_KIB = 8 * 1024
# Free pages are given back to the file system once there are this many and they are at least
# an eighth of the file, COMPACT_PAGES at a time (a few ms per step, between commits).
COMPACT_MIN_FREE_PAGES = 1024
COMPACT_PAGES = 4096
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # the WAL file is cut back to this after a checkpoint


class SQLiteBackend:
    blocking = True
    max_records = 0
    max_bytes = 0
    max_record_bytes = 0

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._dir_lock = dbfile.DataDirLock(path.parent)
        self._dir_lock.acquire()
        self._lock = threading.Lock()
        self.used_bytes = 0
        self.free_pages = 0
        self._page_count = 0
        self._page_size = 4096
        try:
            self._conn = self._open(path, synchronous)
        except BaseException:
            self._dir_lock.release()
            raise
        self._page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        self._measure()

    def _open(self, path: Path, synchronous: str) -> sqlite3.Connection:
        if not path.exists():
            try:
                dbfile.create(path)
            except (sqlite3.Error, OSError) as err:
                raise StorageError(f"cannot create {path}: {err}") from None
            log.info("initialized a new cluster database at %s", path)
        elif path.stat().st_size == 0:
            raise dbfile.empty_file_error(path)
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            raise dbfile.unusable_error(path, err) from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            if not dbfile.check(conn, path):
                dbfile.adopt(conn)
            # A damaged B-tree is found now, in a fraction of the time loading takes, rather than
            # by a commit later (which would then fail every write until a restart).
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                first = result.replace("*** in database main ***", "").strip().splitlines()[0]
                raise sqlite3.DatabaseError(f"database disk image is malformed: {first}")
                log.info("%s: marked as an initialized Ketch database", path)
            if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                self._convert_to_incremental_vacuum(conn)
        except sqlite3.Error as err:
            conn.close()
            raise dbfile.unusable_error(path, err) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _convert_to_incremental_vacuum(self, conn: sqlite3.Connection) -> None:
        """Once, for a file made before auto_vacuum=INCREMENTAL: VACUUM rewrites it (needs
        about its size free on disk; if that fails the file works as before, only never shrinks)."""
        try:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")
            log.info("%s: converted to auto_vacuum=INCREMENTAL", self.path)
        except sqlite3.Error as err:
            log.warning("%s: could not convert to auto_vacuum=INCREMENTAL (%s); the file will not "
                        "shrink after deletions", self.path, err)

    def load(self) -> tuple[int, list[Record]]:
        with self._lock:
            try:
                meta = dict(self._conn.execute("SELECT name, value FROM meta").fetchall())
                records = [Record(kind, key, rv, data) for kind, key, rv, data in
                           self._conn.execute("SELECT kind, key, rv, data FROM objects ORDER BY rv")]
            except sqlite3.Error as err:
                raise dbfile.unusable_error(self.path, err) from None
        revision = int(meta.get("revision", 0))
        if records:
            revision = max(revision, records[-1].rv)
        return revision, records

    def commit(self, records: list[Record], revision: int) -> None:
        upserts = [(r.kind, r.key, r.rv, r.data) for r in records if r.data is not None]
        deletes = [(r.kind, r.key) for r in records if r.data is None]
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
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
                self._roll_back()
                raise
            self._measure()

    def probe(self, revision: int) -> None:
        """A small real write (the revision, unchanged): raises while the disk still refuses."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (revision,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._roll_back()
                raise
            self._measure()

    def _roll_back(self) -> None:
        # SQLite rolls a transaction back by itself after some errors (SQLITE_FULL among them);
        # a ROLLBACK then would fail with "no transaction is active" and hide the real error.
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error as err:
                log.warning("rollback after a failed commit: %s", err)

    def _measure(self) -> None:
        conn = self._conn
        self._page_count = conn.execute("PRAGMA page_count").fetchone()[0]
        self.free_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
        # In use, not the file's size: deleted objects' pages count as free at once, so deleting
        # objects brings a database over its quota back under it without a compaction first.
        self.used_bytes = (self._page_count - self.free_pages) * self._page_size

    def wants_compaction(self) -> bool:
        return self.free_pages >= COMPACT_MIN_FREE_PAGES and self.free_pages * 8 >= self._page_count

    def compact(self) -> int:
        """Give up to COMPACT_PAGES free pages back to the file system; returns how many."""
        with self._lock:
            before = self.free_pages
            try:
                # executescript steps the pragma to the end; execute would free one page only
                # (the statement has no columns, so the module stops after its first step).
                self._conn.executescript(f"PRAGMA incremental_vacuum({COMPACT_PAGES});")
            except sqlite3.Error as err:
                self._roll_back()
                log.warning("%s: incremental vacuum failed: %s", self.path, err)
            self._measure()
            return before - self.free_pages

    def release_memory(self) -> None:
        """Empty the page cache: after a load it is full (CACHE_KIB) of the load's pages, which
        are not read again; it refills with what is read next (an idle cluster's leases and
        nodes: 1.6 MiB at 1,000 nodes, against 8)."""
        with self._lock:
            try:
                self._conn.execute("PRAGMA shrink_memory")
            except sqlite3.Error as err:
                log.warning("%s: shrink_memory failed: %s", self.path, err)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        self._dir_lock.release()

