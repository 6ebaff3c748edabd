"""Fixtures shared by the agent's unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from nodeagent.runtime.process import ProcessRuntime


@pytest.fixture
async def runtime() -> AsyncIterator[ProcessRuntime]:
    """A process runtime with its SIGCHLD reaper installed on the test's loop."""
    rt = ProcessRuntime()
    rt.install()
    try:
        yield rt
    finally:
        rt.close()
