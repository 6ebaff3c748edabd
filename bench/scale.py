#!/usr/bin/env python3
"""Scale on hollow nodes: M pods through a Job and a DaemonSet on N simulated nodes, twice on the
same control plane, against Ketch's published thresholds.

Starts a control plane (every controller, SQLite store, as `ketch-controlplane` runs by default)
and `ketch-agent --hollow` processes (kubemark-style nodes: real Nodes and Leases, pods marked
Running and Ready without processes) on 127.0.0.1. Each run creates a DaemonSet (one pod per node)
and a Job of M - N `sleep 3600` pods (parallelism = completions), all at once, and times until
all M are Ready (job.status.ready + ds.status.numberReady). Meanwhile a probe client runs at a
fixed rate, open loop (a slow answer does not slow the probe): create, get and delete of a
ConfigMap and a list of its namespace, each timed, and a watch of that namespace times each
create's ADDED event from the create's send. Then both are deleted (background propagation) and
the run waits until no pod is left and the database file stops shrinking (the store compacts on
its own). It reports the control plane's RSS idle (after --settle seconds of the nodes'
heartbeats, the same quiet it gets after the deletes), at 10,000 pods Ready (or all, if fewer),
with all pods, and after they are gone; the database size with the pods, right after the deletes and
after compaction. The second run is identical, on the same control plane: whatever the first
leaves behind shows as growth.

    .venv/bin/python bench/scale.py [--nodes 1000] [--pods 20000] [--runs 2] [--probe-rate 5]
    .venv/bin/python bench/scale.py --nodes 100 --pods 2000          # a quick check

`--tracemalloc DIR` has the control plane trace its allocations and write a snapshot under DIR
idle, with the pods and after they are gone, in each run; the report then lists the lines that
grew most from the idle snapshot (the times then include tracemalloc's cost).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster import BenchCluster, wait_for_ready_nodes

from ketch.api import errors, manifest
from ketch.benchprofile import TRACEMALLOC_ENV
from ketch.client.clientset import Client
from ketch.local.launcher import CONTROLPLANE
from ketch.v1 import configmap_pb2

NS = "scale"
PROBE_NS = "scale-probe"
MiB = 1024 * 1024  # sizes are printed in MiB, as ps and top count them (the "MB")


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used (/proc/PID/stat): the control plane's cost,
    which, unlike the times, hardly depends on what else the machine runs meanwhile."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_breakdown(pid: int) -> dict[str, int]:
    """Resident bytes by kind of mapping (/proc/PID/smaps): malloc's main heap, anonymous maps
    (pymalloc's 1 MiB arenas, other threads' malloc arenas, large buffers) and files (code)."""
    out = {"heap": 0, "anon": 0, "file": 0}
    kind = "anon"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if not head[0].endswith(":"):  # a mapping's header: address range, perms, ..., name
                name = head[5] if len(head) > 5 else ""
                kind = "heap" if name == "[heap]" else "file" if name.startswith("/") else "anon"
            elif head[0] == "Rss:":
                out[kind] += int(head[1]) * 1024
    return out


def db_bytes(data_dir: Path, name: str = "ketch.db") -> int:
    """The size of the SQLite database file (or of its WAL: name ketch.db-wal)."""
    try:
        return (data_dir / name).stat().st_size
    except OSError:
        return 0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (NaN when nothing was measured)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def daemonset() -> Any:
    return manifest.from_dict({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "scale", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "scale-ds"}},
                 "template": {"metadata": {"labels": {"app": "scale-ds"}}, "spec": {
                     "containers": [{"name": "d", "image": "busybox", "command": ["sleep", "infinity"]}]}}}})


def job(completions: int) -> Any:
    return manifest.from_dict({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "scale", "namespace": NS},
        "spec": {"completions": completions, "parallelism": completions, "backoffLimit": 100,
                 "template": {"metadata": {"labels": {"app": "scale-job"}}, "spec": {
                     "restartPolicy": "Never",
                     "containers": [{"name": "s", "image": "busybox", "command": ["sleep", "3600"]}]}}}})


def namespace(name: str) -> Any:
    return manifest.from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


@dataclass
class Probe:
    """API latencies seen by a client at a fixed rate while the load runs."""

    rate: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in
                                                                      ("create", "get", "list", "delete", "watch")})
    errors: int = 0
    _sent: dict[str, float] = field(default_factory=dict)

    async def run(self, client: Client, stop: asyncio.Event) -> None:
        watcher = asyncio.create_task(self._watch(client))
        await asyncio.sleep(0.3)  # the watch is open before the first create
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        start = time.perf_counter()
        try:
            while not stop.is_set():
                t = asyncio.create_task(self._one(client, f"probe-{os.getpid()}-{i}"))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                i += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, start + i / self.rate - time.perf_counter()))
            if tasks:
                await asyncio.wait(tasks, timeout=30)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    async def _timed(self, verb: str, call: Any) -> Any:
        start = time.perf_counter()
        try:
            out = await call
        except (TimeoutError, errors.StatusError, OSError):
            self.errors += 1
            return None
        self.latencies[verb].append(time.perf_counter() - start)
        return out

    async def _one(self, client: Client, name: str) -> None:
        cm = configmap_pb2.ConfigMap()
        cm.metadata.name, cm.metadata.namespace = name, PROBE_NS
        cm.data["k"] = "v"
        self._sent[name] = time.perf_counter()
        if await self._timed("create", client.create(cm)) is None:
            return
        await self._timed("get", client.get("ConfigMap", name, PROBE_NS))
        await self._timed("list", client.list("ConfigMap", namespace=PROBE_NS))
        await self._timed("delete", client.delete("ConfigMap", name, PROBE_NS))

    async def _watch(self, client: Client) -> None:
        _, rv = await client.list("ConfigMap", namespace=PROBE_NS)
        async for ev in client.watch("ConfigMap", namespace=PROBE_NS, resource_version=rv, allow_bookmarks=False):
            if ev.type == "ADDED" and ev.object is not None:
                sent = self._sent.pop(ev.object.metadata.name, None)
                if sent is not None:
                    self.latencies["watch"].append(time.perf_counter() - sent)


@dataclass
class RunResult:
    seconds: float = 0.0
    pods: int = 0
    rss_registered: int = 0  # 2 s after the nodes registered (first run only)
    rss_idle: int = 0  # at the run's start, --settle seconds or more after anything else happened
    rss_at_10k: int = 0
    pods_at_10k: int = 0
    rss_loaded: int = 0
    rss_deleted: int = 0  # right after the last pod went (and the database settled)
    rss_after: int = 0  # --settle seconds later: the watch window's history of them is gone
    rss_parts_idle: dict[str, int] = field(default_factory=dict)
    rss_parts_loaded: dict[str, int] = field(default_factory=dict)
    rss_parts_after: dict[str, int] = field(default_factory=dict)
    db_loaded: int = 0
    wal_loaded: int = 0
    db_deleted: int = 0
    db_compacted: int = 0
    delete_seconds: float = 0.0
    cpu_ready: float = 0.0  # the control plane's CPU seconds from the creates to all Ready
    cpu_delete: float = 0.0  # and from the deletes to no pod left
    probe: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # verb: p50, p99, count
    probe_errors: int = 0


async def ready_count(client: Client) -> int:
    j = await client.get("Job", "scale", NS)
    d = await client.get("DaemonSet", "scale", NS)
    return int(j.status.ready) + int(d.status.number_ready)


async def wait_db_settled(data_dir: Path, quiet: float = 5.0, timeout: float = 180.0) -> int:
    """Wait until the database file has not shrunk for `quiet` seconds (compaction done)."""
    deadline = time.monotonic() + timeout
    last, since = db_bytes(data_dir), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = db_bytes(data_dir)
        if now < last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return db_bytes(data_dir)


SNAPSHOTS: list[tuple[str, Path]] = []  # (when, file) of the control plane's tracemalloc snapshots


async def snapshot(pid: int, when: str) -> None:
    """With --tracemalloc, have the control plane dump a snapshot (SIGUSR2) and wait for it."""
    where = os.environ.get(TRACEMALLOC_ENV)
    if not where:
        return
    path = Path(where) / f"controlplane-{pid}-{len(SNAPSHOTS)}.snap"
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 120
    size = -1
    while time.monotonic() < deadline:  # written when its size stops changing
        await asyncio.sleep(0.5)
        now = path.stat().st_size if path.exists() else -1
        if now > 0 and now == size:
            break
        size = now
    SNAPSHOTS.append((when, path))


def snapshot_report(top: int = 15) -> None:
    """The lines whose allocations grew most from the first (idle) snapshot to each later one."""
    if not SNAPSHOTS:
        return
    idle = tracemalloc.Snapshot.load(str(SNAPSHOTS[0][1]))
    for i, (when, path) in enumerate(SNAPSHOTS[1:], start=2):
        stats = tracemalloc.Snapshot.load(str(path)).compare_to(idle, "lineno")
        total = sum(s.size_diff for s in stats)
        print(f"\ntracemalloc, snapshot {i} ({when}) - idle: {total / MiB:+.1f} MiB traced; top lines:")
        for st in stats[:top]:
            frame = st.traceback[0]
            print(f"  {st.size_diff / MiB:+8.2f} MiB {st.count_diff:+9d} blocks  {frame.filename}:{frame.lineno}")


async def one_run(cluster: BenchCluster, nodes: int, pods: int, rate: float, timeout: float,
                  settle: float, rss_registered: int = 0) -> RunResult:
    pid = cluster.members[CONTROLPLANE].proc.pid  # type: ignore[union-attr]
    data_dir = cluster.dir / "controlplane"
    client = cluster.client(wait_for_ready=True)
    probe_client = cluster.client(wait_for_ready=True)
    r = RunResult(pods=pods, rss_registered=rss_registered)
    r.rss_idle = rss_bytes(pid)
    r.rss_parts_idle = rss_breakdown(pid)
    await snapshot(pid, "idle")
    tenk = min(10_000, pods)

    probe = Probe(rate)
    stop = asyncio.Event()
    probing = asyncio.create_task(probe.run(probe_client, stop))
    await asyncio.sleep(1.0)
    start = time.perf_counter()
    cpu_start = cpu_seconds(pid)
    await client.create(daemonset())
    await client.create(job(pods - nodes))
    last_print = 0.0
    while True:
        try:
            n = await ready_count(client)
        except errors.StatusError as err:  # a slow answer under the load (or tracemalloc): ask again
            print(f"  progress poll failed: {err}", flush=True)
            continue
        elapsed = time.perf_counter() - start
        if n >= tenk and not r.rss_at_10k:
            r.rss_at_10k, r.pods_at_10k = rss_bytes(pid), n
        if n >= pods:
            r.seconds = elapsed
            r.cpu_ready = cpu_seconds(pid) - cpu_start
            break
        if elapsed > timeout:
            stop.set()
            await probing
            raise SystemExit(f"only {n} of {pods} pods Ready after {timeout:.0f}s")
        if elapsed - last_print >= 10:
            print(f"  {elapsed:6.1f}s: {n} pods Ready, control plane RSS {rss_bytes(pid) / MiB:.0f} MiB", flush=True)
            last_print = elapsed
        await asyncio.sleep(0.25)
    stop.set()
    await probing
    r.rss_loaded = rss_bytes(pid)
    r.rss_parts_loaded = rss_breakdown(pid)
    r.db_loaded = db_bytes(data_dir)
    r.wal_loaded = db_bytes(data_dir, "ketch.db-wal")
    await snapshot(pid, "loaded")
    r.probe = {v: (percentile(ls, 0.5), percentile(ls, 0.99), len(ls)) for v, ls in probe.latencies.items()}
    r.probe_errors = probe.errors

    start = time.perf_counter()
    cpu_start = cpu_seconds(pid)
    await client.delete("DaemonSet", "scale", NS, propagation_policy="Background")
    await client.delete("Job", "scale", NS, propagation_policy="Background")
    deadline = time.monotonic() + timeout
    while True:
        left, _ = await client.list("Pod", namespace=NS)
        if not left:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(left)} pods still there {timeout:.0f}s after the deletes")
        await asyncio.sleep(1.0)
    r.delete_seconds = time.perf_counter() - start
    r.cpu_delete = cpu_seconds(pid) - cpu_start
    r.db_deleted = db_bytes(data_dir)
    r.db_compacted = await wait_db_settled(data_dir)
    r.rss_deleted = rss_bytes(pid)
    await asyncio.sleep(max(0.0, settle - (time.perf_counter() - start - r.delete_seconds)))
    r.rss_after = rss_bytes(pid)
    r.rss_parts_after = rss_breakdown(pid)
    await snapshot(pid, "after")
    await client.close()
    await probe_client.close()
    return r


async def scenario(cluster: BenchCluster, args: argparse.Namespace) -> list[RunResult]:
    client = cluster.client(wait_for_ready=True)
    await wait_for_ready_nodes(client, args.nodes, timeout=300)
    for ns in (NS, PROBE_NS):
        await client.create(namespace(ns))
    await asyncio.sleep(2.0)  # registration's writes are done
    await client.close()
    pid = cluster.members[CONTROLPLANE].proc.pid  # type: ignore[union-attr]
    registered = rss_bytes(pid)
    # Idle is the steady state of the nodes' heartbeats, as "after" is: the watch window fills
    # with --settle seconds of lease renewals (7,500 events at 1,000 nodes) that it lacks at first.
    print(f"idle: {args.settle:.0f}s of heartbeats before the first run", flush=True)
    await asyncio.sleep(args.settle)
    results = []
    for i in range(args.runs):
        print(f"run {i + 1}: {args.nodes} hollow nodes, {args.pods} pods "
              f"(DaemonSet {args.nodes} + Job {args.pods - args.nodes})", flush=True)
        results.append(await one_run(cluster, args.nodes, args.pods, args.probe_rate, args.timeout,
                                       args.settle, registered if i == 0 else 0))
    return results


def fmt_ms(s: float) -> str:
    return "n/a" if math.isnan(s) else f"{s * 1000:.0f} ms"


def report(results: list[RunResult], args: argparse.Namespace) -> None:
    first = results[0]
    rows: list[tuple[str, list[str], str, bool | None]] = []

    def row(label: str, values: list[str], target: str, ok: bool | None) -> None:
        rows.append((label, values, target, ok))

    row(f"{args.pods} pods Ready (s)", [f"{r.seconds:.1f}" for r in results], "", None)
    rates = [r.pods / r.seconds for r in results]
    row("pods/s to all Ready", [f"{x:.0f}" for x in rates], ">= 500 pods/s", min(rates) >= 500)
    row("deletes until no pod left (s)", [f"{r.delete_seconds:.1f}" for r in results], "", None)
    row("control plane CPU to all Ready (s)", [f"{r.cpu_ready:.1f}" for r in results], "", None)
    row("control plane CPU for the deletes (s)", [f"{r.cpu_delete:.1f}" for r in results], "", None)
    row("control plane RSS 2s after the nodes registered", [f"{first.rss_registered / MiB:.0f} MiB"], "", None)
    row(f"control plane RSS idle ({args.settle:.0f}s of heartbeats)", [f"{r.rss_idle / MiB:.0f} MiB" for r in results],
        "", None)
    row("RSS at 10,000 pods Ready" if first.pods_at_10k >= 10_000 else f"RSS at {first.pods_at_10k} pods Ready",
        [f"{r.rss_at_10k / MiB:.0f} MiB" for r in results], "<= 300 MiB at 10,000 pods",
        max(r.rss_at_10k for r in results) <= 300 * MiB if first.pods_at_10k >= 10_000 else None)
    row(f"RSS with all {args.pods} pods", [f"{r.rss_loaded / MiB:.0f} MiB" for r in results], "", None)
    row("RSS right after the pods are gone", [f"{r.rss_deleted / MiB:.0f} MiB" for r in results], "", None)
    row(f"RSS {args.settle:.0f}s after the pods are gone", [f"{r.rss_after / MiB:.0f} MiB" for r in results],
        "<= 1.2x idle", all(r.rss_after <= 1.2 * first.rss_idle for r in results))
    for when in ("idle", "loaded", "after"):
        parts = [getattr(r, f"rss_parts_{when}") for r in results]
        row(f"  RSS {when}: heap/anon/file MiB", ["/".join(f"{v / MiB:.0f}" for v in p.values()) for p in parts],
            "", None)
    if len(results) > 1:
        row("RSS at the end, last run / first", ["", f"{results[-1].rss_after / first.rss_after:.2f}x"],
            "<= 1.1x", results[-1].rss_after <= 1.1 * first.rss_after)
    for verb in ("create", "get", "list", "delete", "watch"):
        p50 = [fmt_ms(r.probe[verb][0]) for r in results]
        p99 = [fmt_ms(r.probe[verb][1]) for r in results]
        mutating = verb in ("create", "delete")
        label = "watch delivery (create sent -> ADDED)" if verb == "watch" else f"probe {verb}"
        row(f"{label} p50", p50, "", None)
        row(f"{label} p99", p99, "<= 1 s" if mutating else "", max(r.probe[verb][1] for r in results) <= 1.0
            if mutating else None)
    row("probe ops per verb / errors", [f"{r.probe['create'][2]} / {r.probe_errors}" for r in results], "", None)
    row("DB with the pods", [f"{r.db_loaded / MiB:.1f} MiB" for r in results], "", None)
    row("  and its WAL", [f"{r.wal_loaded / MiB:.1f} MiB" for r in results], "", None)
    row("DB right after the deletes", [f"{r.db_deleted / MiB:.1f} MiB" for r in results], "", None)
    row("DB after compaction", [f"{r.db_compacted / MiB:.1f} MiB" for r in results], "", None)

    width = max(len(r[0]) for r in rows)
    head = "".join(f"{f'run {i + 1}':>12}" for i in range(len(results)))
    print(f"\n{'measure':<{width}}{head}   {'target':<26}met")
    for label, values, target, ok in rows:
        cells = "".join(f"{v:>12}" for v in values + [""] * (len(results) - len(values)))
        print(f"{label:<{width}}{cells}   {target:<26}{'' if ok is None else ('yes' if ok else 'NO')}")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print(json.dumps([{k: v for k, v in vars(r).items()} for r in results], default=str))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1000, help="hollow nodes (one DaemonSet pod each)")
    p.add_argument("--pods", type=int, default=20000, help="pods in all: the DaemonSet's and the Job's")
    p.add_argument("--agents", type=int, default=1, help="hollow agent processes the nodes are split over")
    p.add_argument("--runs", type=int, default=2, help="identical runs on the same control plane")
    p.add_argument("--probe-rate", type=float, default=5.0, help="probe rounds per second (create, get, list, "
                                                                 "delete each)")
    p.add_argument("--heartbeat-interval", default="10s", help="the hollow nodes' lease renewal interval")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a run may take to all Ready, or to empty")
    p.add_argument("--settle", type=float, default=90.0,
                   help="seconds of quiet before RSS is measured idle (after the nodes registered) and again after "
                        "the last pod is gone (the watch window keeps 75 s of history, as kube-apiserver's watch "
                        "cache)")
    p.add_argument("--tracemalloc", default="", metavar="DIR",
                   help="the control plane's tracemalloc snapshots go to DIR (idle, loaded, after each run)")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs and print where")
    args = p.parse_args()
    if args.pods < args.nodes:
        p.error("--pods must be at least --nodes (one DaemonSet pod per node)")
    if args.tracemalloc:  # before the cluster: its processes' environment is copied from ours
        os.environ[TRACEMALLOC_ENV] = str(Path(args.tracemalloc).absolute())
    with BenchCluster("scale", keep=args.keep_logs) as cluster:
        cluster.start_controlplane()
        per = -(-args.nodes // args.agents)
        for i in range(args.agents):
            count = min(per, args.nodes - i * per)
            if count > 0:
                # The simulated nodes act with the admin's credentials (plaintext without them).
                cluster.start_agent(f"hollow{i}", "--hollow", str(count), "--kubeconfig", str(cluster.admin_config),
                                    "--heartbeat-interval", args.heartbeat_interval)
        results = asyncio.run(scenario(cluster, args))
    report(results, args)
    snapshot_report()


if __name__ == "__main__":
    main()
