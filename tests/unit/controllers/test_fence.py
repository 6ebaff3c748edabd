"""The fence between a leader's controllers and the API: once fenced, no call leaves; a write
already sent is finished even if its caller is cancelled, and drain() returns only after it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.controllers.fence import DeadlineTransport, FencedTransport
from ketch.api import errors


class SlowTransport:
    """Answers each call when `release` is set; records the calls answered."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.answered: list[str] = []

    async def unary(self, method: str, request: Any, timeout: float | None = None) -> Any:
        await self.release.wait()
        self.answered.append(method)
        return method

    async def stream(self, method: str, request: Any) -> Any:
        for i in range(3):
            yield i

    async def close(self) -> None:
        return None


async def test_a_fenced_transport_refuses_new_calls_and_drains_the_ones_in_flight() -> None:
    inner = SlowTransport()
    fence = FencedTransport(inner)
    caller = asyncio.create_task(fence.unary("Update", None))
    await asyncio.sleep(0)
    assert fence.in_flight == 1
    fence.fence()
    caller.cancel()  # the controller is cancelled mid-write: the write must still finish
    with pytest.raises(errors.Unavailable, match="Create refused: this replica is no longer the leader"):
        await fence.unary("Create", None)
    with pytest.raises(errors.Unavailable):
        async for _ in fence.stream("WatchBatched", None):
            pass
    drained = asyncio.create_task(fence.drain())
    await asyncio.sleep(0.05)
    assert not drained.done() and inner.answered == []
    inner.release.set()
    await asyncio.wait_for(drained, 5)
    assert inner.answered == ["Update"] and fence.in_flight == 0
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_an_open_fence_passes_calls_and_streams_through() -> None:
    inner = SlowTransport()
    inner.release.set()
    fence = FencedTransport(inner)
    assert await fence.unary("Get", None) == "Get"
    assert [i async for i in fence.stream("Watch", None)] == [0, 1, 2]


async def test_a_deadline_transport_bounds_every_call() -> None:
    inner = SlowTransport()
    with pytest.raises(errors.Timeout, match=r"Update: no answer within 0\.1s"):
        await DeadlineTransport(inner, 0.1).unary("Update", None)
