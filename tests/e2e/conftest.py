from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Cluster


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator:
    """Make clusters (each with its own dir and port); all are stopped after the test."""
    made: list[Cluster] = []

    def make(cp_flags: list[str] | None = None) -> Cluster:
        c = Cluster(tmp_path / f"cluster-{len(made)}", cp_flags)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def cluster(cluster_factory) -> Cluster:  # type: ignore[no-untyped-def]
    """A control plane and one agent, node-a, with default flags (a test module that needs other
    flags defines its own `cluster`)."""
    c = cluster_factory()
    c.start_controlplane()
    c.start_agent("node-a")
    return c


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
