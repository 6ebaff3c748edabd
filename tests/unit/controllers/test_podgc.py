"""Pod GC decisions (controlplane.controllers.podgc), table-driven."""

from __future__ import annotations

import pytest

from controlplane.controllers.podgc import mark_failed_for_gone_node, out_of_service, terminated_to_delete
from ketch.api import meta, timeutil
from ketch.v1 import core_pb2

T0 = 1_700_000_000.0


def pod(name: str, phase: str, age: float, reason: str = "") -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name = name
    p.metadata.creation_timestamp = timeutil.format(T0 - age)
    p.status.phase, p.status.reason = phase, reason
    return p


PODS = [pod("new-ok", "Succeeded", 10), pod("old-ok", "Succeeded", 100), pod("mid-fail", "Failed", 50),
        pod("running", "Running", 1000), pod("evicted", "Failed", 1, reason="Evicted")]


@pytest.mark.parametrize(("threshold", "expected"), [
    (10, []),
    (4, []),
    (3, ["evicted"]),
    (2, ["evicted", "old-ok"]),
    (1, ["evicted", "old-ok", "mid-fail"]),
    (0, []),
], ids=["under", "at the threshold", "one over: evicted first", "two over: then the oldest", "three over",
        "zero disables"])
def test_terminated_to_delete(threshold: int, expected: list[str]) -> None:
    assert [p.metadata.name for p in terminated_to_delete(PODS, threshold)] == expected


def test_mark_failed_for_gone_node() -> None:
    running = pod("r", "Running", 1)
    marked = mark_failed_for_gone_node(running, T0)
    assert marked is not None and marked.status.phase == "Failed"
    cond = meta.find_condition(marked.status.conditions, "DisruptionTarget")
    assert (cond.status, cond.reason) == ("True", "DeletionByPodGC")
    assert running.status.phase == "Running"  # the cached object is untouched
    assert mark_failed_for_gone_node(pod("d", "Succeeded", 1), T0) is None


@pytest.mark.parametrize(("ready", "taint_effect", "expected"), [
    ("False", "NoExecute", True),
    ("Unknown", "NoExecute", True),
    ("True", "NoExecute", False),
    ("False", "NoSchedule", False),
    ("False", "", False),
], ids=["not ready and tainted", "unknown and tainted", "ready", "wrong effect", "no taint"])
def test_out_of_service(ready: str, taint_effect: str, expected: bool) -> None:
    node = core_pb2.Node()
    meta.set_condition(node.status.conditions, "Ready", ready, now=T0)
    if taint_effect:
        node.spec.taints.add(key="node.kubernetes.io/out-of-service", effect=taint_effect)
    assert out_of_service(node) is expected
