#!/usr/bin/env python3
"""Failover benchmark: what a dead address first in `--server A,B` costs a client.

In this process, against one real API server (TLS, memory store), it times:

  first call   a new client's first list (what each `ketch` command pays), with the live address
               alone, and behind a closed port (refused), a listener that resets every connection,
               and a listener that accepts and never speaks (bounded by the connect timeout)
  steady get   a get on a client that has already failed over (sticky: it goes to the live
               address first), beside one on a client given the live address alone

    .venv/bin/python bench/failover.py [--rounds 30] [--gets 2000] [--connect-timeout 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from controlplane.apiserver.testing import TestAPIServer
from ketch.client.clientset import Client
from ketch.client.transport import GrpcTransport, TLSConfig
from ketch.testing.deadends import closed_port, listener


def row(name: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(f"{name:<34} {statistics.median(ms):>9.2f} {p95:>9.2f} {len(ms):>6}")


async def first_calls(servers: str, tls: TLSConfig | None, rounds: int, connect_timeout: float) -> list[float]:
    out = []
    for _ in range(rounds):
        client = Client(GrpcTransport(servers, tls=tls, connect_timeout=connect_timeout))
        start = time.perf_counter()
        await client.list("Namespace")
        out.append((time.perf_counter() - start) * 1000)
        await client.close()
    return out


async def gets(client: Client, n: int) -> list[float]:
    await client.list("Namespace")  # connected (and failed over) before timing
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await client.get("Namespace", "default")
        out.append((time.perf_counter() - start) * 1000)
    return out


async def main(args: argparse.Namespace) -> None:
    async with TestAPIServer() as api:
        tls, live, ct = api.admin_tls, api.address, args.connect_timeout
        print(f"{'scenario':<34} {'p50 ms':>9} {'p95 ms':>9} {'n':>6}")
        row("first call: live only", await first_calls(live, tls, args.rounds, ct))
        row("first call: refused, live", await first_calls(f"{closed_port()},{live}", tls, args.rounds, ct))
        with listener(reset=True) as reset:
            row("first call: reset, live", await first_calls(f"{reset},{live}", tls, args.rounds, ct))
        with listener(reset=False) as silent:
            row("first call: silent, live", await first_calls(f"{silent},{live}", tls, 2, ct))
        single = Client(GrpcTransport(live, tls=tls))
        sticky = Client(GrpcTransport(f"{closed_port()},{live}", tls=tls))
        try:
            row("steady get: live only", await gets(single, args.gets))
            row("steady get: after failover (sticky)", await gets(sticky, args.gets))
        finally:
            await single.close()
            await sticky.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--connect-timeout", type=float, default=5.0)
    asyncio.run(main(parser.parse_args()))
