"""A pod's QoS class (pkg/apis/core/helper/qos: GetPodQOS), from its containers' requests and limits.

The API server stores it in status.qosClass on create; the agent reads it for oom_score_adj.
"""

from __future__ import annotations

from ketch.v1 import core_pb2


def qos_class(spec: core_pb2.PodSpec) -> str:
    containers = list(spec.containers) + list(spec.init_containers)
    if not any(c.resources.requests or c.resources.limits for c in containers):
        return "BestEffort"
    for c in containers:
        limits, requests = c.resources.limits, c.resources.requests
        for res in ("cpu", "memory"):
            if res not in limits or requests.get(res, limits[res]) != limits[res]:
                return "Burstable"
    return "Guaranteed"
