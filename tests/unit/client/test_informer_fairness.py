"""An informer applying a long burst of watch events lets the other tasks of its event loop run
meanwhile: in the control plane the informers share the loop with the API server, whose clients
would otherwise wait for the whole burst (thousands of pod events when a big Job starts)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ketch.client.clientset import WatchEvent
from ketch.client.informer import Informer
from ketch.v1 import core_pb2
from tests.conftest import eventually


class BurstClient:
    """Lists nothing, then delivers `n` ADDED events at once (one watch batch), then waits."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def list(self, *args: Any, **kwargs: Any) -> tuple[list[Any], str]:
        return [], "1"

    async def watch(self, *args: Any, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        for i in range(self.n):
            node = core_pb2.Node()
            node.metadata.name = f"n{i}"
            yield WatchEvent("ADDED", node, str(i + 2))
        await asyncio.Event().wait()


async def test_a_burst_of_events_does_not_hold_the_loop() -> None:
    inf: Informer[Any] = Informer(BurstClient(1000), "Node")  # type: ignore[arg-type]
    seen: list[int] = []
    stop = asyncio.Event()

    async def other_task() -> None:  # what another client of the loop sees, turn by turn
        while not stop.is_set():
            seen.append(len(inf.store.items))
            await asyncio.sleep(0)

    other = asyncio.create_task(other_task())
    inf.start()
    try:
        await eventually(lambda: len(inf.store.items) == 1000, 5, what="every event applied")
    finally:
        stop.set()
        await other
        await inf.stop()
    assert any(0 < n < 1000 for n in seen), "the other task never ran while the burst was applied"
