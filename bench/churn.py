#!/usr/bin/env python3
"""Churn: clients creating and deleting pods on one control plane, pass after pass; does
throughput hold and does memory come back?

Starts a control plane (all controllers, SQLite store, no agents: the pods stay Pending, so
every create and delete costs the API server, the store, the watch fan-out, the scheduler and
the controllers, and nothing else) as a process on 127.0.0.1. Each pass runs a fixed number
of create+delete pairs from --clients concurrent clients (each its own gRPC channel; the
clients run in --client-procs processes so they do not share one core). Prints, per pass,
the pairs/s over the first and last quarter of the pass, and the control plane's RSS before and
after; then the two ratios the churn goals are stated in (end throughput of the last pass over
start throughput of the first; RSS after the last pass over RSS after the first).

Each unschedulable pod gets a FailedScheduling Event, kept --event-ttl (1 h, as Kubernetes), so
with the defaults memory grows by what those Events cost (about 3.5 KB each) however long the
run; `--cp-flag=--event-ttl=20s` shows the steady state once Events expire as fast as they come.

    .venv/bin/python bench/churn.py [--passes 3] [--pairs 8000] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sqlite3
import time
from typing import Any

from cluster import BenchCluster

from ketch.api import errors
from ketch.client.config import connect_with_kubeconfig
from ketch.v1 import core_pb2


def churn_pod(name: str) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = name
    pod.metadata.labels["bench"] = "churn"
    pod.spec.restart_policy = "Never"
    c = pod.spec.containers.add()
    c.name = "c"
    c.command.extend(["sleep", "3600"])
    c.resources.requests["cpu"] = "100m"
    return pod


async def _client_loop(server: str, prefix: str, pairs: int, stamps: list[float]) -> None:
    client = connect_with_kubeconfig(server=server, wait_for_ready=True)
    try:
        for i in range(pairs):
            name = f"{prefix}-{i}"
            await client.create(churn_pod(name))
            try:
                await client.delete("Pod", name, "default")
            except errors.NotFound:
                pass
            stamps.append(time.monotonic())
    finally:
        await client.close()


def _worker(server: str, prefixes: list[str], pairs: int, ready: Any, go: Any, out: Any) -> None:
    """One client process: says it is ready (imports done), waits for go, runs its clients."""
    async def main() -> list[float]:
        stamps: list[float] = []
        await asyncio.gather(*(_client_loop(server, p, pairs, stamps) for p in prefixes))
        return stamps

    ready.release()
    go.wait()
    out.put(asyncio.run(main()))


def run_pass(server: str, tag: str, pairs: int, clients: int, procs: int) -> tuple[float, float, float]:
    """pairs create+delete pairs in all; returns (pairs/s over the first quarter of them, over the
    last quarter, overall). Quarters, not tenths: a tenth (a second or two here) moves by 15 % from
    run to run on a shared 2-core machine."""
    per_client = max(1, pairs // clients)
    names = [f"churn-{tag}-{c}" for c in range(clients)]
    groups = [g for g in (names[i::procs] for i in range(procs)) if g]
    ctx = mp.get_context("spawn")  # never fork a process that may hold gRPC threads
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(server, g, per_client, ready, go, out)) for g in groups]
    for w in workers:
        w.start()
    for _ in workers:
        ready.acquire()
    start = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the machine
    go.set()
    stamps: list[float] = []
    for _ in workers:
        stamps.extend(out.get())
    for w in workers:
        w.join()
    stamps.sort()
    n = len(stamps)
    quarter = max(1, n // 4)
    first = quarter / (stamps[quarter - 1] - start)
    last = quarter / (stamps[-1] - stamps[-quarter - 1])
    return first, last, n / (stamps[-1] - start)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def db_mb(path: str) -> float:
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.path.getsize(path + suffix)
        except OSError:
            pass
    return total / (1 << 20)


def count_events(path: str) -> int:
    """Events in the database, read from the file (a LIST would itself grow the server's RSS)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM objects WHERE kind='Event'").fetchone()[0])
    finally:
        conn.close()


async def _wait_api(server: str) -> None:
    client = connect_with_kubeconfig(server=server, wait_for_ready=True)
    try:
        await asyncio.wait_for(client.version(), 30)
    finally:
        await client.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--pairs", type=int, default=8000, help="create+delete pairs per pass (all clients)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument("--settle", type=float, default=3.0, help="seconds idle before each RSS reading")
    p.add_argument("--keep", action="store_true", help="keep the cluster's dir and log")
    p.add_argument("--data-root", default=None, metavar="DIR")
    p.add_argument("--cp-flag", action="append", default=[], help="extra control-plane flag (repeatable)")
    args = p.parse_args()
    with BenchCluster("churn", keep=args.keep, data_root=args.data_root) as cluster:
        cluster.start_controlplane(*args.cp_flag)
        asyncio.run(_wait_api(cluster.server))
        pid = cluster.members["controlplane"].proc.pid
        db = str(cluster.dir / "controlplane" / "ketch.db")
        time.sleep(args.settle)
        rss = [rss_mb(pid)]
        print(f"control plane (pid {pid}) RSS at start: {rss[0]:.0f} MB; {args.clients} clients, "
              f"{args.pairs} pairs per pass", flush=True)
        firsts, lasts = [], []
        for i in range(args.passes):
            before = rss_mb(pid)
            first, last, overall = run_pass(cluster.server, f"p{i}", args.pairs, args.clients, args.client_procs)
            time.sleep(args.settle)
            after = rss_mb(pid)
            rss.append(after)
            firsts.append(first)
            lasts.append(last)
            events = count_events(db)
            print(f"pass {i + 1}: {overall:6.0f} pairs/s (first quarter {first:.0f}, last quarter {last:.0f}); "
                  f"RSS {before:.0f} -> {after:.0f} MB; db+wal {db_mb(db):.1f} MB; {events} Events kept",
                  flush=True)
        print(f"throughput, end of last pass / start of first: {lasts[-1] / firsts[0]:.2f} (goal >= 0.90)")
        print(f"RSS after pass {args.passes} / after pass 1: {rss[-1] / rss[1]:.2f} (goal <= 1.50)")


if __name__ == "__main__":
    main()
