"""Rolling-update decisions, with and without surge, node by node."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from controlplane.controllers.daemonset import update
from controlplane.controllers.daemonset.update import NodeFit

from .builders import T0, make_ds, make_pod

RUN = NodeFit(True, True)
KEEP = NodeFit(False, True)


@dataclass(frozen=True)
class Case:
    name: str
    # setup: per node, the pods there as (name, "new"|"old", ready, deleting)
    pods: dict[str, list[tuple[str, str, bool, bool]]]
    max_unavailable: int | str | None = None
    max_surge: int | str | None = None
    min_ready_seconds: int = 0
    fits: dict[str, NodeFit] = field(default_factory=dict)  # default: RUN for every node in pods
    # expected
    delete: list[str] = field(default_factory=list)
    create: list[str] = field(default_factory=list)


def old(name: str, ready: bool = True, deleting: bool = False) -> tuple[str, str, bool, bool]:
    return (name, "old", ready, deleting)


def new(name: str, ready: bool = True, deleting: bool = False) -> tuple[str, str, bool, bool]:
    return (name, "new", ready, deleting)


CASES = [
    Case("without surge one old pod goes at a time",
         pods={"a": [old("pa")], "b": [old("pb")], "c": [old("pc")]}, delete=["pa"]),
    Case("a new pod that is not ready yet holds the rollout",
         pods={"a": [new("pa2", ready=False)], "b": [old("pb")], "c": [old("pc")]}),
    Case("a new ready pod lets the next old one go",
         pods={"a": [new("pa2")], "b": [old("pb")], "c": [old("pc")]}, delete=["pb"]),
    Case("old pods that are not available are replaced beyond maxUnavailable",
         pods={"a": [old("pa", ready=False)], "b": [old("pb", ready=False)], "c": [old("pc")]},
         delete=["pa", "pb"]),
    Case("a node that should run but has no pod counts as unavailable",
         pods={"a": [old("pa")], "b": [old("pb")]}, fits={"a": RUN, "b": RUN, "c": RUN}),
    Case("a node whose pod is being deleted counts as unavailable",
         pods={"a": [old("pa", deleting=True)], "b": [old("pb")], "c": [old("pc")]}),
    Case("maxUnavailable as a percentage rounds up",
         pods={n: [old(f"p{n}")] for n in "abcd"}, max_unavailable="30%", delete=["pa", "pb"]),
    Case("maxUnavailable 2 deletes two",
         pods={n: [old(f"p{n}")] for n in "abc"}, max_unavailable=2, delete=["pa", "pb"]),
    Case("maxUnavailable and maxSurge both 0 behave as maxUnavailable 1",
         pods={n: [old(f"p{n}")] for n in "ab"}, max_unavailable=0, max_surge=0, delete=["pa"]),
    Case("minReadySeconds: a new pod ready too briefly is still unavailable",
         pods={"a": [new("pa2")], "b": [old("pb")]}, min_ready_seconds=1000),
    Case("two pods of a kind on a node count unavailable and are left to manage",
         pods={"a": [old("pa"), old("pa2")], "b": [old("pb")]}),
    Case("surge starts a new pod beside an available old one",
         pods={n: [old(f"p{n}")] for n in "abc"}, max_unavailable=0, max_surge=1, create=["a"]),
    Case("surge waits while the surged pod is not available",
         pods={"a": [old("pa"), new("pa2", ready=False)], "b": [old("pb")]}, max_unavailable=0, max_surge=1),
    Case("surge deletes the old pod once the new one is available, and moves on",
         pods={"a": [old("pa"), new("pa2")], "b": [old("pb")]}, max_unavailable=0, max_surge=1,
         delete=["pa"], create=["b"]),
    Case("surge replaces an unavailable old pod at once",
         pods={"a": [old("pa", ready=False)], "b": [old("pb", ready=False)], "c": [old("pc")]},
         max_unavailable=0, max_surge=1, create=["a", "b", "c"]),
    Case("surge 100% starts every new pod",
         pods={n: [old(f"p{n}")] for n in "abc"}, max_unavailable=0, max_surge="100%", create=["a", "b", "c"]),
    Case("surge: an unavailable old pod on a node that no longer fits is deleted",
         pods={"a": [old("pa", ready=False)], "b": [new("pb")]}, max_unavailable=0, max_surge=1,
         fits={"a": KEEP, "b": RUN}, delete=["pa"]),
    Case("surge: an available old pod on a node that no longer fits stays while needed",
         pods={"a": [old("pa")], "b": [new("pb", ready=False)]}, max_unavailable=0, max_surge=1,
         fits={"a": KEEP, "b": RUN}),
    Case("surge: it goes once the others are available",
         pods={"a": [old("pa")], "b": [new("pb")]}, max_unavailable=0, max_surge=1,
         fits={"a": KEEP, "b": RUN}, delete=["pa"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rolling_update(case: Case) -> None:
    ds = make_ds(max_unavailable=case.max_unavailable, max_surge=case.max_surge,
                 min_ready_seconds=case.min_ready_seconds, generation=2)
    # New pods turned ready 10 s ago, old ones long ago.
    node_pods = {node: [make_pod(n, node, hash_=kind, ready=ready, deleting=deleting,
                                 ready_since=T0 - 10 if kind == "new" else T0 - 10_000)
                        for n, kind, ready, deleting in pods]
                 for node, pods in case.pods.items()}
    fits = case.fits or dict.fromkeys(case.pods, RUN)
    plan = update.rolling_update(ds, fits, node_pods, "new", 2, T0)
    assert plan.pods_to_delete == case.delete
    assert plan.nodes_to_create == case.create


@pytest.mark.parametrize(("max_unavailable", "max_surge", "desired", "expected"), [
    (None, None, 5, (0, 1, 5)),
    ("10%", None, 3, (0, 1, 3)),
    ("25%", None, 8, (0, 2, 8)),
    ("100%", None, 3, (0, 3, 3)),
    (0, "20%", 10, (2, 0, 10)),
    (0, 0, 4, (0, 1, 4)),
    (0, 0, 0, (0, 0, 0)),
], ids=["defaults", "10% of 3 rounds up", "25% of 8", "100%", "surge percent", "both zero", "no nodes"])
def test_desired_counts(max_unavailable: int | str | None, max_surge: int | str | None, desired: int,
                        expected: tuple[int, int, int]) -> None:
    ds = make_ds(max_unavailable=max_unavailable, max_surge=max_surge)
    fits = {f"n{i}": RUN for i in range(desired)}
    fits["off"] = NodeFit(False, False)
    assert update.desired_counts(ds, fits) == expected


def test_on_delete_has_no_budget() -> None:
    ds = make_ds(strategy="OnDelete")
    assert not update.is_rolling_update(ds)
    assert update.surge_count(ds, 10) == 0
    assert update.unavailable_count(ds, 10) == 0
    assert not update.allows_surge(ds)


@pytest.mark.parametrize(("surge", "allows"), [(None, False), (0, False), ("0%", False), (1, True), ("5%", True)])
def test_allows_surge(surge: int | str | None, allows: bool) -> None:
    assert update.allows_surge(make_ds(max_unavailable=0, max_surge=surge)) is allows
