#!/usr/bin/env python3
"""One Job of N completions of `true` (parallelism P) over A agents, against `xargs -P P`
running the same N `true` in the same run.

Starts a control plane (every controller, SQLite store, as `ketch-controlplane` runs by
default) and the agents as processes on 127.0.0.1 with temporary data dirs, creates the Job,
and times from the create until the Job's Complete condition arrives through a watch. Prints
both times, pods/s and the ratio; everything it started is stopped and its files removed.

    .venv/bin/python bench/jobs.py [--completions 2000] [--parallelism 64] [--agents 4] [--store etcd]

`--store etcd` runs the control plane on a real etcd started here on free loopback ports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cluster import BenchCluster, filesystem_of, store_flags, wait_for_ready_nodes, xargs_seconds

from ketch.api import manifest
from ketch.benchprofile import ENV as PROFILE_ENV
from ketch.local.launcher import CONTROLPLANE
from ketch.v1 import batch_pb2


def bench_job(completions: int, parallelism: int) -> batch_pb2.Job:
    return manifest.from_dict({  # type: ignore[return-value]
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bench", "namespace": "default"},
        "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": 100,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "true", "image": "busybox", "command": ["true"]}]}}},
    })


@dataclass
class JobRun:
    seconds: float  # from the create to the Complete condition
    succeeded: int
    failed: int
    controlplane_cpu: float  # CPU seconds the control plane used meanwhile
    agents_cpu: float  # and the agents together (not counting the pods they ran)


async def run_job(cluster: BenchCluster, completions: int, parallelism: int, agents: int) -> JobRun:
    """The Job from its create until Complete (its final counts, and what it cost)."""
    await cluster.wait_for_admin_config(30)
    client = cluster.client(wait_for_ready=True)
    await wait_for_ready_nodes(client, agents)
    _, rv = await client.list("Job")
    done = asyncio.get_running_loop().create_future()

    async def watch() -> None:
        async for ev in client.watch("Job", namespace="default", resource_version=rv, allow_bookmarks=False):
            job = ev.object
            if job is None or job.metadata.name != "bench":
                continue
            for c in job.status.conditions:
                if c.type in ("Complete", "Failed") and c.status == "True" and not done.done():
                    done.set_result(job)
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    cpu_before = cluster.cpu_seconds()
    start = time.perf_counter()
    await client.create(bench_job(completions, parallelism))
    job = await asyncio.wait_for(done, 900)
    elapsed = time.perf_counter() - start
    cpu = {name: used - cpu_before.get(name, 0.0) for name, used in cluster.cpu_seconds().items()}
    watcher.cancel()
    await client.close()
    if not any(c.type == "Complete" for c in job.status.conditions):
        raise SystemExit(f"the Job failed: {[(c.type, c.reason) for c in job.status.conditions]}")
    return JobRun(elapsed, job.status.succeeded, job.status.failed, cpu.pop(CONTROLPLANE, 0.0), sum(cpu.values()))


def one_run(args: argparse.Namespace, insecure: bool) -> tuple[JobRun, str]:
    """The Job on a fresh cluster, and the filesystem of its data dirs."""
    if args.profile:  # each process writes its cProfile stats under DIR/secure or DIR/insecure
        os.environ[PROFILE_ENV] = str(Path(args.profile) / ("insecure" if insecure else "secure"))
    with store_flags(args.store) as flags, \
            BenchCluster("jobs", keep=args.keep_logs, data_root=args.data_root, insecure=insecure) as cluster:
        where = filesystem_of(cluster.dir)
        cluster.start_controlplane(*flags, controllers=args.controllers)
        for i in range(args.agents):
            cluster.start_agent(f"bench-{i}", "--heartbeat-interval", "2s")
        run = asyncio.run(run_job(cluster, args.completions, args.parallelism, args.agents))
    return run, where


def compare_security(args: argparse.Namespace) -> None:
    """The Job with TLS and the default authorization against --insecure, in alternating rounds.
    Besides the wall time (which other load on the machine moves), the CPU seconds the control
    plane and the agents used: what security itself costs."""
    runs: dict[bool, list[JobRun]] = {False: [], True: []}
    for i in range(args.compare_insecure):
        for insecure in (False, True) if i % 2 == 0 else (True, False):
            run, _ = one_run(args, insecure)
            runs[insecure].append(run)
            print(f"round {i + 1}: {'--insecure' if insecure else 'TLS + authz'}: {run.seconds:.2f}s, CPU: control "
                  f"plane {run.controlplane_cpu:.2f}s, agents {run.agents_cpu:.2f}s"
                  f"{f' ({run.failed} failed)' if run.failed else ''}", flush=True)

    def median(insecure: bool, of: Callable[[JobRun], float]) -> float:
        return statistics.median(of(r) for r in runs[insecure])

    secure, plain = median(False, lambda r: r.seconds), median(True, lambda r: r.seconds)
    print(f"median over {args.compare_insecure} rounds: TLS + authz {secure:.2f}s, --insecure {plain:.2f}s: "
          f"{secure / plain - 1:+.0%} (goal: at most +10 %); spread TLS + authz "
          f"{min(r.seconds for r in runs[False]):.2f}-{max(r.seconds for r in runs[False]):.2f}s, --insecure "
          f"{min(r.seconds for r in runs[True]):.2f}-{max(r.seconds for r in runs[True]):.2f}s")
    paired = statistics.median(s.seconds / p.seconds for s, p in zip(runs[False], runs[True], strict=True))
    print(f"median of the rounds' own ratios (each pair ran back to back): {paired - 1:+.0%}")
    for what, of in (("control plane", lambda r: r.controlplane_cpu), ("agents", lambda r: r.agents_cpu)):
        s_cpu, p_cpu = median(False, of), median(True, of)
        print(f"median CPU of the {what}: TLS + authz {s_cpu:.2f}s, --insecure {p_cpu:.2f}s: {s_cpu / p_cpu - 1:+.0%}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--completions", type=int, default=2000)
    p.add_argument("--parallelism", type=int, default=64)
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--controllers", default="*", help="the control plane's --controllers (default: all)")
    p.add_argument("--keep-logs", action="store_true", help="print the cluster's log file path and keep it")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="where the cluster's data dirs go (default: the system temp dir); the agents "
                        "create each pod's files there")
    p.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite",
                   help="the control plane's store (etcd: a real one started here on loopback)")
    p.add_argument("--insecure", action="store_true",
                   help="the control plane with --insecure (plaintext, no authentication), for comparison")
    p.add_argument("--compare-insecure", type=int, default=0, metavar="ROUNDS",
                   help="the Job secure against --insecure in ROUNDS alternating rounds (median)")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="the control plane and agents write cProfile stats to DIR/secure or DIR/insecure "
                        "(<process>-<pid>.prof) when they exit; the times then include the profiler's cost")
    args = p.parse_args()
    if args.compare_insecure:
        compare_security(args)
        return
    print("security:", "--insecure (plaintext)" if args.insecure else "TLS, client certificates")
    print("store:", args.store)
    base_s = xargs_seconds(args.completions, args.parallelism)
    run, where = one_run(args, args.insecure)
    n, ketch_s = args.completions, run.seconds
    print(f"xargs -P {args.parallelism}: {n} x true in {base_s:.2f}s ({n / base_s:.0f}/s)")
    print(f"ketch Job, parallelism {args.parallelism}, {args.agents} agents: {n} completions in {ketch_s:.2f}s "
          f"({n / ketch_s:.0f} pods/s; succeeded {run.succeeded}, failed {run.failed}; data dirs on {where})")
    print(f"CPU meanwhile: control plane {run.controlplane_cpu:.2f}s, agents {run.agents_cpu:.2f}s")
    print(f"ratio ketch/xargs: {ketch_s / base_s:.1f}x")


if __name__ == "__main__":
    main()
