"""The agent's Prometheus metrics, with the kubelet's names, types, labels and buckets (1.31), in
prometheus_client's default REGISTRY (what `--metrics-listen` serves).

- kubelet_running_pods and kubelet_running_containers{container_state}: counted from the pod
  workers when scraped, nothing is updated as pods come and go;
- kubelet_pod_start_duration_seconds: from the agent first seeing a pod to the pod running (its
  first regular container started), as the kubelet measures from its first sight of the pod;
- kubelet_pod_worker_duration_seconds{operation_type}: one pass of a pod's worker (create: the
  first, sync: the later ones).

Hollow nodes (`--hollow N`) record none of these: the kubelet's metrics describe one node, and N
simulated nodes summed in one process's registry would describe none of them (kubemark runs a
registry per hollow kubelet; this process has one).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .podmanager import PodWorkers

# Kubernetes' components export no *_created series beside their counters and histograms.
disable_created_metrics()

# The kubelet's podStartupDurationBuckets.
POD_START_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200,
                     1800, 2700, 3600)
# metrics.DefBuckets (Prometheus' defaults).
DEF_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

POD_START_DURATION = Histogram(
    "kubelet_pod_start_duration_seconds",
    "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
    buckets=POD_START_BUCKETS)
POD_WORKER_DURATION = Histogram(
    "kubelet_pod_worker_duration_seconds",
    "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
    ("operation_type",), buckets=DEF_BUCKETS)
_WORKER_CREATE = POD_WORKER_DURATION.labels("create")
_WORKER_SYNC = POD_WORKER_DURATION.labels("sync")

# The runtime's container states the kubelet reports (created, running, exited, unknown); a
# container here exists once its process was started, so it is running or exited.
CONTAINER_STATES = ("created", "running", "exited", "unknown")


class _PodsCollector(Collector):
    """kubelet_running_pods and kubelet_running_containers, read from the pod workers."""

    def __init__(self) -> None:
        self.sources: weakref.WeakSet[PodWorkers] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        pods = 0
        states = dict.fromkeys(CONTAINER_STATES, 0)
        for source in list(self.sources):
            for worker in list(source.workers.values()):
                run = worker.record.run
                if worker.handles or not run.terminal:
                    pods += 1  # the kubelet's "pod sandbox running": not yet finished
                for cr in list(run.containers.values()):
                    if cr.state == "running":
                        states["running"] += 1
                    elif cr.state == "terminated" or cr.last is not None:
                        states["exited"] += 1
        running_pods = GaugeMetricFamily("kubelet_running_pods",
                                         "Number of pods that have a running pod sandbox")
        running_pods.add_metric([], pods)
        yield running_pods
        containers = GaugeMetricFamily("kubelet_running_containers", "Number of containers currently running",
                                       labels=["container_state"])
        for state, n in states.items():
            containers.add_metric([state], n)
        yield containers


_pods = _PodsCollector()
REGISTRY.register(_pods)


def track_pod_workers(workers: PodWorkers) -> None:
    _pods.sources.add(workers)


def pod_started(seconds: float) -> None:
    POD_START_DURATION.observe(seconds)


def pod_worker_pass(first: bool, seconds: float) -> None:
    (_WORKER_CREATE if first else _WORKER_SYNC).observe(seconds)
