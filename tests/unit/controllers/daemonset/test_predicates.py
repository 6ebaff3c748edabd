"""NodeShouldRunDaemonPod and the pod the controller creates, case by case."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from controlplane.controllers.daemonset import predicates
from ketch.api import scheduling

from .builders import make_ds, make_node, make_pod


@dataclass(frozen=True)
class Case:
    name: str
    # node
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)
    unschedulable: bool = False
    # daemon set template
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    affinity: dict[str, Any] = field(default_factory=dict)
    template_node_name: str = ""
    host_network: bool = False
    # expected
    should_run: bool = True
    should_continue: bool = True


def _affinity(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


CASES = [
    Case("a plain node runs the pod"),
    Case("a template nodeName naming another node excludes it", template_node_name="other",
         should_run=False, should_continue=False),
    Case("a template nodeName naming this node keeps it", template_node_name="n1"),
    Case("a matching nodeSelector runs", labels={"disk": "ssd"}, node_selector={"disk": "ssd"}),
    Case("a nodeSelector that does not match excludes the node", labels={"disk": "hdd"},
         node_selector={"disk": "ssd"}, should_run=False, should_continue=False),
    Case("required affinity In matches", labels={"zone": "a"},
         affinity=_affinity({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]})),
    Case("required affinity NotIn excludes", labels={"zone": "a"},
         affinity=_affinity({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}),
         should_run=False, should_continue=False),
    Case("terms are ORed", labels={"zone": "b"},
         affinity=_affinity({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                            {"matchExpressions": [{"key": "zone", "operator": "Exists"}]})),
    Case("Gt compares integers", labels={"cores": "16"},
         affinity=_affinity({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]})),
    Case("matchFields on metadata.name", affinity=_affinity(
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}),
        should_run=False, should_continue=False),
    Case("an untolerated NoSchedule taint: no new pod, the running one stays",
         taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}],
         should_run=False, should_continue=True),
    Case("an untolerated NoExecute taint: no pod at all",
         taints=[{"key": "dedicated", "value": "db", "effect": "NoExecute"}],
         should_run=False, should_continue=False),
    Case("PreferNoSchedule is ignored", taints=[{"key": "x", "effect": "PreferNoSchedule"}]),
    Case("a tolerated taint runs", taints=[{"key": "dedicated", "value": "db", "effect": "NoExecute"}],
         tolerations=[{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoExecute"}]),
    Case("a toleration with another value does not tolerate",
         taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}],
         tolerations=[{"key": "dedicated", "operator": "Equal", "value": "web"}],
         should_run=False, should_continue=True),
    Case("cordoned nodes get daemon pods (unschedulable toleration)", unschedulable=True,
         taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
    Case("unreachable nodes keep daemon pods",
         taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
    Case("a NotReady node keeps its pod but gets no new one",
         taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                 {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}],
         should_run=False, should_continue=True),
    Case("pressure taints are tolerated",
         taints=[{"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"},
                 {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"},
                 {"key": "node.kubernetes.io/pid-pressure", "effect": "NoSchedule"}]),
    Case("network-unavailable is tolerated only with hostNetwork",
         taints=[{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}],
         should_run=False, should_continue=True),
    Case("network-unavailable with hostNetwork runs", host_network=True,
         taints=[{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node_should_run_daemon_pod(case: Case) -> None:
    node = make_node("n1", labels=case.labels, taints=case.taints, unschedulable=case.unschedulable)
    ds = make_ds(node_selector=case.node_selector, tolerations=case.tolerations, affinity=case.affinity,
                 template_node_name=case.template_node_name, host_network=case.host_network)
    assert predicates.node_should_run_daemon_pod(node, ds) == (case.should_run, case.should_continue)
    # The prebuilt simulated spec gives the same answer.
    spec = predicates.simulated_pod(ds, "")
    assert predicates.node_should_run_daemon_pod(node, ds, spec) == (case.should_run, case.should_continue)


def test_daemon_tolerations_replace_user_ones_with_seconds() -> None:
    ds = make_ds(tolerations=[{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                               "effect": "NoExecute", "tolerationSeconds": 30}])
    tmpl = predicates.pod_template(ds, "abc")
    unreachable = [t for t in tmpl.spec.tolerations if t.key == scheduling.TAINT_UNREACHABLE]
    assert len(unreachable) == 1
    assert not unreachable[0].HasField("toleration_seconds")
    keys = {(t.key, t.effect) for t in tmpl.spec.tolerations}
    assert set(predicates.DAEMON_TOLERATIONS) <= keys
    assert predicates.HOST_NETWORK_TOLERATION not in keys


def test_new_pod_is_bound_and_pinned_with_labels_and_owner() -> None:
    ds = make_ds(generation=3, affinity=_affinity(
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}))
    pod = predicates.new_pod(ds, predicates.pod_template(ds, "h4sh"), "n7")
    assert pod.spec.node_name == "n7"
    assert pod.metadata.generate_name == "ds-"
    assert pod.metadata.labels["controller-revision-hash"] == "h4sh"
    assert pod.metadata.labels["pod-template-generation"] == "3"
    assert pod.metadata.labels["app"] == "ds"
    ref = pod.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("DaemonSet", "ds", "ds-uid", True)
    terms = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    assert len(terms) == 1
    assert not terms[0].match_expressions
    field_req = terms[0].match_fields[0]
    assert (field_req.key, field_req.operator, list(field_req.values)) == ("metadata.name", "In", ["n7"])
    assert predicates.target_node_name(pod) == "n7"
    pod.spec.node_name = ""
    assert predicates.target_node_name(pod) == "n7"


@pytest.mark.parametrize(("labels_hash", "labels_gen", "hash_", "gen", "updated"), [
    ("new", None, "new", 2, True),
    ("old", None, "new", 2, False),
    ("old", 2, "new", 2, True),
    ("old", 1, "new", 2, False),
    ("", None, "", None, False),
], ids=["hash matches", "hash differs", "generation matches", "generation differs", "nothing to match"])
def test_is_pod_updated(labels_hash: str, labels_gen: int | None, hash_: str, gen: int | None,
                        updated: bool) -> None:
    pod = make_pod("p", "n", hash_=labels_hash, generation=labels_gen)
    assert predicates.is_pod_updated(pod, hash_, gen) is updated


@pytest.mark.parametrize(("ready", "since", "min_ready", "now", "available"), [
    (True, 100.0, 0, 100.0, True),
    (False, 100.0, 0, 200.0, False),
    (True, 100.0, 10, 105.0, False),
    (True, 100.0, 10, 111.0, True),
], ids=["ready is available", "not ready", "ready too briefly", "ready long enough"])
def test_is_pod_available(ready: bool, since: float, min_ready: int, now: float, available: bool) -> None:
    pod = make_pod("p", "n", ready=ready, ready_since=since)
    assert predicates.is_pod_available(pod, min_ready, now) is available
