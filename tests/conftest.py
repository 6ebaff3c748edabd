"""Shared fixtures: an in-process API server on a free loopback port, and helpers to wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from controlplane.apiserver.testing import TestAPIServer


@pytest.fixture
async def api() -> AsyncIterator[TestAPIServer]:
    async with TestAPIServer() as server:
        yield server


async def eventually(predicate: Callable[[], Awaitable[Any] | Any], timeout: float = 10.0,
                     interval: float = 0.05, what: str = "the condition") -> Any:
    """Poll predicate (sync or async) until it returns something truthy, or fail after timeout."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
        except AssertionError as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}") from last_exc
        await asyncio.sleep(interval)
