#!/usr/bin/env python3
"""What one hostile client can cost the API server: each case runs against a fresh control plane
process (SQLite store, no controllers) while a second client Gets an object every 50 ms, and
prints what the hostile request got back, how long it took, the longest Get meanwhile and the
control plane's resident memory (now and peak).

Cases (all by default; name some to run only those):
  patch-bomb      a JSON patch that adds /t and copies /t into itself --bomb-copies times
  selector-watch  a 1.5 MB label selector on a watch
  selector-list   a 10 MB label selector on a list
  big-patch       one 30 MiB merge patch of a Node's status
  grow-patch      1 MiB merge patches of a Node's status until it is 30 MiB
  big-batch       a Batch of 40 creates of 1.4 MB each (56 MB)
  slow-watchers   500 watchers that never read, then 5,000 writes of ~1.2 KB
  idle-conns      1,100 idle connections (HTTP/2 preface, SETTINGS and its ACK, then nothing) against a
                  control plane whose soft RLIMIT_NOFILE is 1024: how long until a new client
                  is served
  malformed       undecodable request bytes, and an undecodable object inside an Any
  flood           2,000 creates at once on one connection

    .venv/bin/python bench/hostile.py [CASE ...] [--bomb-copies 22] [--timeout 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from ketch.local.launcher import LocalCluster
from ketch.v1 import api_pb2, core_pb2

API = "/ketch.v1.API/"
MiB = 1024 * 1024


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    now = peak = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return now, peak


class ControlPlane:
    """One control plane process (the shared launcher), optionally with a lower soft
    RLIMIT_NOFILE."""

    def __init__(self, workdir: Path, nofile: int | None = None, flags: tuple[str, ...] = ()) -> None:
        self.cluster = LocalCluster(workdir, insecure=True)  # raw gRPC clients: plaintext
        self.address = self.cluster.server
        member = self.cluster.start_controlplane("--controllers", "none", "--log-level", "WARNING", *flags,
                                                 open_files=(nofile, None) if nofile is not None else None)
        assert member.proc is not None
        self.proc = member.proc

    def rss(self) -> str:
        now, peak = rss_kib(self.proc.pid)
        return f"RSS {now / 1024:7.0f} MiB (peak {peak / 1024:.0f})"

    def stop(self) -> None:
        self.cluster.stop(20)


def channel(address: str, **options: Any) -> grpc.aio.Channel:
    """A channel on a connection of its own (not shared with the other channels of this process)."""
    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1), *options.items()]
    return grpc.aio.insecure_channel(address, options=opts)


def method(ch: grpc.aio.Channel, name: str, response: Any, stream: bool = False) -> Any:
    maker = ch.unary_stream if stream else ch.unary_unary
    return maker(API + name, request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
                 response_deserializer=response.FromString)


def any_of(obj: Any) -> Any:
    from google.protobuf import any_pb2

    out = any_pb2.Any()
    out.Pack(obj)
    return out


def outcome(err: BaseException | None) -> str:
    if err is None:
        return "OK"
    if isinstance(err, grpc.aio.AioRpcError):
        reason = dict(err.trailing_metadata() or ()).get("ketch-reason", "")
        details = (err.details() or "").replace("\n", " ")
        if len(details) > 90:
            details = details[:87] + "..."
        return f"{err.code().name} {reason}: {details}".strip()
    return f"{type(err).__name__}: {err}"


class Probe:
    """Gets the default namespace every 50 ms on a connection of its own; keeps the latencies."""

    def __init__(self, address: str) -> None:
        self.ch = channel(address)
        self.get = method(self.ch, "Get", api_pb2.ObjectResponse)
        self.latencies: list[float] = []
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        self._started: float | None = None  # of the Get in flight

    async def _run(self) -> None:
        while True:
            self._started = t = time.perf_counter()
            try:
                await self.get(api_pb2.GetRequest(kind="Namespace", name="default"), timeout=300)
            except grpc.aio.AioRpcError:
                self.failures += 1
            self._started = None
            self.latencies.append(time.perf_counter() - t)
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self.latencies.clear()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> str:
        if self._started is not None:  # a Get still unanswered counts for as long as it waited
            self.latencies.append(time.perf_counter() - self._started)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.ch.close()
        worst = max(self.latencies, default=0.0)
        return f"longest Get {worst * 1000:8.0f} ms over {len(self.latencies)} Gets"


async def wait_ready(address: str) -> None:
    async with channel(address) as ch:
        version = method(ch, "Version", api_pb2.VersionInfo)
        await version(api_pb2.VersionRequest(), wait_for_ready=True, timeout=60)


async def hostile(cp: ControlPlane, fn: Callable[[], Awaitable[str | None]], timeout: float) -> str:
    """Run fn beside the probe; returns the line of the report."""
    probe = Probe(cp.address)
    probe.start()
    t = time.perf_counter()
    try:
        got = await asyncio.wait_for(fn(), timeout)
    except TimeoutError:
        got = f"no answer within {timeout:.0f} s"
    except grpc.aio.AioRpcError as err:
        got = outcome(err)
    took = time.perf_counter() - t
    await asyncio.sleep(0.3)  # a Get or two after the hostile request
    if cp.proc.poll() is not None:
        return f"{got} after {took:.1f} s; the control plane DIED (exit {cp.proc.returncode})"
    return f"{got or 'OK'} after {took:.2f} s; {await probe.stop()}; {cp.rss()}"


async def create_node(address: str, name: str) -> None:
    async with channel(address) as ch:
        create = method(ch, "Create", api_pb2.ObjectResponse)
        node = core_pb2.Node(api_version="v1", kind="Node")
        node.metadata.name = name
        await create(api_pb2.CreateRequest(object=any_of(node)))


# -- cases -----------------------------------------------------------------------------------


async def case_patch_bomb(cp: ControlPlane, args: argparse.Namespace) -> str:
    ops = [{"op": "add", "path": "/t", "value": {"v": "x"}}]
    ops += [{"op": "copy", "from": "/t", "path": f"/t/c{i}"} for i in range(args.bomb_copies)]
    text = json.dumps(ops)

    async def run() -> str:
        async with channel(cp.address) as ch:
            patch = method(ch, "Patch", api_pb2.ObjectResponse)
            try:
                await patch(api_pb2.PatchRequest(kind="Namespace", name="default", patch_type="json", patch=text),
                            timeout=args.timeout)
            except grpc.aio.AioRpcError as err:
                return outcome(err)
            return "OK"

    return f"{len(text)} B, {args.bomb_copies} copies: " + await hostile(cp, run, args.timeout)


def _selector(size: int) -> str:
    # A set-based requirement with many short values: what a careless generator might send.
    head = "app in ("
    count = (size - len(head) - 1) // 2
    return head + ",".join(["v"] * count) + ")"


async def _selector_case(cp: ControlPlane, args: argparse.Namespace, size: int, watch: bool) -> str:
    sel = _selector(size)

    async def run() -> str:
        async with channel(cp.address) as ch:
            try:
                if watch:
                    req = api_pb2.WatchRequest(kind="Pod", label_selector=sel, allow_bookmarks=True)
                    call = method(ch, "WatchBatched", api_pb2.WatchEventList, stream=True)(req, timeout=args.timeout)
                    async for _ in call:
                        return "the watch started"
                else:
                    await method(ch, "List", api_pb2.ListResponse)(
                        api_pb2.ListRequest(kind="Pod", label_selector=sel), timeout=args.timeout)
            except grpc.aio.AioRpcError as err:
                return outcome(err)
            return "OK"

    return f"{len(sel) / 1e6:.1f} MB selector: " + await hostile(cp, run, args.timeout)


async def case_selector_watch(cp: ControlPlane, args: argparse.Namespace) -> str:
    return await _selector_case(cp, args, 1_500_000, watch=True)


async def case_selector_list(cp: ControlPlane, args: argparse.Namespace) -> str:
    return await _selector_case(cp, args, 10_000_000, watch=False)


def _status_patch(keys: range, size: int) -> str:
    filler = "x" * size
    return json.dumps({"status": {"nodeInfo": {}, "images": [{"names": [f"i{i}-{filler}"]} for i in keys]}})


async def case_big_patch(cp: ControlPlane, args: argparse.Namespace) -> str:
    await create_node(cp.address, "big")
    text = _status_patch(range(30), MiB)

    async def run() -> str:
        async with channel(cp.address) as ch:
            patch = method(ch, "Patch", api_pb2.ObjectResponse)
            try:
                resp = await patch(api_pb2.PatchRequest(kind="Node", name="big", patch=text, subresource="status"),
                                   timeout=args.timeout)
            except grpc.aio.AioRpcError as err:
                return outcome(err)
            return f"OK, stored {len(resp.object.value) / MiB:.1f} MiB"

    return f"{len(text) / MiB:.0f} MiB patch: " + await hostile(cp, run, args.timeout)


async def case_grow_patch(cp: ControlPlane, args: argparse.Namespace) -> str:
    await create_node(cp.address, "grow")

    async def run() -> str:
        async with channel(cp.address) as ch:
            patch = method(ch, "Patch", api_pb2.ObjectResponse)
            stored = 0
            for n in range(1, 31):
                try:
                    req = api_pb2.PatchRequest(kind="Node", name="grow", patch=_status_patch(range(n), MiB),
                                               subresource="status")
                    resp = await patch(req, timeout=args.timeout)
                except grpc.aio.AioRpcError as err:
                    return f"patch {n}: {outcome(err)} (stored {stored / MiB:.1f} MiB before)"
                stored = len(resp.object.value)
            return f"OK, stored {stored / MiB:.1f} MiB"

    return "1 MiB patches: " + await hostile(cp, run, args.timeout)


async def case_big_batch(cp: ControlPlane, args: argparse.Namespace) -> str:
    names = [f"batch-{i}" for i in range(38)]
    for name in names:
        await create_node(cp.address, name)
    ops = []
    for name in names:
        node = core_pb2.Node(api_version="v1", kind="Node")
        node.metadata.name = name
        node.status.volumes_in_use.append("x" * 1_400_000)
        ops.append(api_pb2.BatchOp(update=api_pb2.UpdateRequest(object=any_of(node), subresource="status")))
    req = api_pb2.BatchRequest(ops=ops)

    async def run() -> str:
        async with channel(cp.address) as ch:
            batch = method(ch, "Batch", api_pb2.BatchResponse)
            try:
                resp = await batch(req, timeout=args.timeout)
            except grpc.aio.AioRpcError as err:
                return outcome(err)
            stored = sum(len(r.response.object.value) for r in resp.results if not r.code)
            failed = [r for r in resp.results if r.code]
            why = f" ({len(failed)} ops failed: {failed[0].reason}: {failed[0].message[:80]})" if failed else ""
            return f"OK, stored {stored / MiB:.0f} MiB{why}"

    return f"{req.ByteSize() / MiB:.0f} MiB batch: " + await hostile(cp, run, args.timeout)


async def case_slow_watchers(cp: ControlPlane, args: argparse.Namespace) -> str:
    before = cp.rss()
    # Each on its own connection; no BDP probing, so a stream's window stays at 64 KiB and the
    # server, not this process, holds what the watcher does not read.
    channels = [channel(cp.address, **{"grpc.http2.bdp_probe": 0}) for _ in range(args.watchers)]
    calls = []
    for ch in channels:
        calls.append(method(ch, "WatchBatched", api_pb2.WatchEventList, stream=True)(
            api_pb2.WatchRequest(kind="Namespace", label_selector="slow=yes", allow_bookmarks=True)))
    for call in calls:
        await call.initial_metadata()  # sent with the first bookmark: the watch is registered

    def namespace(i: int) -> Any:
        ns = core_pb2.Namespace(api_version="v1", kind="Namespace")
        ns.metadata.name = f"slow-{i}"
        ns.metadata.labels["slow"] = "yes"
        ns.metadata.annotations["fill"] = "x" * 1000
        return ns

    async def run() -> str:
        async with channel(cp.address) as ch:
            if args.burst:  # Batches of --burst creates: each watcher's writer takes many events at once
                batch = method(ch, "Batch", api_pb2.BatchResponse)
                for start in range(0, args.writes, args.burst):
                    ops = [api_pb2.BatchOp(create=api_pb2.CreateRequest(object=any_of(namespace(i))))
                           for i in range(start, min(start + args.burst, args.writes))]
                    await batch(api_pb2.BatchRequest(ops=ops), timeout=args.timeout)
            else:
                create = method(ch, "Create", api_pb2.ObjectResponse)
                sem = asyncio.Semaphore(32)

                async def one(i: int) -> None:
                    async with sem:
                        await create(api_pb2.CreateRequest(object=any_of(namespace(i))), timeout=args.timeout)

                await asyncio.gather(*(one(i) for i in range(args.writes)))
        await asyncio.sleep(3)
        return f"{args.writes} writes done" + (f" in Batches of {args.burst}" if args.burst else "")

    line = await hostile(cp, run, args.timeout)
    closed = sum(1 for c in calls if c.done())
    for call in calls:
        call.cancel()
    for ch in channels:
        await ch.close()
    return f"{args.watchers} watchers ({before} before): {line}; {closed} streams ended by the server"


def _h2_preface(settings: bool) -> bytes:
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    if settings:
        out += b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame
        out += b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"  # and the ACK of the server's, as a live client sends
    return out


async def case_idle_conns(cp: ControlPlane, args: argparse.Namespace) -> str:
    socks = []
    host, port = cp.address.rsplit(":", 1)
    refused = 0
    for _ in range(args.idle_conns):
        s = socket.socket()
        s.setblocking(True)
        try:
            s.connect((host, int(port)))
            s.sendall(_h2_preface(settings=True))
        except OSError:
            refused += 1
            s.close()
            continue
        socks.append(s)

    async def run() -> str:
        async with channel(cp.address) as ch:
            get = method(ch, "Get", api_pb2.ObjectResponse)
            await get(api_pb2.GetRequest(kind="Namespace", name="default"), wait_for_ready=True,
                      timeout=args.timeout)
        return "the new client was served"

    try:
        line = await hostile(cp, run, args.timeout)
    finally:
        open_now = 0
        for s in socks:
            try:
                s.setblocking(False)
                if s.recv(1 << 16) != b"":
                    open_now += 1
            except BlockingIOError:
                open_now += 1
            except OSError:
                pass
            s.close()
    return f"{args.idle_conns} idle connections ({refused} refused at connect, {open_now} still open): {line}"


async def case_malformed(cp: ControlPlane, args: argparse.Namespace) -> str:
    async def run() -> str:
        async with channel(cp.address) as ch:
            out = []
            try:
                await method(ch, "Get", api_pb2.ObjectResponse)(b"\xff\xff\xff\xff", timeout=10)
                out.append("bytes: OK")
            except grpc.aio.AioRpcError as err:
                out.append("bytes: " + outcome(err))
            from google.protobuf import any_pb2

            bad = any_pb2.Any(type_url="type.googleapis.com/ketch.v1.Pod", value=b"\x0a\x05\xff")
            try:
                await method(ch, "Create", api_pb2.ObjectResponse)(api_pb2.CreateRequest(object=bad), timeout=10)
                out.append("Any: OK")
            except grpc.aio.AioRpcError as err:
                out.append("Any: " + outcome(err))
            return " | ".join(out)

    return await hostile(cp, run, args.timeout)


async def case_flood(cp: ControlPlane, args: argparse.Namespace) -> str:
    async def run() -> str:
        async with channel(cp.address) as ch:
            create = method(ch, "Create", api_pb2.ObjectResponse)

            async def one(i: int) -> str:
                ns = core_pb2.Namespace(api_version="v1", kind="Namespace")
                ns.metadata.name = f"flood-{i}"
                try:
                    await create(api_pb2.CreateRequest(object=any_of(ns)), timeout=args.timeout)
                except grpc.aio.AioRpcError as err:
                    return dict(err.trailing_metadata() or ()).get("ketch-reason", err.code().name)
                return "OK"

            results = await asyncio.gather(*(one(i) for i in range(args.flood)))
        counts: dict[str, int] = {}
        for r in results:
            counts[r] = counts.get(r, 0) + 1
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))

    return f"{args.flood} creates at once: " + await hostile(cp, run, args.timeout)


CASES: dict[str, Callable[[ControlPlane, argparse.Namespace], Awaitable[str]]] = {
    "patch-bomb": case_patch_bomb,
    "selector-watch": case_selector_watch,
    "selector-list": case_selector_list,
    "big-patch": case_big_patch,
    "grow-patch": case_grow_patch,
    "big-batch": case_big_batch,
    "slow-watchers": case_slow_watchers,
    "idle-conns": case_idle_conns,
    "malformed": case_malformed,
    "flood": case_flood,
}


async def run_case(name: str, args: argparse.Namespace, workdir: Path) -> str:
    nofile = 1024 if name == "idle-conns" else None
    cp = ControlPlane(workdir / name, nofile=nofile)
    try:
        await wait_ready(cp.address)
        return await CASES[name](cp, args)
    finally:
        cp.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("cases", nargs="*", metavar="CASE", help=f"one of: {', '.join(CASES)}")
    p.add_argument("--bomb-copies", type=int, default=20, help="copies in the JSON patch bomb (22 takes ~1 GB "
                                                                "from a build without limits)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a hostile request")
    p.add_argument("--watchers", type=int, default=500)
    p.add_argument("--writes", type=int, default=5000)
    p.add_argument("--burst", type=int, default=0, help="slow-watchers: write in Batches of this many creates")
    p.add_argument("--idle-conns", type=int, default=1100)
    p.add_argument("--flood", type=int, default=2000)
    p.add_argument("--workdir", default="", help="keep the control planes' data and logs here")
    args = p.parse_args()
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        p.error(f"unknown case {unknown[0]!r}")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process opens the idle connections
    import tempfile

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ketch-hostile-"))

    async def run_all() -> None:  # one event loop: grpc.aio does not move between loops
        for name in args.cases or list(CASES):
            line = await run_case(name, args, workdir)
            print(f"{name:<15} {line}", flush=True)

    asyncio.run(run_all())


if __name__ == "__main__":
    main()
