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
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ketch.client import connect  # noqa: E402
from ketch.client.clientset import Batch  # noqa: E402
from ketch.v1 import core_pb2  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def xargs_seconds(n: int, parallelism: int) -> float:
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", str(parallelism), "-n", "1", "true"], input="x\n" * n, text=True, check=True)
    return time.perf_counter() - start


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
    client = connect(server, wait_for_ready=True)
    deadline = time.monotonic() + 60
    while True:
        nodes, _ = await client.list("Node")
        ready = [nd for nd in nodes if any(c.type == "Ready" and c.status == "True" for c in nd.status.conditions)]
        if len(ready) == agents:
            break
        if time.monotonic() > deadline:
            raise SystemExit("agents did not become Ready")
        await asyncio.sleep(0.2)
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
    args = p.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="ketch-bench-pods-") as tmp:
        port = free_port()
        server = f"127.0.0.1:{port}"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            logs = open(Path(tmp) / "cluster.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "controlplane", "--listen", server, "--data-dir", f"{tmp}/cp",
                 "--controllers", "scheduler,podgc", "--log-level", "WARNING"],
                cwd=ROOT, start_new_session=True, stdout=logs, stderr=logs, env=env))
            time.sleep(1.0)
            for i in range(args.agents):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "nodeagent", "--server", server, "--node-name", f"bench-{i}",
                     "--data-dir", f"{tmp}/agent-{i}", "--heartbeat-interval", "2s"],
                    cwd=ROOT, start_new_session=True, stdout=logs, stderr=logs, env=env))
            ketch_s = asyncio.run(run_pods(server, args.pods, args.agents))
            base_s = xargs_seconds(args.pods, args.parallelism)
        finally:
            for proc in reversed(procs):
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    print(f"xargs -P {args.parallelism}: {args.pods} × true in {base_s:.2f}s ({args.pods / base_s:.0f}/s)")
    print(f"ketch, {args.agents} agents: {args.pods} pods in {ketch_s:.2f}s ({args.pods / ketch_s:.0f} pods/s)")
    print(f"ratio ketch/xargs: {ketch_s / base_s:.1f}x")


if __name__ == "__main__":
    main()
