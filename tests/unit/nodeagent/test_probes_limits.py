"""Probe handlers and defaults; the memory watchdog that stands in for cgroups."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from ketch.v1 import core_pb2
from nodeagent.limits.watchdog import MemoryWatchdog
from nodeagent.probes import ExecContext, ProbeWorker, run_once, timing
from nodeagent.runtime.interface import LaunchSpec
from nodeagent.runtime.process import ProcessRuntime


def test_probe_defaults() -> None:
    t = timing(core_pb2.Probe(), "readiness")
    assert (t.initial_delay, t.period, t.timeout, t.success_threshold, t.failure_threshold) == (0, 10, 1, 1, 3)
    t = timing(core_pb2.Probe(success_threshold=3, period_seconds=2), "liveness")
    assert t.success_threshold == 1 and t.period == 2
    assert timing(core_pb2.Probe(success_threshold=3), "readiness").success_threshold == 3


async def _http_server(status: int) -> tuple[asyncio.base_events.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(("status", "ok"), [(200, True), (302, True), (500, False)])
async def test_http_get(runtime: ProcessRuntime, status: int, ok: bool) -> None:
    server, port = await _http_server(status)
    try:
        probe = core_pb2.Probe()
        probe.http_get.path = "/healthz"
        probe.http_get.port.number_value = port
        got, message = await run_once(runtime, probe, core_pb2.Container(name="c"), ExecContext({}, "/"), 2)
        assert got is ok, message
    finally:
        server.close()
        await server.wait_closed()


async def test_http_get_named_port_and_tcp(runtime: ProcessRuntime) -> None:
    server, port = await _http_server(200)
    c = core_pb2.Container(name="c")
    c.ports.add().update({"name": "web", "containerPort": port})
    try:
        probe = core_pb2.Probe()
        probe.http_get.port.string_value = "web"
        assert (await run_once(runtime, probe, c, ExecContext({}, "/"), 2))[0]
        tcp = core_pb2.Probe()
        tcp.tcp_socket.port.number_value = port
        assert (await run_once(runtime, tcp, c, ExecContext({}, "/"), 2))[0]
    finally:
        server.close()
        await server.wait_closed()
    closed = core_pb2.Probe()
    closed.tcp_socket.port.number_value = port
    ok, message = await run_once(runtime, closed, c, ExecContext({}, "/"), 2)
    assert not ok and "dial tcp" in message


async def test_exec_probe_and_timeout(runtime: ProcessRuntime, tmp_path: Path) -> None:
    ctx = ExecContext({"PATH": os.environ.get("PATH", "/bin")}, str(tmp_path))
    c = core_pb2.Container(name="c")
    good = core_pb2.Probe()
    good.exec.command.extend(["true"])
    assert (await run_once(runtime, good, c, ctx, 2))[0]
    slow = core_pb2.Probe()
    slow.exec.command.extend(["sleep", "5"])
    ok, message = await run_once(runtime, slow, c, ctx, 0.2)
    assert not ok and "timed out" in message


async def test_liveness_worker_reports_after_failure_threshold(runtime: ProcessRuntime, tmp_path: Path) -> None:
    probe = core_pb2.Probe(period_seconds=1, failure_threshold=2)
    probe.exec.command.extend(["false"])
    results: list[tuple[str, bool]] = []
    done = asyncio.Event()

    def on_result(kind: str, ok: bool, message: str) -> None:
        results.append((kind, ok))
        done.set()

    worker = ProbeWorker("liveness", probe, core_pb2.Container(name="c"), ExecContext({}, str(tmp_path)),
                         runtime, on_result)
    worker.start()
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        worker.stop()
    assert results == [("liveness", False)]


async def test_watchdog_kills_a_session_over_its_limit(runtime: ProcessRuntime, tmp_path: Path) -> None:
    hog = "import time\nx = []\nwhile True:\n    x.append(bytearray(16 * 1024 * 1024))\n    time.sleep(0.02)\n"
    h = runtime.start(LaunchSpec([sys.executable, "-c", hog], dict(os.environ), str(tmp_path),
                                 str(tmp_path / "log")))
    dog = MemoryWatchdog(interval=0.05)
    dog.watch(h.pid, 64 * 1024 * 1024)
    dog.start()
    try:
        info = await asyncio.wait_for(h.exited, 20)
    finally:
        await dog.stop()
    assert info.exit_code == 137
    assert dog.unwatch(h.pid) is True
