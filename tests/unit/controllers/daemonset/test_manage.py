"""manage (one pod per eligible node), the failed-pod back-off, and the status counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from controlplane.controllers.daemonset import manage as m
from controlplane.controllers.daemonset.update import NodeFit

from .builders import T0, make_ds, make_pod

RUN = NodeFit(True, True)
KEEP = NodeFit(False, True)
OFF = NodeFit(False, False)


@dataclass(frozen=True)
class PodSpec:
    name: str
    node: str
    hash_: str = "new"
    phase: str = "Running"
    ready: bool = True
    created: float = T0 - 100
    deleting: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    fits: dict[str, NodeFit]
    pods: list[PodSpec] = field(default_factory=list)
    max_surge: int | None = None
    # expected
    create: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


CASES = [
    Case("every eligible node without a pod gets one", fits={"a": RUN, "b": RUN, "c": OFF}, create=["a", "b"]),
    Case("a node with a pod gets none", fits={"a": RUN}, pods=[PodSpec("pa", "a")]),
    Case("a node being left keeps nothing", fits={"a": OFF}, pods=[PodSpec("pa", "a")], delete=["pa"]),
    Case("a node with an untolerated NoSchedule taint keeps its pod", fits={"a": KEEP}, pods=[PodSpec("pa", "a")]),
    Case("no pod is added to a node with a pod still terminating", fits={"a": RUN},
         pods=[PodSpec("pa", "a", deleting=True)]),
    Case("extra pods on a node go, the oldest stays", fits={"a": RUN},
         pods=[PodSpec("young", "a", created=T0 - 5), PodSpec("old", "a", created=T0 - 50),
               PodSpec("mid", "a", created=T0 - 20)], delete=["mid", "young"]),
    Case("a failed pod is deleted with a warning", fits={"a": RUN}, pods=[PodSpec("pa", "a", phase="Failed")],
         delete=["pa"], events=["FailedDaemonPod"]),
    Case("a succeeded pod is deleted", fits={"a": RUN}, pods=[PodSpec("pa", "a", phase="Succeeded")],
         delete=["pa"], events=["SucceededDaemonPod"]),
    Case("pods on a node that is gone are orphaned", fits={"a": RUN},
         pods=[PodSpec("pa", "a"), PodSpec("px", "gone")], orphaned=["px"]),
    Case("surge: a node with only a deleting pod gets a new one", fits={"a": RUN}, max_surge=1,
         pods=[PodSpec("pa", "a", deleting=True)], create=["a"]),
    Case("surge: old and new side by side while the new one is not ready", fits={"a": RUN}, max_surge=1,
         pods=[PodSpec("old", "a", hash_="old"), PodSpec("new", "a", ready=False, created=T0 - 1)]),
    Case("surge: the old one goes once the new one is available", fits={"a": RUN}, max_surge=1,
         pods=[PodSpec("old", "a", hash_="old"), PodSpec("new", "a", created=T0 - 1)], delete=["old"]),
    Case("surge: an old pod that is not ready goes at once", fits={"a": RUN}, max_surge=1,
         pods=[PodSpec("old", "a", hash_="old", ready=False), PodSpec("new", "a", ready=False)], delete=["old"]),
    Case("surge: a third pod goes", fits={"a": RUN}, max_surge=1,
         pods=[PodSpec("old", "a", hash_="old"), PodSpec("new", "a", ready=False, created=T0 - 2),
               PodSpec("new2", "a", ready=False, created=T0 - 1)], delete=["new2"]),
]


def _pods(specs: list[PodSpec]) -> dict[str, list]:
    out: dict[str, list] = {}
    for p in specs:
        out.setdefault(p.node, []).append(make_pod(p.name, p.node, hash_=p.hash_, phase=p.phase, ready=p.ready,
                                                   created=p.created, ready_since=p.created, deleting=p.deleting))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_manage(case: Case) -> None:
    ds = make_ds(max_unavailable=0 if case.max_surge else None, max_surge=case.max_surge)
    plan = m.manage(ds, case.fits, _pods(case.pods), "new", T0, m.failed_pods_backoff())
    assert plan.nodes_needing_pods == case.create
    assert sorted(p.metadata.name for p in plan.pods_to_delete) == sorted(case.delete)
    assert [p.metadata.name for p in plan.orphaned_pods] == case.orphaned
    assert [reason for _, reason, _ in plan.events] == case.events


def test_failed_pods_back_off_per_node() -> None:
    ds = make_ds()
    backoff = m.failed_pods_backoff()
    pods = _pods([PodSpec("pa", "a", phase="Failed")])
    fits = {"a": RUN}
    plan = m.manage(ds, fits, pods, "new", T0, backoff)
    assert [p.metadata.name for p in plan.pods_to_delete] == ["pa"]
    assert plan.events[0][2] == "Found failed daemon pod default/pa on node a, will try to kill it"
    # Failing again within a second: wait, and come back when the back-off ends.
    plan = m.manage(ds, fits, pods, "new", T0 + 0.5, backoff)
    assert plan.pods_to_delete == []
    assert plan.requeue_after == 1.0
    plan = m.manage(ds, fits, pods, "new", T0 + 1.5, backoff)
    assert [p.metadata.name for p in plan.pods_to_delete] == ["pa"]
    assert backoff.get(m.failed_pods_backoff_key(ds, "a")) == 2.0


def test_status_counts() -> None:
    ds = make_ds(min_ready_seconds=30, generation=2)
    fits = {"a": RUN, "b": RUN, "c": RUN, "d": OFF, "e": KEEP}
    node_pods = _pods([
        PodSpec("pa", "a", created=T0 - 100),                      # ready long enough, updated
        PodSpec("pb", "b", hash_="old", created=T0 - 10),          # ready but not for 30 s, old
        PodSpec("pd", "d"),                                        # misscheduled
        PodSpec("pe", "e"),                                        # misscheduled (kept, not desired)
    ])
    counts = m.compute_status(ds, fits, node_pods, "new", 2, T0)
    assert counts == m.StatusCounts(
        desired_number_scheduled=3, current_number_scheduled=2, number_misscheduled=2, number_ready=2,
        updated_number_scheduled=1, number_available=1, number_unavailable=2)
    assert m.status_differs(ds, counts, 2)
    m.apply_status(ds.status, counts, 2)
    assert not m.status_differs(ds, counts, 2)
    assert m.status_differs(ds, counts, 3)
