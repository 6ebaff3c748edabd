#!/usr/bin/env python3
"""Bare pods: M pods of `true` across N agents, against `xargs -P` running M `true` in the same run.

Starts a control plane (scheduler only, SQLite store) and N agents as processes on 127.0.0.1,
creates the pods in batches, and times until every pod has Succeeded (seen through a watch).
Prints both times, pods/s and the ratio.

    .venv/bin/python bench/pods.py [--pods 1000] [--agents 4] [--parallelism 64]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from cluster import BenchCluster, filesystem_of, wait_for_ready_nodes, xargs_seconds

from ketch.client.clientset import Batch
from ketch.client.config import connect_with_kubeconfig
from ketch.v1 import core_pb2


def bench_pod(i: int) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name = f"bench-{i}"
    pod.metadata.labels["bench"] = "pods"
    pod.spec.restart_policy = "Never"
    c = pod.spec.containers.add()
    c.name = "true"
    c.command.append("true")
    return pod


async def run_pods(server: str, n: int, agents: int) -> float:
    client = connect_with_kubeconfig(server=server, wait_for_ready=True)
    await wait_for_ready_nodes(client, agents)
    _, rv = await client.list("Pod", label_selector="bench=pods")
    done: set[str] = set()
    finished = asyncio.Event()

    async def watch() -> None:
        async for ev in client.watch("Pod", label_selector="bench=pods", resource_version=rv, allow_bookmarks=False):
            if ev.object is not None and ev.object.status.phase in ("Succeeded", "Failed"):
                done.add(ev.object.metadata.name)
                if len(done) == n:
                    finished.set()
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    start = time.perf_counter()
    for first in range(0, n, 500):
        batch = Batch()
        for i in range(first, min(n, first + 500)):
            batch.create(bench_pod(i))
        for outcome in await client.batch(batch):
            if outcome.error is not None:
                raise SystemExit(f"create failed: {outcome.error}")
    await asyncio.wait_for(finished.wait(), 600)
    elapsed = time.perf_counter() - start
    watcher.cancel()
    await client.close()
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--parallelism", type=int, default=64, help="xargs -P for the baseline")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="where the cluster's data dirs go (default: the system temp dir); the agents "
                        "create each pod's files there")
    args = p.parse_args()
    with BenchCluster("pods", data_root=args.data_root) as cluster:
        where = filesystem_of(cluster.dir)
        cluster.start_controlplane(controllers="scheduler,podgc")
        for i in range(args.agents):
            cluster.start_agent(f"bench-{i}", "--heartbeat-interval", "2s")
        ketch_s = asyncio.run(run_pods(cluster.server, args.pods, args.agents))
        base_s = xargs_seconds(args.pods, args.parallelism)
    print(f"xargs -P {args.parallelism}: {args.pods} × true in {base_s:.2f}s ({args.pods / base_s:.0f}/s)")
    print(f"ketch, {args.agents} agents: {args.pods} pods in {ketch_s:.2f}s ({args.pods / ketch_s:.0f} pods/s; "
          f"data dirs on {where})")
    print(f"ratio ketch/xargs: {ketch_s / base_s:.1f}x")


if __name__ == "__main__":
    main()
