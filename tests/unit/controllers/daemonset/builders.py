"""Builders for DaemonSet, Node and Pod objects in the shapes the controllers see them."""

from __future__ import annotations

from typing import Any

from ketch.api import manifest, timeutil
from ketch.v1 import apps_pb2, core_pb2

T0 = 1_700_000_000.0


def make_node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None,
              unschedulable: bool = False, ready: str | None = "True") -> core_pb2.Node:
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})},
                     "creationTimestamp": timeutil.format(T0 - 3600)},
        "spec": {"unschedulable": unschedulable, "taints": taints or []},
        "status": {"conditions": []},
    }
    if ready is not None:
        doc["status"]["conditions"].append({"type": "Ready", "status": ready, "reason": "KubeletReady",
                                            "lastHeartbeatTime": timeutil.format(T0),
                                            "lastTransitionTime": timeutil.format(T0 - 3600)})
    return manifest.from_dict(doc)  # type: ignore[return-value]


def make_ds(name: str = "ds", node_selector: dict[str, str] | None = None,
            tolerations: list[dict[str, Any]] | None = None, affinity: dict[str, Any] | None = None,
            strategy: str = "RollingUpdate", max_unavailable: int | str | None = None,
            max_surge: int | str | None = None, min_ready_seconds: int = 0, generation: int = 1,
            template_node_name: str = "", host_network: bool = False) -> apps_pb2.DaemonSet:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x", "command": ["sleep", "1000"]}],
                            "restartPolicy": "Always"}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    if affinity:
        spec["affinity"] = affinity
    if template_node_name:
        spec["nodeName"] = template_node_name
    if host_network:
        spec["hostNetwork"] = True
    update: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        ru: dict[str, Any] = {}
        if max_unavailable is not None:
            ru["maxUnavailable"] = max_unavailable
        if max_surge is not None:
            ru["maxSurge"] = max_surge
        update["rollingUpdate"] = ru
    doc = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default", "uid": "ds-uid", "generation": generation,
                     "annotations": {"deprecated.daemonset.template.generation": str(generation)}},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
                 "updateStrategy": update, "minReadySeconds": min_ready_seconds},
    }
    return manifest.from_dict(doc)  # type: ignore[return-value]


def make_pod(name: str, node: str, hash_: str = "new", generation: int | None = None, phase: str = "Running",
             ready: bool = True, created: float = T0 - 100, ready_since: float = T0 - 100,
             deleting: bool = False) -> core_pb2.Pod:
    labels = {"app": "ds", "controller-revision-hash": hash_}
    if generation is not None:
        labels["pod-template-generation"] = str(generation)
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels,
                     "creationTimestamp": timeutil.format(created)},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": phase, "conditions": [
            {"type": "Ready", "status": "True" if ready else "False",
             "lastTransitionTime": timeutil.format(ready_since)}]},
    }
    if deleting:
        doc["metadata"]["deletionTimestamp"] = timeutil.format(T0 + 30)
    return manifest.from_dict(doc)  # type: ignore[return-value]
