"""`ketch-controlplane backup` and `restore`: a consistent copy of the store, and putting one back
so that no client can miss a change or see a revision go backwards.

Backup works while the control plane runs: `VACUUM INTO` copies the database as of one read
transaction (WAL readers never block the writer), compacted, into FILE.part, which is synced
and renamed to FILE.

Restore is etcdutl's `snapshot restore --bump-revision --mark-compacted`: the restored store's
revision is raised far past any the old cluster can have handed out (BUMP_REVISION past the
higher of the backup's and the replaced database's, when that one is still readable), so a
resourceVersion from before the restore never names a different state after it, and every
revision up to the new one is marked compacted: watchers resuming from an old resourceVersion
get "too old resource version" (410 Gone) and relist, which is how informers of agents and
controllers connected to the old process converge on the restored state. The replaced database
is kept beside it (`ketch.db.before-restore-TIME`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from ketch.api.kinds import kind_info

from . import dbfile
from .dbfile import DB_NAME, StorageError

# etcd's documented example for --bump-revision, and more writes than a Ketch control plane
# (~4,000 commits/s at most) makes in three days of nonstop writing: far above the revisions
# handed out between a backup and its restore. Revisions are 64-bit: billions of restores fit.
BUMP_REVISION = 1_000_000_000


@dataclass(frozen=True)
class Summary:
    path: Path
    revision: int
    objects: int
    size: int


def _open_checked(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise StorageError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise StorageError(f"{path} is empty (0 bytes): not a Ketch database")
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        dbfile.check(conn, path)
    except sqlite3.Error as err:
        conn.close()
        raise StorageError(f"{path} cannot be read as a Ketch database ({err})") from None
    except StorageError:
        conn.close()
        raise
    return conn


def _revision_and_count(conn: sqlite3.Connection) -> tuple[int, int]:
    row = conn.execute("SELECT value FROM meta WHERE name='revision'").fetchone()
    top, count = conn.execute("SELECT COALESCE(MAX(rv), 0), COUNT(*) FROM objects").fetchone()
    return max(int(row[0]) if row else 0, int(top)), int(count)


def backup(data_dir: Path, to: Path) -> Summary:
    """Copy DIR/ketch.db to `to` as one consistent snapshot; works while the control plane runs."""
    src = data_dir / DB_NAME
    conn = _open_checked(src)
    part = to.with_name(to.name + ".part")
    dbfile.remove_db_files(part)
    try:
        conn.execute("VACUUM INTO ?", (str(part),))
    except sqlite3.Error as err:
        dbfile.remove_db_files(part)
        raise StorageError(f"backup of {src} to {to} failed: {err}") from None
    finally:
        conn.close()
    out = sqlite3.connect(str(part), isolation_level=None)
    try:
        revision, count = _revision_and_count(out)
        out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        out.close()
    dbfile.fsync_path(part)
    os.replace(part, to)
    dbfile.fsync_path(to.parent)
    return Summary(to, revision, count, to.stat().st_size)


def _verify_objects(conn: sqlite3.Connection, path: Path) -> None:
    """Every object in the file decodes (what the control plane would refuse at start)."""
    if (result := conn.execute("PRAGMA quick_check").fetchone()[0]) != "ok":
        raise StorageError(f"{path} is damaged: {result}")
    for kind, key, data in conn.execute("SELECT kind, key, data FROM objects"):
        try:
            kind_info(kind).message.FromString(data)
        except (KeyError, DecodeError) as err:
            raise StorageError(f"{path} holds an object that cannot be read ({kind} {key!r}: {err})") from None


def _old_revision(path: Path) -> int:
    """The replaced database's revision, or 0 when it is missing or unreadable."""
    try:
        if not path.exists() or path.stat().st_size == 0:
            return 0
        conn = sqlite3.connect(str(path), isolation_level=None)
        try:
            dbfile.check(conn, path)
            return _revision_and_count(conn)[0]
        finally:
            conn.close()
    except (sqlite3.Error, StorageError, OSError):
        return 0


def restore(data_dir: Path, source: Path, bump: int = BUMP_REVISION) -> tuple[Summary, Path | None]:
    """Make `source` (a backup) the store of data_dir; refuses while a control plane uses the
    dir. Returns what was restored and where the replaced database was kept (if there was one)."""
    if bump < 0:
        raise StorageError("--bump-revision must not be negative")
    src = _open_checked(source)
    try:
        _verify_objects(src, source)
        backup_revision, count = _revision_and_count(src)
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = dbfile.DataDirLock(data_dir)
        lock.acquire("restore")
        try:
            db = data_dir / DB_NAME
            revision = max(backup_revision, _old_revision(db)) + bump
            tmp = data_dir / f"{DB_NAME}.restore"
            dbfile.remove_db_files(tmp)
            dst = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                src.backup(dst)
                if not dbfile.check(dst, tmp):
                    dbfile.adopt(dst)
                dst.execute("BEGIN IMMEDIATE")
                dst.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (revision,))
                # A record for the operator: the store serves no history from before its start
                # (the watch window begins at the revision it loads), so every revision up to
                # this one is compacted as soon as the control plane starts.
                dst.execute("INSERT OR REPLACE INTO meta VALUES ('compacted', ?)", (revision,))
                dst.execute("INSERT OR REPLACE INTO meta VALUES ('restored_at', ?)", (int(time.time()),))
                dst.execute("COMMIT")
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
            dbfile.fsync_path(tmp)
            kept = _set_aside(db)
            os.replace(tmp, db)
            dbfile.fsync_path(data_dir)
        finally:
            lock.release()
    finally:
        src.close()
    return Summary(db, revision, count, db.stat().st_size), kept


def _set_aside(db: Path) -> Path | None:
    """Rename the database being replaced (with its WAL, so the pair stays whole) out of the way."""
    if not db.exists():
        dbfile.remove_db_files(db)
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = db.with_name(f"{db.name}.before-restore-{stamp}")
    os.replace(db, kept)
    for suffix in ("-wal", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{db}{suffix}", f"{kept}{suffix}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{db}-shm")
    return kept
