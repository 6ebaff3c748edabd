#!/usr/bin/env python3
"""One Job of N completions of `true` (parallelism P) over A agents, against `xargs -P P`
running the same N `true` in the same run.

Starts a control plane (every controller, SQLite store, as `ketch-controlplane` runs by
default) and the agents as processes on 127.0.0.1 with temporary data dirs, creates the Job,
and times from the create until the Job's Complete condition arrives through a watch. Prints
both times, pods/s and the ratio; everything it started is stopped and its files removed.

    .venv/bin/python bench/jobs.py [--completions 2000] [--parallelism 64] [--agents 4]
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

from ketch.api import manifest  # noqa: E402
from ketch.client import connect  # noqa: E402
from ketch.v1 import batch_pb2  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def xargs_seconds(n: int, parallelism: int) -> float:
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", str(parallelism), "-n", "1", "true"], input="x\n" * n, text=True, check=True)
    return time.perf_counter() - start


def bench_job(completions: int, parallelism: int) -> batch_pb2.Job:
    return manifest.from_dict({  # type: ignore[return-value]
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bench", "namespace": "default"},
        "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": 100,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "true", "image": "busybox", "command": ["true"]}]}}},
    })


async def wait_for_nodes(client, agents: int) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while True:
        nodes, _ = await client.list("Node")
        ready = [nd for nd in nodes if any(c.type == "Ready" and c.status == "True" for c in nd.status.conditions)]
        if len(ready) >= agents:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(ready)} of {agents} agents became Ready")
        await asyncio.sleep(0.2)


async def run_job(server: str, completions: int, parallelism: int, agents: int) -> tuple[float, int, int]:
    """Seconds from create to Complete, and the Job's final succeeded and failed counts."""
    client = connect(server)
    await wait_for_nodes(client, agents)
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
    start = time.perf_counter()
    await client.create(bench_job(completions, parallelism))
    job = await asyncio.wait_for(done, 900)
    elapsed = time.perf_counter() - start
    watcher.cancel()
    await client.close()
    if not any(c.type == "Complete" for c in job.status.conditions):
        raise SystemExit(f"the Job failed: {[(c.type, c.reason) for c in job.status.conditions]}")
    return elapsed, job.status.succeeded, job.status.failed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--completions", type=int, default=2000)
    p.add_argument("--parallelism", type=int, default=64)
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--controllers", default="*", help="the control plane's --controllers (default: all)")
    p.add_argument("--keep-logs", action="store_true", help="print the cluster's log file path and keep it")
    args = p.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    tmp = tempfile.mkdtemp(prefix="ketch-bench-jobs-")
    log_path = Path(tmp) / "cluster.log"
    try:
        server = f"127.0.0.1:{free_port()}"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log_path, "wb") as logs:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "controlplane", "--listen", server, "--data-dir", f"{tmp}/cp",
                 "--controllers", args.controllers, "--log-level", "WARNING"],
                cwd=ROOT, start_new_session=True, stdout=logs, stderr=logs, env=env))
            time.sleep(1.0)
            for i in range(args.agents):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "nodeagent", "--server", server, "--node-name", f"bench-{i}",
                     "--data-dir", f"{tmp}/agent-{i}", "--heartbeat-interval", "2s"],
                    cwd=ROOT, start_new_session=True, stdout=logs, stderr=logs, env=env))
            base_s = xargs_seconds(args.completions, args.parallelism)
            ketch_s, succeeded, failed = asyncio.run(run_job(server, args.completions, args.parallelism, args.agents))
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if args.keep_logs:
            print(f"logs: {log_path}")
        else:
            subprocess.run(["rm", "-rf", tmp], check=False)
    n = args.completions
    print(f"xargs -P {args.parallelism}: {n} x true in {base_s:.2f}s ({n / base_s:.0f}/s)")
    print(f"ketch Job, parallelism {args.parallelism}, {args.agents} agents: {n} completions in {ketch_s:.2f}s "
          f"({n / ketch_s:.0f} pods/s; succeeded {succeeded}, failed {failed})")
    print(f"ratio ketch/xargs: {ketch_s / base_s:.1f}x")


if __name__ == "__main__":
    main()
