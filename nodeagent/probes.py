"""Liveness, readiness and startup probes: exec, httpGet, tcpSocket and grpc, with Kubernetes'
fields and defaults (initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1,
successThreshold 1, failureThreshold 3).

One `ProbeWorker` per probe per container run; it reports each change of its result to the pod
worker (`on_result(kind, ok, message)`), which turns them into `ready` / `started` and, for
liveness and startup failures, into a restart. Initial results are Kubernetes': readiness
starts as failure (not ready), liveness as success; startup gates the other two.

Exec probes run through the process runtime (its one reaper sees every child). httpGet and
tcpSocket without a host go to 127.0.0.1: pods share the node's network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from ketch.api import intstr
from ketch.cancelsafe import wait_for
from ketch.v1 import core_pb2

from .runtime.confine import Confinement
from .runtime.interface import StartError
from .runtime.process import ProcessRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProbeTiming:
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int


def timing(probe: core_pb2.Probe, kind: str) -> ProbeTiming:
    """The probe's timing with Kubernetes' defaults (0 means unset in the proto)."""
    success = probe.success_threshold or 1
    if kind != "readiness":
        success = 1
    return ProbeTiming(
        initial_delay=max(probe.initial_delay_seconds, 0),
        period=max(probe.period_seconds or 10, 1),
        timeout=max(probe.timeout_seconds or 1, 1),
        success_threshold=max(success, 1),
        failure_threshold=max(probe.failure_threshold or 3, 1),
    )


def has_handler(probe: core_pb2.Probe) -> bool:
    return any(probe.HasField(f) for f in ("exec", "http_get", "tcp_socket", "grpc"))


def resolve_port(value: object, container: core_pb2.Container) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    port = intstr.get(value) if not isinstance(value, int | str) else value  # type: ignore[arg-type]
    if isinstance(port, int):
        return port
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        for p in container.ports:
            fields = p.fields
            if "name" in fields and fields["name"].string_value == port:
                return int(fields["containerPort"].number_value)
        raise ValueError(f'port "{port}" is not a named port of container "{container.name}"')
    raise ValueError("probe has no port")


@dataclass(slots=True)
class ExecContext:
    """Where an exec probe runs: as the container, with its environment and working dir."""

    env: dict[str, str]
    cwd: str
    confinement: Confinement | None = None
    refused: str = ""  # why the container's confinement cannot be made (nothing is run)


async def _exec_probe(runtime: ProcessRuntime, argv: list[str], ctx: ExecContext, timeout: float) -> tuple[bool, str]:
    if ctx.refused:
        return False, ctx.refused
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        handle = runtime.spawn(argv, ctx.cwd, ctx.env, devnull, ctx.confinement)
    except StartError as err:
        return False, str(err)
    finally:
        os.close(devnull)
    try:
        info = await wait_for(asyncio.shield(handle.exited), timeout)
    except TimeoutError:
        await runtime.stop(handle, 0)
        return False, f"command timed out after {timeout:g}s"
    if info.exit_code == 0:
        return True, ""
    return False, f"command {argv!r} exited with {info.exit_code}"


async def _http_probe(action: core_pb2.HTTPGetAction, container: core_pb2.Container,
                      timeout: float) -> tuple[bool, str]:
    host = action.host or "127.0.0.1"
    port = resolve_port(action.port, container)
    path = action.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    use_tls = action.scheme.upper() == "HTTPS"
    ctx = None
    if use_tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    headers = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.31", "Accept": "*/*", "Connection": "close"}
    for h in action.http_headers:
        headers[h.name] = h.value
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
            writer.write(request.encode())
            await writer.drain()
            status_line = await reader.readline()
    except TimeoutError:
        return False, f'Get "http://{host}:{port}{path}": context deadline exceeded'
    except OSError as err:
        return False, f'Get "http://{host}:{port}{path}": {err.strerror or err}'
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    parts = status_line.decode("latin-1").split()
    try:
        code = int(parts[1])
    except (IndexError, ValueError):
        return False, "malformed HTTP response"
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


async def _tcp_probe(action: core_pb2.TCPSocketAction, container: core_pb2.Container,
                     timeout: float) -> tuple[bool, str]:
    host = action.host or "127.0.0.1"
    port = resolve_port(action.port, container)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return False, f"dial tcp {host}:{port}: i/o timeout"
    except OSError as err:
        return False, f"dial tcp {host}:{port}: {err.strerror or err}"
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True, ""


async def _grpc_probe(action: core_pb2.GRPCAction, timeout: float) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target = f"127.0.0.1:{action.port}"
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=action.service), timeout=timeout)
        except grpc.aio.AioRpcError as err:
            return False, f"failed to connect service {target!r} within {timeout:g}s: {err.details()}"
    if resp.status == health_pb2.HealthCheckResponse.SERVING:
        return True, ""
    return False, f"service unhealthy (responded with {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)})"


async def run_once(runtime: ProcessRuntime, probe: core_pb2.Probe, container: core_pb2.Container,
                   ctx: ExecContext, timeout: float) -> tuple[bool, str]:
    """One probe attempt: (success, message)."""
    try:
        if probe.HasField("exec"):
            return await _exec_probe(runtime, list(probe.exec.command), ctx, timeout)
        if probe.HasField("http_get"):
            return await _http_probe(probe.http_get, container, timeout)
        if probe.HasField("tcp_socket"):
            return await _tcp_probe(probe.tcp_socket, container, timeout)
        if probe.HasField("grpc"):
            return await _grpc_probe(probe.grpc, timeout)
    except ValueError as err:
        return False, str(err)
    return True, ""


class ProbeWorker:
    """Runs one probe periodically and reports changes of its thresholded result."""

    def __init__(self, kind: str, probe: core_pb2.Probe, container: core_pb2.Container, ctx: ExecContext,
                 runtime: ProcessRuntime, on_result: Callable[[str, bool, str], None]) -> None:
        self.kind = kind
        self.probe = probe
        self.container = container
        self.ctx = ctx
        self.runtime = runtime
        self.on_result = on_result
        self.timing = timing(probe, kind)
        # Kubernetes' initial results: liveness passes, readiness and startup have not yet.
        self.result = kind == "liveness"
        self._successes = 0
        self._failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"probe-{self.kind}-{self.container.name}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        t = self.timing
        if t.initial_delay:
            await asyncio.sleep(t.initial_delay)
        while True:
            ok, message = await run_once(self.runtime, self.probe, self.container, self.ctx, t.timeout)
            if ok:
                self._successes += 1
                self._failures = 0
                if not self.result and self._successes >= t.success_threshold:
                    self.result = True
                    self.on_result(self.kind, True, "")
                    if self.kind == "startup":
                        return
            else:
                self._failures += 1
                self._successes = 0
                if self._failures >= t.failure_threshold and (self.result or self.kind != "readiness"):
                    self.result = False
                    self._failures = 0
                    self.on_result(self.kind, False, message)
                    if self.kind in ("liveness", "startup"):
                        return
            await asyncio.sleep(t.period)
