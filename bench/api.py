#!/usr/bin/env python3
"""API server benchmark: creates/s, gets/s, 10,000-object lists, watch delivery latency to 100
watchers under 100 writes/s, each beside a bare gRPC echo service measured in the same run.

Both servers run as separate processes on 127.0.0.1 (the control plane with the default SQLite
store, synchronous=FULL, group commit); this process is the client. Prints a table of rates and
min/median/p99 latencies, and the ratio of creates/s to the echo ceiling.

    .venv/bin/python bench/api.py [--creates 3000] [--concurrency 64] [--watchers 100] [--store etcd]

`--store etcd` runs the control plane on a real etcd (started here on free loopback ports, as
the tests do); `--compare-stores ROUNDS` measures only creates/s, SQLite and etcd in alternating
rounds, side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time

import grpc
from cluster import BenchCluster, free_port, store_flags

from ketch.local.launcher import CONTROLPLANE
from ketch.v1 import core_pb2

ECHO_METHOD = "/bench.Echo/Echo"


def serve_echo(port: int) -> None:
    async def main() -> None:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(_echo, request_deserializer=None,
                                                      response_serializer=None)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


async def _echo(req: bytes, ctx: object) -> bytes:
    return req


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def row(name: str, count: int, seconds: float, lat: list[float]) -> str:
    rate = count / seconds if seconds else 0
    ms = [v * 1000 for v in lat]
    return (f"{name:<34} {rate:>10.0f}/s   min {min(ms):7.2f}  median {statistics.median(ms):7.2f}  "
            f"p99 {pct(ms, 99):7.2f} ms")


async def timed_calls(n: int, concurrency: int, call) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    lat: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            t = time.perf_counter()
            await call(i)
            lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - start, lat


def namespace(name: str, stamp: float | None = None) -> core_pb2.Namespace:
    ns = core_pb2.Namespace()
    ns.metadata.name = name
    ns.metadata.labels["bench"] = "api"
    if stamp is not None:
        ns.metadata.annotations["bench/t"] = repr(stamp)
    return ns


async def bench(args: argparse.Namespace, cluster: BenchCluster, echo_addr: str) -> None:
    lines = []
    channel = grpc.aio.insecure_channel(echo_addr)
    echo = channel.unary_unary(ECHO_METHOD)
    payload = namespace("x" * 20).SerializeToString()
    await echo(payload, wait_for_ready=True)
    secs, lat = await timed_calls(args.creates, args.concurrency, lambda i: echo(payload))
    echo_rate = args.creates / secs
    lines.append(row(f"echo (bare gRPC, {args.concurrency} in flight)", args.creates, secs, lat))

    await cluster.wait_for_admin_config(30)
    client = cluster.client(wait_for_ready=True)
    await client.version()
    secs, lat = await timed_calls(args.creates, args.concurrency, lambda i: client.create(namespace(f"c-{i}")))
    create_rate = args.creates / secs
    lines.append(row(f"create ({args.concurrency} in flight)", args.creates, secs, lat))
    secs, lat = await timed_calls(args.creates, 1, lambda i: client.create(namespace(f"s-{i}")))
    lines.append(row("create (one at a time)", args.creates, secs, lat))
    secs, lat = await timed_calls(args.creates, args.concurrency, lambda i: client.get("Namespace", f"c-{i}"))
    lines.append(row(f"get ({args.concurrency} in flight)", args.creates, secs, lat))

    # Lists of 10,000 objects.
    have = 2 * args.creates + 4
    if have < 10_000:
        await timed_calls(10_000 - have, args.concurrency, lambda i: client.create(namespace(f"l-{i}")))
    list_lat = []
    for _ in range(5):
        t = time.perf_counter()
        items, _ = await client.list("Namespace")
        list_lat.append(time.perf_counter() - t)
    lines.append(row(f"list of {len(items)} objects", 5, sum(list_lat), list_lat))

    # Watch delivery: watchers in this process, writes at 100/s from a separate writer task.
    _, rv = await client.list("Namespace", label_selector="bench=watch")
    delays: list[float] = []
    ready = 0

    async def watcher() -> None:
        nonlocal ready
        c = cluster.client()
        try:
            stream = c.watch("Namespace", label_selector="bench=watch", resource_version=rv, allow_bookmarks=False)
            ready += 1
            async for ev in stream:
                if ev.object is not None and "bench/t" in ev.object.metadata.annotations:
                    delays.append(time.time() - float(ev.object.metadata.annotations["bench/t"]))
        finally:
            await c.close()

    tasks = [asyncio.create_task(watcher()) for _ in range(args.watchers)]
    await asyncio.sleep(1.0)
    writes = args.watch_writes
    t0 = time.perf_counter()
    for i in range(writes):
        ns = namespace(f"w-{i}", time.time())
        ns.metadata.labels["bench"] = "watch"
        await client.create(ns)
        next_at = t0 + (i + 1) / args.write_rate
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    deadline = time.perf_counter() + 10
    while len(delays) < writes * args.watchers and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lines.append(row(f"watch delivery ({args.watchers} watchers, {args.write_rate}/s)", len(delays),
                     time.perf_counter() - t0, delays))
    await client.close()
    await channel.close()

    print("\n".join(lines))
    print(f"\ncreates/s vs bare echo: {create_rate:.0f} / {echo_rate:.0f} = {create_rate / echo_rate:.0%}"
          f"   (received {len(delays)} of {writes * args.watchers} watch events)")


async def creates_per_second(cluster: BenchCluster, n: int, concurrency: int) -> tuple[float, float, float]:
    """Creates/s, and the CPU microseconds per create of the control plane and of this client."""
    client = cluster.client(wait_for_ready=True)
    try:
        await client.version()
        server_before, client_before = cluster.cpu_seconds()[CONTROLPLANE], process_cpu_seconds()
        secs, _ = await timed_calls(n, concurrency, lambda i: client.create(namespace(f"c-{i}")))
        server_cpu = cluster.cpu_seconds()[CONTROLPLANE] - server_before
        client_cpu = process_cpu_seconds() - client_before
        return n / secs, server_cpu / n * 1e6, client_cpu / n * 1e6
    finally:
        await client.close()


def process_cpu_seconds() -> float:
    """This process's user + system CPU seconds (its gRPC threads too)."""
    t = os.times()
    return t.user + t.system


def compare_security(rounds: int, n: int, concurrency: int) -> None:
    """Creates/s with TLS and the default authorization against --insecure, in alternating rounds
    (each on a fresh control plane), so that both see the same machine; and the CPU each create
    cost, which other load on the machine moves far less than the rate."""
    runs: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    for i in range(rounds):
        for insecure in (False, True) if i % 2 == 0 else (True, False):
            with BenchCluster("api", insecure=insecure) as cluster:
                cluster.start_controlplane(controllers="none")
                rate, server_us, client_us = asyncio.run(creates_per_second(cluster, n, concurrency))
            runs[insecure].append((rate, server_us, client_us))
            print(f"round {i + 1}: {'--insecure' if insecure else 'TLS + authz'}: {rate:.0f} creates/s, CPU per "
                  f"create: control plane {server_us:.0f} us, client {client_us:.0f} us", flush=True)

    def median(insecure: bool, column: int) -> float:
        return statistics.median(r[column] for r in runs[insecure])

    secure, plain = median(False, 0), median(True, 0)
    print(f"median creates/s over {rounds} rounds: TLS + authz {secure:.0f}, --insecure {plain:.0f}: "
          f"{secure / plain:.0%} (goal >= 80 %); spread TLS + authz {min(r[0] for r in runs[False]):.0f}-"
          f"{max(r[0] for r in runs[False]):.0f}, --insecure {min(r[0] for r in runs[True]):.0f}-"
          f"{max(r[0] for r in runs[True]):.0f}")
    paired = statistics.median(s[0] / p[0] for s, p in zip(runs[False], runs[True], strict=True))
    print(f"median of the rounds' own ratios (each pair ran back to back): {paired:.0%}")
    for what, column in (("control plane", 1), ("client", 2)):
        s_us, p_us = median(False, column), median(True, column)
        print(f"median CPU per create of the {what}: TLS + authz {s_us:.0f} us, --insecure {p_us:.0f} us: "
              f"{s_us / p_us - 1:+.0%}")


def compare_stores(rounds: int, n: int, concurrency: int) -> None:
    """Creates/s on SQLite and on etcd in alternating rounds, each on a fresh control plane."""
    rates: dict[str, list[float]] = {"sqlite": [], "etcd": []}
    for i in range(rounds):
        for store in ("sqlite", "etcd") if i % 2 == 0 else ("etcd", "sqlite"):
            with store_flags(store) as flags, BenchCluster("api") as cluster:
                cluster.start_controlplane(*flags, controllers="none")
                rate, server_us, _ = asyncio.run(creates_per_second(cluster, n, concurrency))
            rates[store].append(rate)
            print(f"round {i + 1}: {store}: {rate:.0f} creates/s, control plane CPU per create {server_us:.0f} us",
                  flush=True)
    sqlite, etcd = statistics.median(rates["sqlite"]), statistics.median(rates["etcd"])
    print(f"median creates/s over {rounds} rounds: SQLite {sqlite:.0f}, etcd {etcd:.0f}: {etcd / sqlite:.0%} "
          f"(goal >= 50 %); spread SQLite {min(rates['sqlite']):.0f}-{max(rates['sqlite']):.0f}, "
          f"etcd {min(rates['etcd']):.0f}-{max(rates['etcd']):.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--creates", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--write-rate", type=int, default=100)
    p.add_argument("--watch-writes", type=int, default=500)
    p.add_argument("--insecure", action="store_true",
                   help="the control plane with --insecure (plaintext, no authentication), for comparison")
    p.add_argument("--compare-insecure", type=int, default=0, metavar="ROUNDS",
                   help="only creates/s, secure against --insecure in ROUNDS alternating rounds (median)")
    p.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite",
                   help="the control plane's store (etcd: a real one started here on loopback)")
    p.add_argument("--compare-stores", type=int, default=0, metavar="ROUNDS",
                   help="only creates/s, SQLite against etcd in ROUNDS alternating rounds (median)")
    p.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.echo_server:
        serve_echo(args.echo_server)
        return
    if args.compare_insecure:
        compare_security(args.compare_insecure, args.creates, args.concurrency)
        return
    if args.compare_stores:
        compare_stores(args.compare_stores, args.creates, args.concurrency)
        return
    echo_port = free_port()
    echo = subprocess.Popen([sys.executable, __file__, "--echo-server", str(echo_port)], start_new_session=True)
    try:
        with store_flags(args.store) as flags, BenchCluster("api", insecure=args.insecure) as cluster:
            print("security:", "--insecure (plaintext)" if args.insecure else "TLS, client certificates")
            print("store:", args.store)
            cluster.start_controlplane(*flags, controllers="none")
            asyncio.run(bench(args, cluster, f"127.0.0.1:{echo_port}"))
    finally:
        os.killpg(echo.pid, signal.SIGTERM)
        echo.wait(10)

if __name__ == "__main__":
    main()
