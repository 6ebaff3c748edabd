"""Typed configuration of the controllers, one frozen dataclass per controller, filled from flags.

Kubernetes keeps one config type per controller (pkg/controller/<name>/config); a misspelt field
here is a TypeError at start-up instead of a silent fall-back to a default. Defaults are
Kubernetes' own; the timing knobs exist so that tests of back-off and node loss take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class JobOptions:
    # The pod re-creation back-off after failures: base doubling up to max (Kubernetes 10 s, 6 min).
    backoff_base: float = 10.0
    backoff_max: float = 360.0
    # At most one sync per Job per period for pod events and status-only Job updates
    # (Kubernetes waits 1 s). A Job replaces its finished pods only when it syncs, so with short
    # pods the period bounds throughput at about parallelism / period: measured in-process with
    # 2,000 completions at parallelism 64, 0.3 s gave ~200 pods/s, 0.1 s ~600/s, 0.05 s ~700/s,
    # 0.02 s ~850/s (and more syncs); with real agents (bench/jobs.py on tmpfs) 0.02 s finished
    # ~5 % sooner than 0.05 s for ~5 % more control-plane CPU.
    sync_batch_period: float = 0.02


@dataclass(frozen=True, slots=True)
class NodeLifecycleOptions:
    # A node whose Lease is not renewed for this long turns Ready=Unknown (kube-controller-manager's
    # --node-monitor-grace-period); the startup grace applies until it first posts Ready.
    monitor_grace_period: float = 40.0
    startup_grace_period: float = 60.0
    # NoExecute tainting is rate limited per zone (--node-eviction-rate, nodes per second, burst 1);
    # a zone with at least unhealthy_zone_threshold of its nodes (and more than 2) not Ready is
    # partially disrupted and tainted at --secondary-node-eviction-rate if it has more than
    # --large-cluster-size-threshold nodes, not at all otherwise.
    node_eviction_rate: float = 0.1
    secondary_node_eviction_rate: float = 0.01
    large_cluster_size_threshold: int = 50
    unhealthy_zone_threshold: float = 0.55


@dataclass(frozen=True, slots=True)
class PodGCOptions:
    # Terminated pods kept before the oldest are deleted (0 disables), as --terminated-pod-gc-threshold.
    terminated_pod_gc_threshold: int = 12500
    # How long a node must stay missing before its pods are deleted (Kubernetes: 40 s).
    quarantine: float = 40.0


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    batch_size: int = 500  # pods bound per round (one Batch RPC)


@dataclass(frozen=True, slots=True)
class ControllerOptions:
    """Everything the controller manager passes down; each controller reads only its own part."""

    job: JobOptions = field(default_factory=JobOptions)
    node_lifecycle: NodeLifecycleOptions = field(default_factory=NodeLifecycleOptions)
    podgc: PodGCOptions = field(default_factory=PodGCOptions)
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)
