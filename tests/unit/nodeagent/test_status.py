"""Pod status from container states: phase, conditions and the merge over the API's status."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ketch.v1 import core_pb2
from nodeagent.status import (
    ContainerRun,
    PodRun,
    Terminated,
    compute_status,
    get_phase,
    merge_status,
    status_changed,
)


def _pod(policy: str = "", containers: tuple[str, ...] = ("a",), inits: tuple[str, ...] = (),
         sidecars: tuple[str, ...] = ()) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "p", "default", "uid-1"
    pod.spec.restart_policy = policy
    for name in inits:
        pod.spec.init_containers.add(name=name, command=["true"])
    for name in sidecars:
        pod.spec.init_containers.add(name=name, command=["sleep", "1"], restart_policy="Always")
    for name in containers:
        pod.spec.containers.add(name=name, command=["true"])
    return pod


def running(name: str, ready: bool = True, started: bool = True, **kw: object) -> ContainerRun:
    return ContainerRun(name, state="running", started_at=100.0, container_id="process://n/1",
                        ready=ready, started=started, **kw)  # type: ignore[arg-type]


def exited(name: str, code: int, **kw: object) -> ContainerRun:
    return ContainerRun(name, state="terminated", terminated=Terminated(code, 0, "Completed" if code == 0 else "Error",
                                                                       started_at=100.0, finished_at=101.0), **kw)  # type: ignore[arg-type]


def backing_off(name: str, last_code: int, restarts: int = 1, **kw: object) -> ContainerRun:
    return ContainerRun(name, state="waiting", waiting_reason="CrashLoopBackOff",
                        last=Terminated(last_code, 0, "Error"), restart_count=restarts, **kw)  # type: ignore[arg-type]


def waiting(name: str, **kw: object) -> ContainerRun:
    return ContainerRun(name, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PhaseCase:
    name: str
    policy: str
    runs: tuple[ContainerRun, ...]
    expected: str
    containers: tuple[str, ...] = ("a",)
    inits: tuple[str, ...] = ()
    sidecars: tuple[str, ...] = ()
    terminal: bool = False


PHASES = [
    PhaseCase("a container not started yet is Pending", "Always", (waiting("a"),), "Pending"),
    PhaseCase("a running container is Running", "Always", (running("a"),), "Running"),
    PhaseCase("all exited 0 under Never is Succeeded", "Never", (exited("a", 0),), "Succeeded"),
    PhaseCase("an exit 1 under Never is Failed", "Never", (exited("a", 1),), "Failed"),
    PhaseCase("an exit 1 under OnFailure is Running (restarting)", "OnFailure", (exited("a", 1),), "Running"),
    PhaseCase("crash-looping under OnFailure is Running", "OnFailure", (backing_off("a", 1),), "Running"),
    PhaseCase("all exited 0 under OnFailure is Succeeded", "OnFailure", (exited("a", 0),), "Succeeded"),
    PhaseCase("exited under Always is Running (restarting)", "Always", (exited("a", 0),), "Running"),
    PhaseCase("one running one exited is Running", "Never", (running("a"), exited("b", 1)), "Running",
              containers=("a", "b")),
    PhaseCase("one of two failed under Never is Failed", "Never", (exited("a", 0), exited("b", 2)), "Failed",
              containers=("a", "b")),
    PhaseCase("one started one waiting is Pending", "Never", (running("a"), waiting("b")), "Pending",
              containers=("a", "b")),
    PhaseCase("init container running is Pending", "Never", (running("i"), waiting("a")), "Pending",
              inits=("i",)),
    PhaseCase("failed init under Never is Failed", "Never", (exited("i", 1), waiting("a")), "Failed", inits=("i",)),
    PhaseCase("failed init under OnFailure is Pending", "OnFailure", (backing_off("i", 1), waiting("a")), "Pending",
              inits=("i",)),
    PhaseCase("init done, container running is Running", "Never", (exited("i", 0), running("a")), "Running",
              inits=("i",)),
    PhaseCase("deleted pod, all exited 0 is Succeeded even under Always", "Always", (exited("a", 0),), "Succeeded",
              terminal=True),
    PhaseCase("deleted pod with a killed container is Failed", "Always", (exited("a", 137),), "Failed",
              terminal=True),
    PhaseCase("sidecar started and container done under Never is Succeeded", "Never",
              (running("s"), exited("a", 0)), "Running", sidecars=("s",)),
    PhaseCase("sidecar stopped after the pod finished does not count", "Never",
              (exited("s", 137), exited("a", 0)), "Succeeded", sidecars=("s",), terminal=True),
    PhaseCase("sidecar not started yet is Pending", "Never", (running("s", started=False), waiting("a")),
              "Pending", sidecars=("s",)),
]


@pytest.mark.parametrize("case", PHASES, ids=[c.name for c in PHASES])
def test_phase(case: PhaseCase) -> None:
    pod = _pod(case.policy, case.containers, case.inits, case.sidecars)
    run = PodRun(containers={c.name: c for c in case.runs}, terminal=case.terminal)
    status = compute_status(pod, run, "10.0.0.1")
    assert status.phase == case.expected
    # The same computation straight from the API statuses agrees.
    phase = get_phase(pod.spec, status.init_container_statuses, status.container_statuses, case.terminal)
    assert phase == case.expected


def _conds(status: core_pb2.PodStatus) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


@dataclass(frozen=True)
class CondCase:
    name: str
    runs: tuple[ContainerRun, ...]
    expected: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    policy: str = "Never"
    containers: tuple[str, ...] = ("a",)
    inits: tuple[str, ...] = ()
    sandbox: bool = True


CONDITIONS = [
    CondCase("running and ready", (running("a"),), {
        "PodReadyToStartContainers": ("True", "", ""), "Initialized": ("True", "", ""),
        "ContainersReady": ("True", "", ""), "Ready": ("True", "", ""), "PodScheduled": ("True", "", "")}),
    CondCase("running, readiness not passed", (running("a", ready=False),), {
        "ContainersReady": ("False", "ContainersNotReady", "containers with unready status: [a]"),
        "Ready": ("False", "ContainersNotReady", "containers with unready status: [a]")}),
    CondCase("succeeded pod", (exited("a", 0),), {
        "ContainersReady": ("False", "PodCompleted", ""), "Ready": ("False", "PodCompleted", ""),
        "Initialized": ("True", "PodCompleted", ""), "PodReadyToStartContainers": ("False", "", "")},
        sandbox=False),
    CondCase("init container still running", (running("i", ready=False), waiting("a")), {
        "Initialized": ("False", "ContainersNotInitialized", "containers with incomplete status: [i]")},
        inits=("i",)),
    CondCase("init container done", (exited("i", 0, init=True, ready=True), running("a")), {
        "Initialized": ("True", "", "")}, inits=("i",)),
    CondCase("two containers, one unready", (running("a"), running("b", ready=False)), {
        "Ready": ("False", "ContainersNotReady", "containers with unready status: [b]")}, containers=("a", "b")),
]


@pytest.mark.parametrize("case", CONDITIONS, ids=[c.name for c in CONDITIONS])
def test_conditions(case: CondCase) -> None:
    pod = _pod(case.policy, case.containers, case.inits)
    run = PodRun(containers={c.name: c for c in case.runs}, sandbox_ready=case.sandbox)
    got = _conds(compute_status(pod, run, "10.0.0.1"))
    for ctype, want in case.expected.items():
        assert got[ctype] == want, ctype


def test_container_status_fields() -> None:
    pod = _pod("OnFailure")
    run = PodRun(containers={"a": backing_off("a", 3, restarts=2)}, start_time=50.0)
    st = compute_status(pod, run, "10.0.0.1")
    cs = st.container_statuses[0]
    assert cs.state.waiting.reason == "CrashLoopBackOff"
    assert cs.last_state.terminated.exit_code == 3
    assert cs.restart_count == 2
    assert not cs.ready and not cs.started
    assert st.host_ip == st.pod_ip == "10.0.0.1"
    assert [ip.ip for ip in st.host_ips] == ["10.0.0.1"]
    assert st.start_time == "1970-01-01T00:00:50Z"


def _api_pod(phase: str = "Pending") -> core_pb2.Pod:
    pod = _pod("Never")
    pod.metadata.resource_version = "7"
    pod.status.phase = phase
    pod.status.qos_class = "BestEffort"
    pod.status.conditions.add(type="PodScheduled", status="True", last_transition_time="2024-01-01T00:00:00Z")
    pod.status.conditions.add(type="DisruptionTarget", status="True", reason="DeletionByTaintManager",
                              last_transition_time="2024-01-01T00:00:01Z")
    return pod


def test_merge_keeps_foreign_conditions_and_transition_times() -> None:
    pod = _api_pod()
    computed = compute_status(pod, PodRun(containers={"a": running("a")}, start_time=10.0), "h")
    merged = merge_status(pod, computed, now=1000.0)
    by_type = {c.type: c for c in merged.conditions}
    assert by_type["DisruptionTarget"].reason == "DeletionByTaintManager"
    assert by_type["PodScheduled"].last_transition_time == "2024-01-01T00:00:00Z"
    assert by_type["Ready"].last_transition_time == "1970-01-01T00:16:40Z"
    # Merging again later with nothing changed gives exactly what is stored: no write.
    pod.status.CopyFrom(merged)
    again = merge_status(pod, computed, now=2000.0)
    assert not status_changed(pod, again)


def test_merge_never_leaves_a_terminal_phase() -> None:
    pod = _api_pod("Succeeded")
    computed = compute_status(pod, PodRun(containers={"a": running("a")}), "h")
    assert computed.phase == "Running"
    assert merge_status(pod, computed, now=5.0).phase == "Succeeded"


def test_merge_keeps_start_time_from_api() -> None:
    pod = _api_pod()
    pod.status.start_time = "2024-01-01T00:00:00Z"
    computed = compute_status(pod, PodRun(containers={"a": running("a")}, start_time=99.0), "h")
    assert merge_status(pod, computed, now=5.0).start_time == "2024-01-01T00:00:00Z"


def test_deadline_exceeded_overrides_phase() -> None:
    pod = _pod("Always")
    run = PodRun(containers={"a": exited("a", 0)}, terminal=True, phase_override="Failed",
                 reason="DeadlineExceeded", message="Pod was active on the node longer than the specified deadline")
    st = compute_status(pod, run, "h")
    assert (st.phase, st.reason) == ("Failed", "DeadlineExceeded")
