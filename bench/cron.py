#!/usr/bin/env python3
"""CronJob punctuality: how late the Jobs of a `*/1 * * * * *` CronJob appear, over N runs.

A control plane runs as its own process on 127.0.0.1 (SQLite store, as deployed); this process
creates the CronJob and watches Jobs. Each Job's lateness is the moment its ADDED event reaches
this watcher minus its scheduled time (the `batch.kubernetes.io/cronjob-scheduled-timestamp`
annotation). creationTimestamp has whole seconds only, so watching gives the sub-second
precision; the measure includes the watch delivery, so it is an upper bound on the controller's
own lateness.

Baseline, measured in the same run: an asyncio loop in this process that sleeps until each whole
second and stamps when it wakes (the floor any event-loop timer has on this machine).

    .venv/bin/python bench/cron.py [--runs 100] [--controllers "*"]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from cluster import BenchCluster

from ketch.api import errors, manifest, timeutil
from ketch.client.config import connect_with_kubeconfig

SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"
CRONJOB = {
    "apiVersion": "batch/v1", "kind": "CronJob",
    "metadata": {"name": "bench-tick", "namespace": "default"},
    "spec": {
        "schedule": "*/1 * * * * *",
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 1,
        "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "tick", "image": "busybox", "command": ["true"]}]}}}},
    },
}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{name:<28} n={len(ms):<4} min {min(ms):7.1f} ms   median {statistics.median(ms):7.1f} ms   "
            f"p99 {pct(ms, 99):7.1f} ms   max {max(ms):7.1f} ms")


async def baseline(runs: int) -> list[float]:
    """Lateness of an asyncio timer aimed at each whole second."""
    out = []
    loop = asyncio.get_running_loop()
    for _ in range(runs):
        target = float(int(time.time()) + 1)
        loop_at = loop.time() + (target - time.time())
        fut = loop.create_future()
        loop.call_at(loop_at, fut.set_result, None)
        await fut
        out.append(time.time() - target)
    return out


async def measure(server: str, runs: int) -> list[float]:
    client = connect_with_kubeconfig(server=server, wait_for_ready=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                await client.list("Namespace")
                break
            except errors.StatusError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        arrivals: dict[str, tuple[float, float]] = {}
        done = asyncio.Event()

        async def watch() -> None:
            async for ev in client.watch("Job", "default"):
                if ev.type != "ADDED" or ev.object is None:
                    continue
                seen = time.time()
                stamp = ev.object.metadata.annotations.get(SCHEDULED, "")
                if stamp and ev.object.metadata.name not in arrivals:
                    arrivals[ev.object.metadata.name] = (seen, timeutil.parse(stamp))
                    if len(arrivals) >= runs:
                        done.set()
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        await client.create(manifest.from_dict(CRONJOB))
        try:
            await asyncio.wait_for(done.wait(), runs + 30)
        finally:
            watcher.cancel()
        return [seen - scheduled for seen, scheduled in arrivals.values()]
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--controllers", default="*",
                        help="controllers the control plane runs (default: * for all; cronjob alone to isolate it)")
    args = parser.parse_args()
    with BenchCluster("cron") as cluster:
        cluster.start_controlplane(controllers=args.controllers)
        print(f"measuring {args.runs} runs of */1 * * * * * (controllers: {args.controllers}) ...", flush=True)
        lateness = asyncio.run(measure(cluster.server, args.runs))
        base = asyncio.run(baseline(min(args.runs, 20)))
    print(row("baseline: asyncio timer", base))
    print(row("cronjob: Job seen by a watch", lateness))
    late = [v for v in lateness if v >= 1.0]
    print(f"runs later than 1 s: {len(late)} of {len(lateness)}; "
          f"median lateness / baseline median: {statistics.median(lateness) / max(statistics.median(base), 1e-6):.1f}x")
    return 0 if not late else 1


if __name__ == "__main__":
    sys.exit(main())
