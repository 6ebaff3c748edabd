"""`ketch exec` on the agent: a command run beside a running container, as that container.

The command gets what the container's exec probes and hooks get (its user and groups as the
agent confines it, its working dir, its environment including the resolved ConfigMap and Secret
variables) and joins the container's cgroup, so it counts against the container's limits. There
is no tty. stdin is /dev/null, or with `-i` a pipe fed from the caller's stream, written as the
command reads it (a command that does not read holds the caller back, not the agent's memory) and
closed when the caller's stream ends or the command exits. stdout and stderr come back on pipes
of their own, read CHUNK bytes at a time (the size log chunks have): a reader that falls behind
fills the pipe and the command waits on it, so the agent never holds more than a few chunks per
exec. When the caller goes away the
command is killed, with its process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import BinaryIO

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


async def _feed(pipe: BinaryIO, chunks: AsyncIterator[bytes]) -> None:
    """Write chunks to the pipe as the reader takes them, then close it (the reader's EOF). A
    reader that is gone (the command closed stdin or exited) ends it quietly."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(lambda: _WriteProtocol(), pipe)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    try:
        async for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        transport.close()


class _WriteProtocol(asyncio.streams.FlowControlMixin, asyncio.Protocol):
    """A write pipe's protocol with the flow control StreamWriter.drain waits on."""


async def run(runtime: ProcessRuntime, target: ExecTarget, argv: list[str],
              stdin: AsyncIterator[bytes] | None = None) -> AsyncIterator[api_pb2.ExecOutput]:
    """Run argv as the target container; its output as it comes, then its exit code. stdin: what
    the command reads (then end of file); None: /dev/null."""
    ctx = target.ctx
    if ctx.refused:
        yield api_pb2.ExecOutput(stderr=f"{ctx.refused}\n".encode(), exit_code=CANNOT_RUN_EXIT)
        return
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if stdin is not None else (None, None)
    try:
        handle = runtime.spawn(argv, ctx.cwd, ctx.env, out_w, ctx.confinement, target.cgroup_procs, stderr=err_w,
                               stdin=in_r)
    except StartError as err:
        for fd in (out_r, err_r, in_w):
            if fd is not None:
                os.close(fd)
        code = NOT_FOUND_EXIT if "not found" in str(err) or "No such file" in str(err) else CANNOT_RUN_EXIT
        yield api_pb2.ExecOutput(stderr=f"{err}\n".encode(), exit_code=code)
        return
    finally:
        for fd in (out_w, err_w, in_r):
            if fd is not None:
                os.close(fd)
    pipe = os.fdopen(in_w, "wb", buffering=0) if in_w is not None else None
    feeder = asyncio.ensure_future(_feed(pipe, stdin)) if stdin is not None and pipe is not None else None
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
        if feeder is not None:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder
        if pipe is not None:
            pipe.close()  # (if the feeder never ran)
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
