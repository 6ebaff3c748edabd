"""Memory given back after large deletes: glibc keeps freed heap pages for reuse, so a control
plane that deleted 10,000 pods stayed at its peak RSS. malloc_trim returns them; the Trimmer runs it
once per burst of deletes, off the event loop."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import textwrap

import pytest

from ketch import memtrim

FRAGMENTED_HEAP = textwrap.dedent("""
    import sys
    from ketch import memtrim

    def rss():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))

    # 200 MB in 4 KB buffers (malloc's heap, not pymalloc's), every 20th kept: the freed ones are
    # holes below live chunks, which free() alone never gives back.
    blocks = [bytearray(4096) for _ in range(50_000)]
    kept = blocks[::20]
    before = rss()
    del blocks
    after_free = rss()
    trim = sys.argv[1] == "trim"
    if trim:
        memtrim.trim()
    print(before, after_free, rss())
""")


def run_heap(mode: str) -> tuple[int, int, int]:
    out = subprocess.run([sys.executable, "-c", FRAGMENTED_HEAP, mode], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    before, freed, end = (int(x) for x in out)
    return before, freed, end


@pytest.mark.skipif(not sys.platform.startswith("linux") or memtrim._malloc_trim is None,
                    reason="malloc_trim is glibc's")
def test_trim_gives_freed_heap_back_to_the_system() -> None:
    before, _, untrimmed = run_heap("keep")
    assert untrimmed > before * 0.8, "free() alone kept the holes (what the trim is for)"
    before, _, trimmed = run_heap("trim")
    assert trimmed < before * 0.5, f"RSS {before >> 20} MB before the frees, {trimmed >> 20} MB after the trim"


def test_one_trim_per_burst_of_deletes_past_the_threshold() -> None:
    async def scenario() -> tuple[int, int, int]:
        calls = []
        t = memtrim.Trimmer(threshold=100, delay=0.05, trim_fn=lambda: calls.append(1) or True)
        t.freed(60)
        await asyncio.sleep(0.2)
        below = len(calls)  # 60 < 100: no trim
        for _ in range(10):  # a burst: 60 + 100 freed, one trim after it goes quiet
            t.freed(10)
            await asyncio.sleep(0.01)
        deadline = asyncio.get_running_loop().time() + 10
        while not calls and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        after_burst = len(calls)
        t.freed(5)  # the count starts again after a trim
        await asyncio.sleep(0.2)
        t.close()
        return below, after_burst, len(calls)

    assert asyncio.run(scenario()) == (0, 1, 1)


def test_steady_frees_do_not_put_the_trim_off_for_ever() -> None:
    """A thousand nodes' lease renewals leave the watch window every few milliseconds: the deletes'
    trim must still come, max_wait after it was due, not wait for a quiet that never comes."""
    async def scenario() -> tuple[int, float]:
        calls: list[float] = []
        loop = asyncio.get_running_loop()
        t = memtrim.Trimmer(threshold=100, delay=0.2, max_wait=0.5,
                            trim_fn=lambda: calls.append(loop.time()) or True)
        start = loop.time()
        t.freed(100)  # the burst of deletes: due now
        deadline = start + 10
        while not calls and loop.time() < deadline:
            t.freed(1)  # the churn: more than one free per quiet delay, for ever
            await asyncio.sleep(0.02)
        t.close()
        return len(calls), (calls[0] - start) if calls else math.inf

    count, waited = asyncio.run(scenario())
    assert count == 1, "no trim while frees kept coming"
    assert 0.4 < waited < 5, f"the trim came {waited:.2f}s after it was due (max_wait 0.5s)"


def test_an_emptied_container_gives_back_a_grown_table_and_keeps_a_small_one() -> None:
    grown_dict = {i: i for i in range(10_000)}
    grown_set = set(range(10_000))
    for i in range(10_000):
        del grown_dict[i]
        grown_set.discard(i)
    memtrim.release_if_emptied(grown_dict)
    memtrim.release_if_emptied(grown_set)
    assert sys.getsizeof(grown_dict) == sys.getsizeof({}) and sys.getsizeof(grown_set) == sys.getsizeof(set())
    # A queue that drains after every item keeps its small table (no free and malloc per item).
    small = {"a": 1}
    del small["a"]
    kept = sys.getsizeof(small)
    memtrim.release_if_emptied(small)
    assert sys.getsizeof(small) == kept > sys.getsizeof({})
    still_used = {i: i for i in range(10_000)}
    memtrim.release_if_emptied(still_used)
    assert len(still_used) == 10_000


THREADS_ALLOCATING = textwrap.dedent("""
    import ctypes, sys, threading
    from ketch import memtrim

    if sys.argv[1] == "limit":
        print(memtrim.limit_arenas(1))
    else:
        print(None)
    start = threading.Barrier(4)

    def work():
        start.wait()
        keep = [bytearray(4096) for _ in range(2000)]  # malloc's, from this thread's arena
        start.wait()
        del keep

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.stdout.flush()
    ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
""")


def arenas_after_threads(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    proc = subprocess.run([sys.executable, "-c", THREADS_ALLOCATING, mode], capture_output=True, text=True,
                          check=True, timeout=60, env=env)
    return proc.stdout.strip(), sum(1 for line in proc.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(not sys.platform.startswith("linux") or memtrim._malloc_trim is None,
                    reason="malloc arenas are glibc's")
def test_limit_arenas_keeps_every_thread_in_one_arena_unless_the_environment_says_otherwise() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    _, unlimited = arenas_after_threads("none", env)
    assert unlimited >= 2  # glibc's default: a new thread that allocates gets an arena of its own
    limited, arenas = arenas_after_threads("limit", env)
    assert limited == "True" and arenas == 1
    # An operator's MALLOC_ARENA_MAX wins: the call leaves it alone.
    said, arenas = arenas_after_threads("limit", {**env, "MALLOC_ARENA_MAX": "2"})
    assert said == "False" and arenas == 2
