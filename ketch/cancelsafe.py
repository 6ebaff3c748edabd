"""`wait_for` that never loses a cancellation.

Python 3.11's `asyncio.wait_for` returns the awaited result when the task is cancelled in the same
loop turn the awaited thing finishes (CPython gh-86296, fixed in 3.12): the cancel is dropped, and
a loop around it (a lease renewer, a pod worker, a retry back-off) keeps running, so whoever
cancelled it and waits for it to end waits forever. `asyncio.timeout` delivers the cancel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """`asyncio.wait_for`'s contract (TimeoutError past `timeout`, None for no limit)."""
    async with asyncio.timeout(timeout):
        return await aw
