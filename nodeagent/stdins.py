"""Containers' standard input (`stdin: true`): a pipe whose write end the agent holds, fed by Attach.

A container with stdin: true reads a pipe rather than /dev/null, as a CRI runtime gives it one.
The agent keeps the write end open, so the container waits for input rather than reading end of
file at once. Each attach writes the caller's bytes into the pipe as the container reads them
(a container that does not read holds the caller back, not the agent's memory); several attaches
may write at once, as Kubernetes' do. With stdinOnce the pipe is closed when the first attach ends
(its input's end, or the caller going away): the container reads end of file, as the kubelet/CRI
do. It is also closed when the run exits; a restarted container gets a new pipe. An agent that
restarts loses the write end: an adopted container reads end of file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator


class ContainerStdin:
    """The agent's end of one container run's stdin pipe."""

    def __init__(self, fd: int, once: bool) -> None:
        self._fd = fd
        self.once = once
        self._closed = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """The container reads end of file (once every attach writing to it has let go)."""
        if not self._closed.is_set():
            self._closed.set()
            with contextlib.suppress(OSError):
                os.close(self._fd)

    async def attach(self, chunks: AsyncIterator[bytes]) -> None:
        """Write chunks to the container's stdin until they end, the pipe closes (the container
        exited, or stdinOnce and an earlier attach ended) or the caller goes away."""
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(os.dup(self._fd), "wb", buffering=0)  # its own fd: closing it keeps ours
        transport, protocol = await loop.connect_write_pipe(_WriteProtocol, pipe)
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        feed = asyncio.ensure_future(_write_all(writer, chunks))
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait({feed, closed}, return_when=asyncio.FIRST_COMPLETED)
            if feed in done:  # the input ended: what is buffered goes, then this fd closes
                transport.close()
                await protocol.lost
        finally:
            for task in (feed, closed):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if not transport.is_closing():  # the caller went away, or the stdin closed: drop the rest
                transport.abort()
            if self.once:
                self.close()


async def _write_all(writer: asyncio.StreamWriter, chunks: AsyncIterator[bytes]) -> None:
    try:
        async for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
    except (BrokenPipeError, ConnectionResetError):  # the container closed its stdin or exited
        pass


class _WriteProtocol(asyncio.streams.FlowControlMixin, asyncio.Protocol):
    """A write pipe's protocol with the flow control StreamWriter.drain waits on; lost: its fd
    is closed (what was written has reached the pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)


def open_pipe(once: bool) -> tuple[int, ContainerStdin]:
    """(the read end for the container, the agent's end). Both are close-on-exec: the spawn
    gives the read end to the container as its fd 0 only."""
    r, w = os.pipe()
    return r, ContainerStdin(w, once)
