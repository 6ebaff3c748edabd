"""Transports for work that must stop at a known moment: a fence, and a deadline per call.

A leader's controllers reach the API through a `FencedTransport`. When leadership ends, `fence()`
refuses every new call at once, and `drain()` waits for the calls already sent: a write in
flight is never abandoned by cancelling its caller (it runs shielded, in its own task), so when
`drain()` returns, every write this leader sent has been answered and none can follow. That is
what lets another replica start the controllers without two writers racing.

`DeadlineTransport` bounds every unary call by a timeout, so the elector's own Lease calls can
never hang past the renew deadline (the in-process transport has no timeout of its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message

from ketch.api import errors
from ketch.cancelsafe import wait_for
from ketch.client.transport import Transport


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark an abandoned call's outcome as seen (its caller may have been cancelled)."""
    if not task.cancelled():
        task.exception()


class FencedTransport:
    """Passes calls to `inner` until fenced; then refuses them with ServiceUnavailable."""

    def __init__(self, inner: Transport, reason: str = "this replica is no longer the leader") -> None:
        self.inner = inner
        self.reason = reason
        self.fenced = False
        self._in_flight: set[asyncio.Task[Any]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def _check(self, method: str) -> None:
        if self.fenced:
            raise errors.Unavailable(f"{method} refused: {self.reason}")

    async def unary(self, method: str, request: Message, timeout: float | None = None) -> Any:
        self._check(method)
        task = asyncio.ensure_future(self.inner.unary(method, request, timeout))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def stream(self, method: str, request: Message,
                     inputs: AsyncIterator[Message] | None = None) -> AsyncIterator[Any]:
        self._check(method)
        # (inputs passed on only when given: a transport of a server stream need not take them)
        items = self.inner.stream(method, request) if inputs is None else self.inner.stream(method, request, inputs)
        async for item in items:
            if self.fenced:
                return
            yield item

    def fence(self) -> None:
        """Refuse every call from now on (the ones in flight finish: see drain)."""
        self.fenced = True

    async def drain(self) -> None:
        """Wait until every call sent before the fence has been answered."""
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def close(self) -> None:
        """The inner transport is shared (the control plane's own): it is not closed here."""
        self.fence()
        await self.drain()


class DeadlineTransport:
    """Bounds every unary call to `timeout` seconds (Timeout past it); streams pass through."""

    def __init__(self, inner: Transport, timeout: float) -> None:
        self.inner = inner
        self.timeout = timeout

    async def unary(self, method: str, request: Message, timeout: float | None = None) -> Any:
        limit = self.timeout if timeout is None else min(timeout, self.timeout)
        try:
            return await wait_for(self.inner.unary(method, request, limit), limit)
        except TimeoutError:
            raise errors.Timeout(f"{method}: no answer within {limit:g}s") from None

    def stream(self, method: str, request: Message,
               inputs: AsyncIterator[Message] | None = None) -> AsyncIterator[Any]:
        return self.inner.stream(method, request) if inputs is None else self.inner.stream(method, request, inputs)

    async def close(self) -> None:
        await self.inner.close()
