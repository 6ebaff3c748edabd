"""Running a container's lifecycle hooks (postStart, preStop), as the kubelet does.

The handlers come from ketch.api.lifecycle (the pod spec holds them as JSON); exec and httpGet
run through the probe runners (exec as the container: its user, environment and working dir);
tcpSocket is accepted and does nothing, as in Kubernetes; sleep sleeps. Every hook is bounded
by the time it is given.
"""

from __future__ import annotations

import asyncio

from ketch.api import lifecycle
from ketch.v1 import core_pb2

from .probes import ExecContext, run_once
from .runtime.process import ProcessRuntime


def hooks_of(pod: core_pb2.Pod, container: core_pb2.Container) -> dict[str, lifecycle.Handler]:
    """The container's hooks (the API server validated them; anything unreadable is skipped)."""
    spec = pod.spec
    grace = spec.termination_grace_period_seconds if spec.HasField("termination_grace_period_seconds") else None
    hooks, _ = lifecycle.parse(container, "", grace)
    return hooks


async def run_hook(runtime: ProcessRuntime, handler: lifecycle.Handler, container: core_pb2.Container,
                   ctx: ExecContext, timeout: float) -> tuple[bool, str]:
    """(success, message) of one run of the hook, given at most timeout seconds."""
    if handler.sleep_seconds is not None:
        await asyncio.sleep(min(float(handler.sleep_seconds), max(timeout, 0.0)))
        return True, ""
    action = handler.action
    if action is None or action.HasField("tcp_socket"):
        return True, ""
    if timeout <= 0:
        return False, "no time left to run it"
    return await run_once(runtime, action, container, ctx, timeout)
