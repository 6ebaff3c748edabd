"""A container's stdin pipe as the agent holds it: what an attach writes arrives in order; without
stdinOnce the reader sees no end of file between attaches; with it, the first attach's end (its
input's end or its caller going away) is the reader's end of file, and later attaches write nothing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from nodeagent import stdins


async def _chunks(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        yield item


def _read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return b"<nothing yet>"


async def test_without_stdin_once_the_pipe_stays_open_across_attaches() -> None:
    r, stdin = stdins.open_pipe(once=False)
    try:
        await stdin.attach(_chunks(b"one\n"))
        await stdin.attach(_chunks(b"two", b"\n"))
        assert not stdin.closed
        assert _read_available(r) == b"one\ntwo\n"
        assert _read_available(r) == b"<nothing yet>"  # open: no end of file
        stdin.close()  # the run exited
        assert _read_available(r) == b""
    finally:
        os.close(r)


async def test_stdin_once_closes_after_the_first_attach_and_refuses_nothing_later() -> None:
    r, stdin = stdins.open_pipe(once=True)
    try:
        await stdin.attach(_chunks(b"only\n"))
        assert stdin.closed
        await stdin.attach(_chunks(b"late\n"))  # returns at once, writes nothing
        assert _read_available(r) == b"only\n"
        assert _read_available(r) == b""  # end of file
    finally:
        os.close(r)


async def test_stdin_once_closes_when_the_caller_goes_away() -> None:
    r, stdin = stdins.open_pipe(once=True)
    sent = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        yield b"partial\n"
        sent.set()
        await asyncio.Event().wait()
        yield b""

    try:
        task = asyncio.ensure_future(stdin.attach(endless()))
        await asyncio.wait_for(sent.wait(), 10)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert stdin.closed
        assert _read_available(r) == b"partial\n"
        assert _read_available(r) == b""
    finally:
        os.close(r)
