"""Closing a recorder: its last events are written when the store answers, and dropped after a
deadline when it does not, so a process whose store is wedged can still exit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controlplane.apiserver.testing import TestAPIServer
from ketch.client import events
from ketch.client.clientset import Client
from ketch.client.events import EventRecorder
from ketch.v1 import core_pb2


class Unanswered:
    """A transport whose calls never return (a store that stopped answering)."""

    def __init__(self) -> None:
        self.calls = 0

    async def unary(self, method: str, request: Any, timeout: float | None = None) -> Any:
        self.calls += 1
        await asyncio.Event().wait()

    async def stream(self, method: str, request: Any) -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield None

    async def close(self) -> None:
        return None


def _pod() -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "p", "default", "uid-p"
    return pod


async def test_close_writes_the_events_still_queued() -> None:
    async with TestAPIServer(grpc=False) as api:
        assert api.local is not None
        rec = EventRecorder(api.local, "job-controller")
        rec.event(_pod(), "Normal", "Completed", "Job completed")
        await rec.close()  # before the recorder's own batching delay has passed
        written, _ = await api.local.list("Event", "default")
        assert [(e.reason, e.involved_object.name) for e in written] == [("Completed", "p")]


async def test_close_gives_up_on_a_store_that_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "CLOSE_DEADLINE", 0.3)
    transport = Unanswered()
    rec = EventRecorder(Client(transport), "job-controller")  # type: ignore[arg-type]
    rec.event(_pod(), "Normal", "Completed", "Job completed")
    started = time.monotonic()
    await asyncio.wait_for(rec.close(), timeout=10)
    assert transport.calls == 1  # it tried
    assert time.monotonic() - started >= 0.3
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    await asyncio.sleep(0)  # the abandoned write's cancellation is delivered
    assert not [t for t in leftover if not t.done()]
