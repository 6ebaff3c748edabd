"""cProfile for the benchmarks: with KETCH_PROFILE_DIR set, a control plane or agent process
profiles itself from start to exit and writes DIR/<name>-<pid>.prof (read it with pstats).

Only the benches set the variable (`bench/jobs.py --profile DIR`); without it this costs nothing.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
from collections.abc import Iterator
from pathlib import Path

ENV = "KETCH_PROFILE_DIR"


@contextlib.contextmanager
def profiled(name: str) -> Iterator[None]:
    """Profile the block when KETCH_PROFILE_DIR names a dir; write the stats even on SystemExit."""
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
