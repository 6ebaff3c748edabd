"""The SQLite backend's memory does not grow with the table: its page cache is bounded.

The store keeps every object in memory and the kernel caches the database file, so SQLite's own
cache of the whole table was a third copy: at 10,000 pods ~48 MiB of the control plane's RSS.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from controlplane.storage import sqlite
from controlplane.storage.backend import Record

MiB = 1024 * 1024

# Writes 20,000 objects of 1,100 bytes under random keys (as a Job's pods are, so commits touch
# leaves all over the B-tree) three times over, ~89 MiB of file with the WAL, and prints how much
# the process's RSS grew meanwhile.
SCRIPT = """
import random, sys
from pathlib import Path
import psutil
from controlplane.storage.backend import Record
from controlplane.storage.sqlite import SQLiteBackend

def rss():
    return psutil.Process().memory_info().rss

backend = SQLiteBackend(Path(sys.argv[1]) / "state.db", synchronous="OFF")
rng = random.Random(7)
blob = bytes(rng.getrandbits(8) for _ in range(1100))
keys = [f"default/job-{rng.getrandbits(40):010x}" for _ in range(20000)]
rv = 0
backend.commit([Record("Pod", "default/warm", 1, blob)], 1)
before = rss()
for _ in range(3):
    for i in range(0, len(keys), 500):
        records = []
        for key in keys[i:i + 500]:
            rv += 1
            records.append(Record("Pod", key, rv, blob))
        backend.commit(records, rv)
print(rss() - before)
backend.close()
"""


def test_writing_a_large_table_grows_the_process_by_at_most_the_page_cache(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[3], check=True)
    grown = int(out.stdout.strip().splitlines()[-1])
    table = sum(f.stat().st_size for f in tmp_path.glob("state.db*"))  # with its WAL
    assert table > 40 * MiB, f"the table is only {table / MiB:.0f} MiB: the test would not tell"
    # Bounded by the cache, and the cache is not sized to the table (it was: 96 MiB grown here).
    assert grown < sqlite.CACHE_KIB * 1024 + 12 * MiB and grown < table / 4, (
        f"the process grew {grown / MiB:.0f} MiB writing a {table / MiB:.0f} MiB table")


def _sqlite_memory_used() -> Callable[[], int] | None:
    """SQLite's count of the bytes it has allocated, from the library the sqlite3 module uses
    (None where that module has SQLite built in)."""
    import sqlite3  # noqa: F401  (loads the library)

    maps = Path("/proc/self/maps")
    paths = {line.split()[-1] for line in maps.read_text().splitlines()
             if "libsqlite3" in line} if maps.exists() else set()
    if len(paths) != 1:
        return None
    fn = ctypes.CDLL(paths.pop()).sqlite3_memory_used
    fn.restype = ctypes.c_int64
    return lambda: int(fn())


def test_release_memory_empties_the_page_cache_after_a_load(tmp_path: Path) -> None:
    memory_used = _sqlite_memory_used()
    if memory_used is None:
        pytest.skip("this Python's sqlite3 module does not load libsqlite3: SQLite's counter is out of reach")
    backend = sqlite.SQLiteBackend(tmp_path / "state.db", synchronous="OFF")
    try:
        blob = bytes(range(256)) * 4
        baseline = memory_used()
        rv = 0
        for first in range(0, 16000, 500):  # ~17 MiB: more than the cache holds
            records = []
            for i in range(first, first + 500):
                rv += 1
                records.append(Record("Pod", f"default/job-{i * 7919 % 16000:05d}", rv, blob))
            backend.commit(records, rv)
        loaded = memory_used()
        assert loaded - baseline > sqlite.CACHE_KIB * 1024 // 2, "the cache did not fill: the test would not tell"
        backend.release_memory()
        assert memory_used() - baseline < MiB
        # The database still answers (and caches again what it reads).
        backend.commit([Record("Pod", "default/after", rv + 1, blob)], rv + 1)
        _, records = backend.load()
        assert len(records) == 16001
    finally:
        backend.close()
