"""Container states to a Pod's status, as the kubelet computes it (pure).

The pod worker keeps a `PodRun` (what it knows about each container's runs); `compute_status`
turns it into the API's PodStatus (phase, container statuses, kubelet-owned conditions) and
`merge_status` lays that over the latest PodStatus from the API, keeping what others own
(PodScheduled's time, DisruptionTarget, ...), lastTransitionTimes of unchanged conditions and
terminal phases (a pod never leaves Succeeded/Failed). Both are deterministic in their inputs,
so "nothing changed" is simply `merge_status(latest, computed) == latest.status`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ketch.api import timeutil
from ketch.v1 import core_pb2

TERMINAL_PHASES = ("Succeeded", "Failed")
# Conditions the kubelet owns (PodConditionByKubelet); everything else is kept as found.
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


@dataclass(slots=True)
class Terminated:
    """One finished run of a container."""

    exit_code: int
    signal: int = 0
    reason: str = ""
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    container_id: str = ""


@dataclass(slots=True)
class ContainerRun:
    """What the agent knows about one (init) container: its current run and the last one."""

    name: str
    image: str = ""
    init: bool = False
    sidecar: bool = False
    state: str = "waiting"  # waiting | running | terminated
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    started_at: float | None = None
    container_id: str = ""
    terminated: Terminated | None = None
    last: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False


@dataclass(slots=True)
class PodRun:
    """The pod as the agent runs it. `terminal`: nothing will be (re)started any more."""

    containers: dict[str, ContainerRun] = field(default_factory=dict)
    start_time: float | None = None
    terminal: bool = False
    sandbox_ready: bool = True
    reason: str = ""
    message: str = ""
    # Forces the phase (Failed for DeadlineExceeded / node shutdown) once terminal.
    phase_override: str = ""
    # (reason, message) of a DisruptionTarget condition the agent adds (node shutdown).
    disruption: tuple[str, str] | None = None


def container_id(node: str, pid: int) -> str:
    return f"process://{node}/{pid}"


# ---------------------------------------------------------------------------------------------
# Container statuses

def _fmt(ts: float | None) -> str:
    return timeutil.format(ts) if ts else ""


def _fill_terminated(out: core_pb2.ContainerStateTerminated, t: Terminated) -> None:
    out.exit_code = t.exit_code
    out.signal = t.signal
    out.reason = t.reason
    out.message = t.message
    out.started_at = _fmt(t.started_at)
    out.finished_at = _fmt(t.finished_at)
    out.container_id = t.container_id


def container_status(c: ContainerRun) -> core_pb2.ContainerStatus:
    cs = core_pb2.ContainerStatus(name=c.name, image=c.image, restart_count=c.restart_count)
    cs.ready = c.ready
    cs.started = c.state == "running" and c.started
    if c.state == "running":
        cs.state.running.started_at = _fmt(c.started_at)
        cs.container_id = c.container_id
    elif c.state == "terminated" and c.terminated is not None:
        _fill_terminated(cs.state.terminated, c.terminated)
        cs.container_id = c.terminated.container_id
    else:
        cs.state.waiting.reason = c.waiting_reason
        cs.state.waiting.message = c.waiting_message
    if c.last is not None:
        _fill_terminated(cs.last_state.terminated, c.last)
    return cs


# ---------------------------------------------------------------------------------------------
# Phase (the kubelet's getPhase)

def _is_sidecar(c: core_pb2.Container) -> bool:
    return c.HasField("restart_policy") and c.restart_policy == "Always"


def _by_name(statuses: Iterable[core_pb2.ContainerStatus]) -> dict[str, core_pb2.ContainerStatus]:
    return {s.name: s for s in statuses}


def _any_regular_started(spec: core_pb2.PodSpec, statuses: dict[str, core_pb2.ContainerStatus]) -> bool:
    for c in spec.containers:
        s = statuses.get(c.name)
        if s is not None and (s.state.HasField("running") or s.state.HasField("terminated")
                              or s.last_state.HasField("terminated")):
            return True
    return False


def restart_policy(spec: core_pb2.PodSpec) -> str:
    return spec.restart_policy or "Always"


def get_phase(spec: core_pb2.PodSpec, init_statuses: Iterable[core_pb2.ContainerStatus],
              statuses: Iterable[core_pb2.ContainerStatus], pod_is_terminal: bool) -> str:
    """The pod phase from its container statuses, as the kubelet's getPhase (1.31)."""
    init = _by_name(init_statuses)
    regular = _by_name(statuses)
    policy = restart_policy(spec)
    pending_init = failed_init = 0
    for c in spec.init_containers:
        if _is_sidecar(c):
            continue
        s = init.get(c.name)
        if s is None or s.state.HasField("running"):
            pending_init += 1
        elif s.state.HasField("terminated"):
            if s.state.terminated.exit_code != 0:
                failed_init += 1
        elif s.state.HasField("waiting") and s.last_state.HasField("terminated"):
            if s.last_state.terminated.exit_code != 0:
                failed_init += 1
        else:
            pending_init += 1

    unknown = running = waiting = stopped = succeeded = 0
    for c in spec.init_containers:
        if not _is_sidecar(c):
            continue
        s = init.get(c.name)
        if s is None:
            unknown += 1
        elif s.state.HasField("running"):
            if not (s.HasField("started") and s.started):
                pending_init += 1
            running += 1
        elif s.state.HasField("terminated"):
            pass
        elif s.state.HasField("waiting") and not s.last_state.HasField("terminated"):
            pending_init += 1
            waiting += 1
        elif not s.state.HasField("waiting"):
            pending_init += 1
            unknown += 1
    for c in spec.containers:
        s = regular.get(c.name)
        if s is None:
            unknown += 1
        elif s.state.HasField("running"):
            running += 1
        elif s.state.HasField("terminated"):
            stopped += 1
            if s.state.terminated.exit_code == 0:
                succeeded += 1
        elif s.state.HasField("waiting"):
            if s.last_state.HasField("terminated"):
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1

    if failed_init > 0 and policy == "Never":
        return "Failed"
    all_statuses = {**init, **regular}
    if (pending_init > 0 and not _any_regular_started(spec, all_statuses)) or waiting > 0:
        return "Pending"
    if running > 0 and unknown == 0:
        return "Running"
    if running == 0 and stopped > 0 and unknown == 0:
        if pod_is_terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


# ---------------------------------------------------------------------------------------------
# Conditions (the kubelet's generate.go, 1.31)

Cond = tuple[str, str, str, str]  # type, status, reason, message


def _names(names: list[str]) -> str:
    return "[" + " ".join(names) + "]"


def containers_ready_condition(spec: core_pb2.PodSpec, statuses: dict[str, core_pb2.ContainerStatus],
                               phase: str) -> Cond:
    unknown: list[str] = []
    unready: list[str] = []
    for c in [*(c for c in spec.init_containers if _is_sidecar(c)), *spec.containers]:
        s = statuses.get(c.name)
        if s is None:
            unknown.append(c.name)
        elif not (s.HasField("ready") and s.ready):
            unready.append(c.name)
    if phase == "Succeeded" and not unknown:
        return ("ContainersReady", "False", "PodCompleted", "")
    parts = []
    if unknown:
        parts.append(f"containers with unknown status: {_names(unknown)}")
    if unready:
        parts.append(f"containers with unready status: {_names(unready)}")
    if parts:
        return ("ContainersReady", "False", "ContainersNotReady", ", ".join(parts))
    return ("ContainersReady", "True", "", "")


def initialized_condition(spec: core_pb2.PodSpec, statuses: dict[str, core_pb2.ContainerStatus],
                          phase: str) -> Cond:
    unknown: list[str] = []
    incomplete: list[str] = []
    for c in spec.init_containers:
        s = statuses.get(c.name)
        if s is None:
            unknown.append(c.name)
            continue
        if _is_sidecar(c):
            done = s.HasField("started") and s.started
        else:
            done = s.HasField("ready") and s.ready
        if not done:
            incomplete.append(c.name)
    if phase == "Succeeded" and not unknown:
        return ("Initialized", "True", "PodCompleted", "")
    if _any_regular_started(spec, statuses):
        return ("Initialized", "True", "", "")
    parts = []
    if unknown:
        parts.append(f"containers with unknown status: {_names(unknown)}")
    if incomplete:
        parts.append(f"containers with incomplete status: {_names(incomplete)}")
    if parts:
        return ("Initialized", "False", "ContainersNotInitialized", ", ".join(parts))
    return ("Initialized", "True", "", "")


def kubelet_conditions(spec: core_pb2.PodSpec, init_statuses: list[core_pb2.ContainerStatus],
                       statuses: list[core_pb2.ContainerStatus], phase: str, sandbox_ready: bool) -> list[Cond]:
    by_name = _by_name([*init_statuses, *statuses])
    ready = containers_ready_condition(spec, by_name, phase)
    return [
        ("PodReadyToStartContainers", "True" if sandbox_ready else "False", "", ""),
        initialized_condition(spec, by_name, phase),
        ("Ready", ready[1], ready[2], ready[3]),
        ready,
        ("PodScheduled", "True", "", ""),
    ]


# ---------------------------------------------------------------------------------------------
# The whole status

def compute_status(pod: core_pb2.Pod, run: PodRun, host_ip: str) -> core_pb2.PodStatus:
    """The status the agent reports for pod, from what it knows (conditions without times)."""
    spec = pod.spec
    st = core_pb2.PodStatus()
    for c in spec.init_containers:
        cr = run.containers.get(c.name)
        st.init_container_statuses.append(container_status(cr) if cr else _unknown_status(c, True, spec))
    for c in spec.containers:
        cr = run.containers.get(c.name)
        st.container_statuses.append(container_status(cr) if cr else _unknown_status(c, False, spec))
    phase = get_phase(spec, st.init_container_statuses, st.container_statuses, run.terminal)
    if run.terminal and run.phase_override:
        phase = run.phase_override
    st.phase = phase
    st.reason, st.message = run.reason, run.message
    if host_ip:
        st.host_ip = host_ip
        st.host_ips.add(ip=host_ip)
        st.pod_ip = host_ip
        st.pod_ips.add(ip=host_ip)
    if run.start_time:
        st.start_time = _fmt(run.start_time)
    st.qos_class = pod.status.qos_class
    for ctype, status, reason, message in kubelet_conditions(
            spec, list(st.init_container_statuses), list(st.container_statuses), phase, run.sandbox_ready):
        st.conditions.add(type=ctype, status=status, reason=reason, message=message)
    if run.disruption is not None:
        st.conditions.add(type="DisruptionTarget", status="True", reason=run.disruption[0],
                          message=run.disruption[1])
    return st


def _unknown_status(c: core_pb2.Container, init: bool, spec: core_pb2.PodSpec) -> core_pb2.ContainerStatus:
    cs = core_pb2.ContainerStatus(name=c.name, image=c.image, restart_count=0)
    cs.ready = False
    cs.started = False
    cs.state.waiting.reason = "PodInitializing" if (init or spec.init_containers) else "ContainerCreating"
    return cs


def merge_status(latest: core_pb2.Pod, computed: core_pb2.PodStatus, now: float) -> core_pb2.PodStatus:
    """Lay the agent's computed status over the API's latest one (kubelet status manager rules)."""
    old = latest.status
    out = core_pb2.PodStatus()
    out.CopyFrom(computed)
    # Pods never leave a terminal phase; reason and message stay with the phase they explain.
    if old.phase in TERMINAL_PHASES and out.phase != old.phase:
        out.phase = old.phase
        out.reason, out.message = old.reason, old.message
    elif out.phase == old.phase and not out.reason:
        out.reason, out.message = old.reason, old.message
    if old.start_time:
        out.start_time = old.start_time
    if not out.qos_class:
        out.qos_class = old.qos_class
    out.nominated_node_name = old.nominated_node_name
    # Conditions: keep everything not owned by the kubelet, then ours, preserving transition times.
    stamp = timeutil.format(now)
    previous = {c.type: c for c in old.conditions}
    ours = list(computed.conditions)
    owned = {c.type for c in ours}
    del out.conditions[:]
    for c in old.conditions:
        if c.type not in KUBELET_CONDITIONS and c.type not in owned:
            out.conditions.add().CopyFrom(c)
    for c in ours:
        new = out.conditions.add()
        new.CopyFrom(c)
        prev = previous.get(c.type)
        if prev is not None and prev.status == c.status:
            new.last_transition_time = prev.last_transition_time or stamp
            new.last_probe_time = prev.last_probe_time
        else:
            new.last_transition_time = stamp
    return out


def status_changed(latest: core_pb2.Pod, merged: core_pb2.PodStatus) -> bool:
    return latest.status.SerializeToString(deterministic=True) != merged.SerializeToString(deterministic=True)
