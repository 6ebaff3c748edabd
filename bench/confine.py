#!/usr/bin/env python3
"""What confining a container costs a spawn: the agent's process runtime starting `true` N times
per kind of confinement, against the unconfined spawn measured in the same run.

Two numbers per kind: the time the agent is blocked in `launch` (its event loop waits that long:
with vfork until the exec, with fork for the page-table copy, the preexec_fn and the exec) and
the wall time per pod until all N have exited (adds what runs in the child: the shell's resets).
The process imports the agent first, so forking it copies an agent-sized address space.

    .venv/bin/python bench/confine.py [--spawns 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import nodeagent.agent  # noqa: E402, F401 - the agent's modules loaded: an agent-sized process to fork
from nodeagent.runtime.confine import Confinement  # noqa: E402
from nodeagent.runtime.process import ProcessRuntime  # noqa: E402

NOBODY = 65534


def kinds(sandbox: str) -> dict[str, Confinement | None]:
    """What pods ask for, cheapest first."""
    out: dict[str, Confinement | None] = {
        "nothing (as the agent)": None,
        "oom_score_adj + open files": Confinement(oom_score_adj=1000, nofile=(1024, 4096)),
    }
    if os.geteuid() == 0:
        out["runAsUser"] = Confinement(uid=NOBODY, gid=NOBODY, groups=(NOBODY,), oom_score_adj=1000)
        out["runAsUser, drop ALL, no_new_privs"] = Confinement(
            uid=NOBODY, gid=NOBODY, groups=(NOBODY,), bounding=0, no_new_privs=True, oom_score_adj=1000)
        out["+ readOnlyRootFilesystem"] = Confinement(
            uid=NOBODY, gid=NOBODY, groups=(NOBODY,), bounding=0, no_new_privs=True, oom_score_adj=1000,
            read_only_root=True, writable=(sandbox,))
    return out


async def measure(rt: ProcessRuntime, c: Confinement | None, n: int, cwd: str, out: int) -> tuple[float, float]:
    """(ms the caller is blocked per launch, ms of wall time per pod until every one exited)."""
    env = {"PATH": "/usr/bin:/bin"}
    blocked = 0.0
    start = time.perf_counter()
    handles = []
    for i in range(n):
        t = time.perf_counter()
        pid, ticks, started = rt.launch(["true"], cwd, env, out, c)
        blocked += time.perf_counter() - t
        handles.append(rt.register(pid, ticks, started))
        if i % 16 == 15:
            await asyncio.sleep(0)  # let the reaper drain SIGCHLD, as the agent's loop would
    for h in handles:
        await h.exited
    wall = time.perf_counter() - start
    return blocked / n * 1000, wall / n * 1000


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spawns", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    rt = ProcessRuntime()
    rt.install()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.spawns} spawns of `true` per kind, best of {args.rounds} rounds (kinds alternate); "
          f"this process: {rss:.0f} MB RSS, uid {os.geteuid()}")
    with tempfile.TemporaryDirectory() as sandbox:
        out = os.open(os.devnull, os.O_WRONLY)
        table = kinds(sandbox)
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.rounds):
            for name, c in table.items():
                blocked, wall = await measure(rt, c, args.spawns, sandbox, out)
                old = best.get(name)
                best[name] = (min(blocked, old[0]), min(wall, old[1])) if old else (blocked, wall)
        os.close(out)
    rt.close()
    base_blocked, base_wall = best["nothing (as the agent)"]
    print(f"{'confinement':36} {'agent blocked/spawn':>20} {'x':>6} {'wall/pod':>10} {'x':>6}")
    for name, (blocked, wall) in best.items():
        print(f"{name:36} {blocked:17.3f} ms {blocked / base_blocked:6.1f} {wall:7.3f} ms {wall / base_wall:6.1f}")


if __name__ == "__main__":
    asyncio.run(main())
