"""A task cancelled in the loop turn its timed wait ends is cancelled: the code after the wait does
not run (3.11's asyncio.wait_for returned the result instead, and a renew loop ran on forever)."""

from __future__ import annotations

import asyncio

import pytest

from ketch.cancelsafe import wait_for


async def test_a_cancel_in_the_turn_the_wait_ends_is_delivered() -> None:
    ready = asyncio.Event()
    went_on = False

    async def loop_body() -> None:
        nonlocal went_on
        await wait_for(ready.wait(), 10)
        went_on = True

    task = asyncio.create_task(loop_body())
    await asyncio.sleep(0)  # the task now waits
    ready.set()  # the wait ends in the next turn...
    task.cancel()  # ...and so does the cancel
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not went_on


async def test_past_the_timeout_it_raises_timeout_error_and_without_one_it_waits() -> None:
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.Event().wait(), 0.01)
    assert await wait_for(asyncio.sleep(0, "done"), None) == "done"
