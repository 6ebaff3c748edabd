"""cProfile for the benchmarks: with KETCH_PROFILE_DIR set, a control plane or agent process
profiles itself from start to exit and writes DIR/<name>-<pid>.prof (read it with pstats).

Only the benches set the variable (`bench/jobs.py --profile DIR`); without it this costs nothing.

With KETCH_TRACEMALLOC_DIR set, the process traces its allocations (tracemalloc) and writes a
snapshot, DIR/<name>-<pid>-<n>.snap, each time it gets SIGUSR2: `bench/scale.py --tracemalloc DIR`
takes one idle, one with the pods and one after they are gone, to diff where memory went.
Each trace keeps one frame; KETCH_TRACEMALLOC_FRAMES=6 keeps six, to tell which callers allocated
(tracing then slows the process several times more).
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import signal
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

ENV = "KETCH_PROFILE_DIR"
TRACEMALLOC_ENV = "KETCH_TRACEMALLOC_DIR"
TRACE_FRAMES_ENV = "KETCH_TRACEMALLOC_FRAMES"  # frames kept per trace (1 unless set): more say who called


@contextlib.contextmanager
def profiled(name: str) -> Iterator[None]:
    """Profile the block when KETCH_PROFILE_DIR names a dir; write the stats even on SystemExit."""
    trace_snapshots(name)
    where = os.environ.get(ENV)
    if not where:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        Path(where).mkdir(parents=True, exist_ok=True)
        profile.dump_stats(str(Path(where) / f"{name}-{os.getpid()}.prof"))


def trace_snapshots(name: str) -> None:
    """With KETCH_TRACEMALLOC_DIR set, trace allocations and dump a snapshot on each SIGUSR2."""
    where = os.environ.get(TRACEMALLOC_ENV)
    if not where:
        return
    tracemalloc.start(int(os.environ.get(TRACE_FRAMES_ENV) or 1))
    taken = 0

    def dump(signum: int, frame: object) -> None:
        nonlocal taken
        Path(where).mkdir(parents=True, exist_ok=True)
        tracemalloc.take_snapshot().dump(str(Path(where) / f"{name}-{os.getpid()}-{taken}.snap"))
        taken += 1

    signal.signal(signal.SIGUSR2, dump)
