"""`ketch exec` on the agent: a command run beside a running container, as that container.

The command gets what the container's exec probes and hooks get (its user and groups as the
agent confines it, its working dir, its environment including the resolved ConfigMap and Secret
variables) and joins the container's cgroup, so it counts against the container's limits. There
is no stdin and no tty. stdout and stderr come back on pipes of their own, read CHUNK bytes at a
time (the size log chunks have): a reader that falls behind fills the pipe and the command waits
on it, so the agent never holds more than a few chunks per exec. When the caller goes away the
command is killed, with its process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ketch.v1 import api_pb2

from .probes import ExecContext
from .runtime.interface import ExitInfo, StartError
from .runtime.logs import CHUNK
from .runtime.process import ProcessRuntime

# After the command exits, how long output still in flight (a pipe a leftover process holds open)
# is waited for before the stream ends.
DRAIN_AFTER_EXIT = 2.0
NOT_FOUND_EXIT = 127
CANNOT_RUN_EXIT = 126


@dataclass
class ExecTarget:
    """Where a command runs: the container's exec context and its cgroup's procs files."""

    ctx: ExecContext
    cgroup_procs: list[str] = field(default_factory=list)


def exit_code(info: ExitInfo) -> int:
    if info.signal:
        return 128 + info.signal
    return info.exit_code if info.exit_code is not None else 1


async def _pump(fd: int, stream: str, out: asyncio.Queue[tuple[str, bytes | None]]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=CHUNK, loop=loop)
    pipe = os.fdopen(fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    try:
        while data := await reader.read(CHUNK):
            await out.put((stream, data))
        await out.put((stream, None))
    finally:
        transport.close()


async def run(runtime: ProcessRuntime, target: ExecTarget, argv: list[str]) -> AsyncIterator[api_pb2.ExecOutput]:
    """Run argv as the target container; its output as it comes, then its exit code."""
    ctx = target.ctx
    if ctx.refused:
        yield api_pb2.ExecOutput(stderr=f"{ctx.refused}\n".encode(), exit_code=CANNOT_RUN_EXIT)
        return
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        handle = runtime.spawn(argv, ctx.cwd, ctx.env, out_w, ctx.confinement, target.cgroup_procs, stderr=err_w)
    except StartError as err:
        for fd in (out_r, err_r):
            os.close(fd)
        code = NOT_FOUND_EXIT if "not found" in str(err) or "No such file" in str(err) else CANNOT_RUN_EXIT
        yield api_pb2.ExecOutput(stderr=f"{err}\n".encode(), exit_code=code)
        return
    finally:
        os.close(out_w)
        os.close(err_w)
    queue: asyncio.Queue[tuple[str, bytes | None]] = asyncio.Queue(maxsize=4)
    pumps = [asyncio.ensure_future(_pump(out_r, "stdout", queue)), asyncio.ensure_future(_pump(err_r, "stderr", queue))]
    getter: asyncio.Future[tuple[str, bytes | None]] | None = None
    exited = asyncio.ensure_future(asyncio.shield(handle.exited))
    try:
        open_streams = 2
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        while open_streams:
            if getter is None:
                getter = asyncio.ensure_future(queue.get())
            if exited.done() and deadline is None:
                deadline = loop.time() + DRAIN_AFTER_EXIT
            waiting: set[asyncio.Future[object]] = {getter} if deadline is not None else {getter, exited}  # type: ignore[arg-type]
            timeout = None if deadline is None else max(deadline - loop.time(), 0.0)
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                stream, data = getter.result()
                getter = None
                if data is None:
                    open_streams -= 1
                elif stream == "stdout":
                    yield api_pb2.ExecOutput(stdout=data)
                else:
                    yield api_pb2.ExecOutput(stderr=data)
            elif deadline is not None and loop.time() >= deadline:
                break
        info = await exited
        yield api_pb2.ExecOutput(exit_code=exit_code(info))
    finally:
        if getter is not None:
            getter.cancel()
        exited.cancel()
        for pump in pumps:
            pump.cancel()
        if not handle.exited.done():
            await runtime.stop(handle, 0)
        for pump in pumps:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
