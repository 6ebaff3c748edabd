"""The scheduler's search at scale, as kube-scheduler's: how many feasible nodes it looks for
(percentageOfNodesToScore's adaptive default), the NodeAffinity PreFilter that narrows a
DaemonSet pod to its node, and that the search rotates over the nodes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.base import ControllerContext
from controlplane.scheduler import predicates
from controlplane.scheduler import scheduler as scheduler_module
from controlplane.scheduler.predicates import NodeInfo
from controlplane.scheduler.scheduler import Scheduler
from ketch.client.informer import InformerFactory
from tests.conftest import eventually

from .test_predicates import make_node, make_pod


@pytest.mark.parametrize(("nodes", "want"), [
    (0, 0), (1, 1), (99, 99),      # below 100 nodes: every node
    (100, 100), (200, 100),        # 49 % of 200 is 98: at least 100
    (500, 230),                    # 50 - 500/125 = 46 %
    (1000, 420),                   # 42 %
    (5000, 500),                   # 10 %
    (6000, 300),                   # 50 - 48 = 2 %: the 5 % floor
])
def test_num_feasible_nodes_to_find_is_the_adaptive_default(nodes: int, want: int) -> None:
    assert predicates.num_feasible_nodes_to_find(nodes) == want


def test_a_set_percentage_overrides_the_adaptive_one() -> None:
    assert predicates.num_feasible_nodes_to_find(1000, 100) == 1000
    assert predicates.num_feasible_nodes_to_find(1000, 5) == 100  # still at least 100


def _name_affinity(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": list(t)} if t else
                              {"matchExpressions": [{"key": "a", "operator": "Exists"}]} for t in terms]}}}}


def _name_in(*names: str) -> dict[str, Any]:
    return {"key": "metadata.name", "operator": "In", "values": list(names)}


def test_node_names_from_affinity() -> None:
    assert predicates.node_names_from_affinity(make_pod()) is None
    assert predicates.node_names_from_affinity(make_pod({"nodeSelector": {"a": "b"}})) is None
    # A DaemonSet pod's affinity: one term naming one node.
    assert predicates.node_names_from_affinity(make_pod(_name_affinity([_name_in("n7")]))) == {"n7"}
    # Requirements of a term are ANDed, terms ORed.
    pod = make_pod(_name_affinity([_name_in("a", "b"), _name_in("b", "c")], [_name_in("d")]))
    assert predicates.node_names_from_affinity(pod) == {"b", "d"}
    # A term that names no node lets every node in.
    assert predicates.node_names_from_affinity(make_pod(_name_affinity([_name_in("a")], []))) is None
    not_in = {"key": "metadata.name", "operator": "NotIn", "values": ["a"]}
    assert predicates.node_names_from_affinity(make_pod(_name_affinity([not_in]))) is None


@pytest.mark.parametrize("node_kw", [
    {}, {"unschedulable": True}, {"ready": "False"}, {"cpu": "100m"}, {"pods": "0"},
    {"labels": {"zone": "b"}}, {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
])
@pytest.mark.parametrize("pod_spec", [
    {}, {"nodeSelector": {"zone": "b"}}, {"tolerations": [{"operator": "Exists"}]},
])
def test_fits_agrees_with_filter_reasons(node_kw: dict[str, Any], pod_spec: dict[str, Any]) -> None:
    info = predicates.node_info_of(make_node(**node_kw))
    pod = make_pod(pod_spec, requests={"cpu": "500m"})
    req = predicates.pod_requests(pod)
    constrained = predicates.has_node_constraints(pod)
    assert predicates.fits(pod, req, info, constrained) == (not predicates.filter_reasons(pod, req, info, constrained))


def _infos(n: int) -> dict[str, NodeInfo]:
    return {f"n{i:03d}": predicates.node_info_of(make_node(f"n{i:03d}")) for i in range(n)}


@pytest.fixture
async def scheduler(api: TestAPIServer) -> Scheduler:
    return Scheduler(ControllerContext(client=api.local, informers=InformerFactory(api.local)))


async def _counting_fits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = predicates.fits

    def fits(pod: Any, req: Any, info: NodeInfo, constrained: bool = True) -> bool:
        seen.append(info.name)
        return real(pod, req, info, constrained)

    monkeypatch.setattr(predicates, "fits", fits)
    return seen


async def test_search_stops_at_enough_feasible_nodes_and_rotates(scheduler: Scheduler,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    infos = _infos(500)
    seen = await _counting_fits(monkeypatch)
    chosen = []
    for i in range(3):
        pod = make_pod()
        pod.metadata.uid = f"u{i}"
        info, message = scheduler.place(pod, infos)
        assert info is not None and message == ""
        chosen.append(info.name)
    # 230 of 500 nodes per pod (46 %), each search starting where the last one stopped.
    assert len(seen) == 3 * 230
    assert seen[:230] == [f"n{i:03d}" for i in range(230)]
    assert seen[230:460] == [f"n{i:03d}" for i in range(230, 460)]
    assert seen[460:] == [f"n{i:03d}" for i in [*range(460, 500), *range(0, 190)]]
    assert len(set(chosen)) == 3  # still spread


async def test_daemonset_pod_is_tried_on_its_node_only(scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> None:
    infos = _infos(500)
    seen = await _counting_fits(monkeypatch)
    pod = make_pod(_name_affinity([_name_in("n321")]))
    pod.metadata.uid = "ds"
    info, _ = scheduler.place(pod, infos)
    assert info is not None and info.name == "n321"
    assert seen == ["n321"]


async def test_a_pod_that_fits_nowhere_reports_every_node(scheduler: Scheduler) -> None:
    infos = _infos(300)
    pod = make_pod(_name_affinity([_name_in("n005")]), requests={"cpu": "64"})
    pod.metadata.uid = "big"
    info, message = scheduler.place(pod, infos)
    assert info is None
    assert message == ("0/300 nodes are available: 1 Insufficient cpu, "
                       "299 node(s) didn't match Pod's node affinity/selector. preemption: 0/300 nodes are "
                       "available: 1 No preemption victims found for incoming pod, 299 Preemption is not helpful "
                       "for scheduling..")
    pod = make_pod(requests={"cpu": "64"})
    pod.metadata.uid = "big2"
    assert scheduler.place(pod, infos) == (None, "0/300 nodes are available: 300 Insufficient cpu. preemption: "
                                                 "0/300 nodes are available: 300 No preemption victims found for "
                                                 "incoming pod..")


async def test_pods_of_one_template_share_one_class_string(scheduler: Scheduler) -> None:
    """What placement depends on is kept per pod: a Job's thousands of pods keep one string of
    it and one record of their requests, and one uid string for the scheduler's maps, not a
    copy each."""
    pods = [make_pod(requests={"cpu": "500m"}), make_pod(requests={"cpu": "500m"}), make_pod(requests={"cpu": "2"})]
    for i, pod in enumerate(pods):
        pod.metadata.uid = f"uid-{i}"
    same, twin, bigger = (scheduler._class_of(p) for p in pods)
    assert twin is same and bigger != same
    infos = _infos(3)
    assert scheduler.place(pods[0], infos)[0] is not None
    # The uid the class map keys by is the one the request map keys by (each read of the
    # message's field makes a new string).
    uid = next(k for k in scheduler._classes if k == "uid-0")
    assert any(k is uid for k in scheduler._requests)
    # Their requests are one record too, and a different ask is its own.
    held = scheduler._requests
    assert held["uid-1"] is held["uid-0"] and held["uid-2"] is not held["uid-0"]
    assert held["uid-2"].req.milli_cpu == 2000 and held["uid-0"].non_zero.milli_cpu == 500


async def test_a_node_whose_pods_all_left_keeps_no_usage_record(scheduler: Scheduler) -> None:
    """A node's totals go with its last pod: after a big Job is deleted, nothing per node that
    the Job's pods made stays behind, and what is left counts exactly what is still bound."""
    pods = []
    for i in range(3):
        pod = make_pod(requests={"cpu": "500m"})
        pod.metadata.uid, pod.spec.node_name = f"uid-{i}", "n1" if i < 2 else "n2"
        scheduler.add_pod(pod)
        pods.append(pod)
    assert scheduler._usage["n1"].pod_count == 2 and scheduler._usage["n1"].requested.milli_cpu == 1000
    scheduler.delete_pod(pods[0])
    assert scheduler._usage["n1"].pod_count == 1 and scheduler._usage["n1"].requested.milli_cpu == 500
    scheduler.delete_pod(pods[1])
    scheduler.delete_pod(pods[2])
    assert scheduler._usage == {}
    scheduler.add_pod(pods[1])  # bound again: counted afresh
    assert scheduler._usage["n1"].pod_count == 1 and scheduler._usage["n1"].requested.milli_cpu == 500


async def test_parsed_nodes_are_let_go_after_a_quiet_spell(scheduler: Scheduler,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A round parses every node once and later rounds reuse it; once rounds stop, the parsed
    nodes go (a load's first round made them, and kept they would outlive it), and the next
    round parses again."""
    monkeypatch.setattr(scheduler_module, "NODE_CACHE_IDLE", 1.0)
    for i in range(3):
        scheduler.nodes.store.upsert(make_node(f"n{i}"))
    await scheduler.process([])
    first = scheduler._node_base["n0"]
    armed, due = scheduler._node_base_expiry, scheduler._node_base_due
    assert set(scheduler._node_base) == {"n0", "n1", "n2"} and armed is not None
    await asyncio.sleep(0.5)
    await scheduler.process([])
    assert scheduler._node_base["n0"] is first  # reused while rounds come
    assert scheduler._node_base_due > due and scheduler._node_base_expiry is armed  # and the countdown restarted
    await asyncio.sleep(due - asyncio.get_running_loop().time() + 0.05)
    assert scheduler._node_base["n0"] is first  # not let go at the first round's deadline (0.5 s later)
    await eventually(lambda: scheduler._node_base == {}, timeout=10, what="the parsed nodes let go")
    assert scheduler._node_base_expiry is None
    await scheduler.process([])
    assert set(scheduler._node_base) == {"n0", "n1", "n2"} and scheduler._node_base["n0"] is not first
