"""Node lifecycle decisions: heartbeat bookkeeping on the controller's clock, Unknown
conditions, condition taints, full disruption, and taint-based eviction times."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from controlplane.controllers import nodelifecycle as nl
from controlplane.controllers import tainteviction as te
from controlplane.controllers.options import NodeLifecycleOptions
from ketch.api import manifest, meta, timeutil
from ketch.testing.fake_clock import FakeClock
from ketch.v1 import coordination_pb2, core_pb2

T0 = 1_700_000_000.0


def node(ready: str | None = "True", heartbeat: float = T0, taints: list[dict[str, Any]] | None = None,
         unschedulable: bool = False, conditions: dict[str, str] | None = None) -> core_pb2.Node:
    conds = []
    if ready is not None:
        conds.append({"type": "Ready", "status": ready, "lastHeartbeatTime": timeutil.format(heartbeat),
                      "lastTransitionTime": timeutil.format(T0 - 1000)})
    for ctype, status in (conditions or {}).items():
        conds.append({"type": ctype, "status": status, "lastHeartbeatTime": timeutil.format(heartbeat)})
    return manifest.from_dict({  # type: ignore[return-value]
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "creationTimestamp": timeutil.format(T0 - 5000)},
        "spec": {"unschedulable": unschedulable, "taints": taints or []},
        "status": {"conditions": conds},
    })


def lease(renew: float) -> coordination_pb2.Lease:
    out = coordination_pb2.Lease()
    out.metadata.name = "n1"
    out.spec.renew_time = timeutil.format(renew, micro=True)
    return out


# -- heartbeats on the controller's clock --------------------------------------------------------

def test_probe_time_moves_only_when_the_controller_sees_a_change() -> None:
    clock = FakeClock(T0)
    n = node(heartbeat=T0 - 3)  # the agent's clock may be off: only changes count
    h = nl.observe(None, n, lease(T0 - 100), clock.now())
    assert h.probe_timestamp == T0
    clock.step(30)
    h = nl.observe(h, n, lease(T0 - 100), clock.now())
    assert h.probe_timestamp == T0  # nothing new
    clock.step(5)
    h = nl.observe(h, n, lease(T0 - 90), clock.now())
    assert h.probe_timestamp == T0 + 35  # lease renewed
    clock.step(5)
    h = nl.observe(h, node(heartbeat=T0 + 1), lease(T0 - 90), clock.now())
    assert h.probe_timestamp == T0 + 40  # Ready heartbeat changed
    clock.step(5)
    h = nl.observe(h, node(heartbeat=T0 + 1), lease(T0 - 200), clock.now())
    assert h.probe_timestamp == T0 + 40  # an older renewTime is not a renewal


@pytest.mark.parametrize(("ready", "expected"), [("True", 40.0), ("False", 40.0), (None, 60.0)],
                         ids=["ready", "not ready", "never posted Ready: startup grace"])
def test_grace_period(ready: str | None, expected: float) -> None:
    assert nl.grace_period(node(ready=ready), 40.0, 60.0) == expected


def test_mark_unknown_sets_ready_and_pressure_conditions() -> None:
    n = node(conditions={"MemoryPressure": "False", "DiskPressure": "False"})
    assert nl.mark_unknown(n.status, n.metadata.creation_timestamp, T0 + 50)
    ready = meta.find_condition(n.status.conditions, "Ready")
    assert (ready.status, ready.reason, ready.message) == ("Unknown", "NodeStatusUnknown",
                                                           "Kubelet stopped posting node status.")
    assert ready.last_transition_time == timeutil.format(T0 + 50)
    assert ready.last_heartbeat_time == timeutil.format(T0)  # the last time we heard from it
    for ctype in ("MemoryPressure", "DiskPressure"):
        assert meta.find_condition(n.status.conditions, ctype).status == "Unknown"
    pid = meta.find_condition(n.status.conditions, "PIDPressure")
    assert (pid.status, pid.reason) == ("Unknown", "NodeStatusNeverUpdated")
    assert not nl.mark_unknown(n.status, n.metadata.creation_timestamp, T0 + 60)  # already Unknown


def test_mark_unknown_on_a_node_that_never_posted() -> None:
    n = node(ready=None)
    assert nl.mark_unknown(n.status, n.metadata.creation_timestamp, T0)
    ready = meta.find_condition(n.status.conditions, "Ready")
    assert (ready.status, ready.reason, ready.message) == ("Unknown", "NodeStatusNeverUpdated",
                                                           "Kubelet never posted node status.")


# -- taints ------------------------------------------------------------------------------------------

NR, UR, US = "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable", "node.kubernetes.io/unschedulable"


@dataclass(frozen=True)
class TaintCase:
    name: str
    ready: str | None = "True"
    taints: list[dict[str, Any]] = field(default_factory=list)
    unschedulable: bool = False
    conditions: dict[str, str] = field(default_factory=dict)
    disrupted: bool = False
    expected: set[tuple[str, str]] | None = None  # None: unchanged


TAINT_CASES = [
    TaintCase("a ready node has none", expected=None),
    TaintCase("Unknown: unreachable NoSchedule and NoExecute", ready="Unknown",
              expected={(UR, "NoSchedule"), (UR, "NoExecute")}),
    TaintCase("False: not-ready NoSchedule and NoExecute", ready="False",
              expected={(NR, "NoSchedule"), (NR, "NoExecute")}),
    TaintCase("Unknown to False swaps the taints", ready="False",
              taints=[{"key": UR, "effect": "NoSchedule"}, {"key": UR, "effect": "NoExecute"}],
              expected={(NR, "NoSchedule"), (NR, "NoExecute")}),
    TaintCase("Ready again: the taints go, others stay", ready="True",
              taints=[{"key": UR, "effect": "NoExecute"}, {"key": "mine", "value": "x", "effect": "NoExecute"}],
              expected={("mine", "NoExecute")}),
    TaintCase("cordoned: the unschedulable taint", unschedulable=True, expected={(US, "NoSchedule")}),
    TaintCase("uncordoned: it goes", taints=[{"key": US, "effect": "NoSchedule"}], expected=set()),
    TaintCase("pressure conditions taint NoSchedule", conditions={"MemoryPressure": "True", "DiskPressure": "False"},
              expected={("node.kubernetes.io/memory-pressure", "NoSchedule")}),
    TaintCase("full disruption: no NoExecute taint", ready="Unknown", disrupted=True,
              taints=[{"key": UR, "effect": "NoExecute"}], expected={(UR, "NoSchedule")}),
]


@pytest.mark.parametrize("case", TAINT_CASES, ids=[c.name for c in TAINT_CASES])
def test_reconcile_taints(case: TaintCase) -> None:
    n = node(ready=case.ready, taints=case.taints, unschedulable=case.unschedulable, conditions=case.conditions)
    out = nl.reconcile_taints(n, case.disrupted, T0)
    if case.expected is None:
        assert out is None
        return
    assert out is not None
    assert {(t.key, t.effect) for t in out} == case.expected
    before = {(t.key, t.effect): t.time_added for t in n.spec.taints}
    for t in out:
        # New taints start their clock now; kept ones keep theirs.
        assert t.time_added == before.get((t.key, t.effect), timeutil.format(T0))
    n.spec.ClearField("taints")
    n.spec.taints.extend(out)
    assert nl.reconcile_taints(n, case.disrupted, T0 + 1) is None


@pytest.mark.parametrize(("statuses", "disrupted"), [
    ([], False), (["True"], False), (["Unknown"], True), (["Unknown", "False", ""], True),
    (["Unknown", "True"], False),
], ids=["no nodes", "one ready", "the only node down", "all down", "one of two down"])
def test_fully_disrupted(statuses: list[str], disrupted: bool) -> None:
    assert nl.fully_disrupted(statuses) is disrupted


# -- zones: disruption states and the NoExecute tainting rate (handleDisruption) -----------------

@pytest.mark.parametrize(("ready", "not_ready", "state"), [
    (5, 0, nl.STATE_NORMAL), (3, 2, nl.STATE_NORMAL), (0, 2, nl.STATE_FULL), (0, 1, nl.STATE_FULL),
    (2, 3, nl.STATE_PARTIAL), (1, 2, nl.STATE_NORMAL), (27, 33, nl.STATE_PARTIAL), (28, 32, nl.STATE_NORMAL),
], ids=["healthy", "two of five down", "all down", "the only node down", "three of five down",
        "two of three down: not more than two", "55% of 60 down", "53% of 60 down"])
def test_zone_state(ready: int, not_ready: int, state: str) -> None:
    assert nl.zone_state(ready, not_ready) == state


@pytest.mark.parametrize(("state", "size", "qps"), [
    (nl.STATE_NORMAL, 5, 0.1), (nl.STATE_FULL, 5, 0.1), (nl.STATE_PARTIAL, 50, 0.0), (nl.STATE_PARTIAL, 51, 0.01),
], ids=["normal", "a fully disrupted zone (not all zones)", "partial, small zone", "partial, large zone"])
def test_tainting_qps(state: str, size: int, qps: float) -> None:
    assert nl.tainting_qps(state, size, NodeLifecycleOptions()) == qps


def test_zone_key_from_topology_labels() -> None:
    n = node()
    assert nl.zone_key(n) == ""
    n.metadata.labels["topology.kubernetes.io/zone"] = "z1"
    n.metadata.labels["failure-domain.beta.kubernetes.io/region"] = "r1"
    assert nl.zone_key(n) == "r1:\x00:z1"


def test_taint_limiter_is_a_bucket_of_one() -> None:
    lim = nl.TaintLimiter(0.1, T0)
    assert lim.try_accept(T0)
    assert not lim.try_accept(T0 + 1)
    assert lim.wait(T0 + 1) == pytest.approx(9.0)
    assert lim.try_accept(T0 + 10)
    assert lim.try_accept(T0 + 100) and not lim.try_accept(T0 + 100)  # never more than one saved up
    lim.swap(0.0, T0 + 100)
    assert not lim.try_accept(T0 + 1000) and lim.wait(T0 + 1000) is None
    lim.swap(0.1, T0 + 1000)  # from a limiter without tokens: drained
    assert not lim.try_accept(T0 + 1000)
    assert lim.try_accept(T0 + 1010)


def _tracker(n: int, down: int = 0, opts: NodeLifecycleOptions | None = None) -> nl.ZoneTracker:
    zones = nl.ZoneTracker(opts or NodeLifecycleOptions())
    zones.load(((f"n{i}", "", True, i >= down) for i in range(n)), T0)
    return zones


def test_nodes_going_down_in_a_small_zone() -> None:
    zones = _tracker(5)
    assert zones.observe("n0", "", True, False, T0).requeue == set()
    assert zones.take_taint_token("", T0) == (True, None)  # the first at once
    zones.observe("n1", "", True, False, T0 + 1)
    allowed, wait = zones.take_taint_token("", T0 + 1)
    assert not allowed and wait == pytest.approx(9.0)  # 0.1 node/s
    # Three of five down: partial disruption, and a zone this small is not tainted any more.
    change = zones.observe("n2", "", True, False, T0 + 2)
    assert zones.states[""] == nl.STATE_PARTIAL
    assert change.requeue == {f"n{i}" for i in range(5)}
    assert zones.take_taint_token("", T0 + 100) == (False, None)
    # Every node down: no NoExecute taint anywhere.
    zones.observe("n3", "", True, False, T0 + 3)
    change = zones.observe("n4", "", True, False, T0 + 4)
    assert zones.all_full and change.requeue == {f"n{i}" for i in range(5)} and not change.exited_full
    # One back: out of full disruption (every node gets a fresh grace period), still partial.
    change = zones.observe("n4", "", True, True, T0 + 5)
    assert not zones.all_full and change.exited_full
    assert zones.states[""] == nl.STATE_PARTIAL
    assert zones.take_taint_token("", T0 + 100) == (False, None)
    # Enough back for a normal zone: tainting resumes at the normal rate, after a wait (drained).
    zones.observe("n3", "", True, True, T0 + 6)
    zones.observe("n2", "", True, True, T0 + 7)
    assert zones.states[""] == nl.STATE_NORMAL
    assert zones.take_taint_token("", T0 + 7)[0] is False
    assert zones.take_taint_token("", T0 + 17) == (True, None)


def test_a_large_partially_disrupted_zone_is_tainted_slowly() -> None:
    zones = _tracker(60, down=32)
    assert zones.states[""] == nl.STATE_NORMAL
    zones.observe("n32", "", True, False, T0)
    assert zones.states[""] == nl.STATE_PARTIAL
    assert zones.take_taint_token("", T0) == (True, None)
    allowed, wait = zones.take_taint_token("", T0)
    assert not allowed and wait == pytest.approx(100.0)  # 0.01 node/s


def test_zones_are_separate_and_excluded_nodes_do_not_count() -> None:
    zones = nl.ZoneTracker(NodeLifecycleOptions())
    zones.load([("a0", "a", True, True), ("a1", "a", True, True), ("b0", "b", True, True),
                ("b1", "b", False, True)], T0)
    change = zones.observe("b0", "b", True, False, T0)
    assert zones.states == {"a": nl.STATE_NORMAL, "b": nl.STATE_FULL}  # b1 does not count
    assert change.requeue == {"b0", "b1"} and not zones.all_full
    assert zones.take_taint_token("b", T0) == (True, None)  # a fully disrupted zone: the normal rate
    zones.observe("a0", "a", True, False, T0)
    zones.observe("a1", "a", True, False, T0)
    assert zones.all_full
    assert zones.take_taint_token("a", T0 + 100) == (False, None)
    zones.observe("a1", None, False, False, T0 + 1)  # deleted
    assert zones.states == {"a": nl.STATE_FULL, "b": nl.STATE_FULL}


def _pod(name: str, node_name: str = "n1", ready: str | None = "True", tolerations: list[dict[str, Any]] | None = None,
         created: float = T0 - 1000) -> core_pb2.Pod:
    conds = [{"type": "Ready", "status": ready, "lastTransitionTime": timeutil.format(T0 - 500)}] if ready else []
    return manifest.from_dict({  # type: ignore[return-value]
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": timeutil.format(created)},
        "spec": {"nodeName": node_name, "containers": [{"name": "c"}], "tolerations": tolerations or []},
        "status": {"phase": "Running", "conditions": conds},
    })


def test_pods_to_mark_not_ready() -> None:
    pods = [_pod("a"), _pod("b", ready="False"), _pod("c", node_name="n2"), _pod("d", ready=None)]
    out = nl.pods_to_mark_not_ready(pods, "n1", T0)
    assert [p.metadata.name for p in out] == ["a"]
    cond = meta.find_condition(out[0].status.conditions, "Ready")
    assert (cond.status, cond.last_transition_time) == ("False", timeutil.format(T0))
    assert meta.find_condition(pods[0].status.conditions, "Ready").status == "True"  # the cache is untouched


# -- taint-based eviction ------------------------------------------------------------------------------

def _taint(key: str = UR, added: float | None = T0, value: str = "") -> core_pb2.Taint:
    t = core_pb2.Taint(key=key, value=value, effect="NoExecute")
    if added is not None:
        t.time_added = timeutil.format(added)
    return t


def _tol(key: str = UR, seconds: int | None = None, operator: str = "Exists", effect: str = "NoExecute",
         value: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "operator": operator, "effect": effect}
    if value:
        out["value"] = value
    if seconds is not None:
        out["tolerationSeconds"] = seconds
    return out


@dataclass(frozen=True)
class EvictCase:
    name: str
    tolerations: list[dict[str, Any]]
    taints: list[core_pb2.Taint]
    expected: float | None  # seconds after T0, None: never
    created: float = T0 - 1000


EVICT_CASES = [
    EvictCase("no toleration: at once", [], [_taint()], 10.0),
    EvictCase("tolerationSeconds counts from timeAdded", [_tol(seconds=300)], [_taint(added=T0)], 300.0),
    EvictCase("an old taint: already due", [_tol(seconds=300)], [_taint(added=T0 - 400)], -100.0),
    EvictCase("tolerated forever", [_tol()], [_taint()], None),
    EvictCase("the smallest tolerationSeconds wins",
              [_tol(seconds=300), _tol(key="other", seconds=60)],
              [_taint(), _taint(key="other")], 60.0),
    EvictCase("one forever and one timed: the timed one", [_tol(), _tol(key="other", seconds=30)],
              [_taint(), _taint(key="other")], 30.0),
    EvictCase("one taint not tolerated: at once", [_tol(seconds=300)], [_taint(), _taint(key="other")], 10.0),
    EvictCase("zero seconds: at once", [_tol(seconds=0)], [_taint()], 10.0),
    EvictCase("a pod created after the taint gets its full time", [_tol(seconds=100)], [_taint(added=T0)],
              150.0, created=T0 + 50),
    EvictCase("a taint with no timeAdded counts from when it was first seen", [_tol(seconds=100)],
              [_taint(added=None)], 95.0),
    EvictCase("Equal needs the value", [_tol(key="k", operator="Equal", value="v", seconds=5)],
              [_taint(key="k", value="w")], 10.0),
]


@pytest.mark.parametrize("case", EVICT_CASES, ids=[c.name for c in EVICT_CASES])
def test_eviction_time(case: EvictCase) -> None:
    pod = _pod("p", tolerations=case.tolerations, created=case.created)
    now = T0 + 10
    first_seen = {(UR, ""): T0 - 5}
    at = te.eviction_time(pod, case.taints, now, first_seen)
    assert (None if at is None else at - T0) == case.expected


def test_plan_evictions_and_the_next_deadline() -> None:
    now = T0 + 10
    pods = [
        _pod("now", tolerations=[]),
        _pod("soon", tolerations=[_tol(seconds=30)]),
        _pod("later", tolerations=[_tol(seconds=300)]),
        _pod("never", tolerations=[_tol()]),
    ]
    deleting = _pod("deleting", tolerations=[])
    deleting.metadata.deletion_timestamp = timeutil.format(T0)
    due, next_at = te.plan_evictions([*pods, deleting], [_taint()], now)
    assert [p.metadata.name for p in due] == ["now"]
    assert next_at == T0 + 30


def test_disruption_target_condition() -> None:
    pod = _pod("p")
    upd = te.with_disruption_target(pod, T0)
    assert upd is not None
    cond = meta.find_condition(upd.status.conditions, "DisruptionTarget")
    assert (cond.status, cond.reason, cond.message) == ("True", "DeletionByTaintManager",
                                                        "Taint manager: deleting due to NoExecute taint")
    assert te.with_disruption_target(upd, T0 + 1) is None


# -- a Lease that outlasts the grace period -------------------------------------------------------

def _lease_of(seconds: int | None) -> coordination_pb2.Lease:
    out = lease(T0)
    if seconds is not None:
        out.spec.lease_duration_seconds = seconds
    return out


@pytest.mark.parametrize(("seconds", "grace", "warned"), [
    (40, 40.0, False), (4, 4.0, False), (None, 4.0, False), (60, 40.0, True), (40, 4.0, True)])
def test_slow_lease_warning(seconds: int | None, grace: float, warned: bool) -> None:
    assert bool(nl.slow_lease_message("n1", _lease_of(seconds), grace)) == warned
    assert nl.slow_lease_message("n1", None, grace) == ""


def test_slow_lease_message_names_both_flags() -> None:
    assert nl.slow_lease_message("n1", _lease_of(60), 40.0) == (
        "Node n1 renews its Lease about every 15s (leaseDurationSeconds 60), too slowly for the node-monitor "
        "grace period of 40s: a late heartbeat will turn it NotReady. Set its agent's --heartbeat-interval to "
        "at most 10s, or the control plane's --node-monitor-grace-period to at least 60s")
