"""The process runtime's seam: what the pod workers ask of it (Nomad's driver interface, cut down).

start() launches one container run and returns a handle at once; the handle's `exited` future
resolves with how the run ended. adopt() re-attaches to a run an earlier agent started
(matched by pid and process start time so a recycled pid is never taken for it). stop() is the
graceful-termination policy: SIGTERM to the process group, the grace period, then SIGKILL.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from .confine import Confinement


@dataclass(slots=True)
class LaunchSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log_path: str
    # What the process must be (user, groups, capabilities, ...); None: as the agent is.
    confinement: Confinement | None = None
    # Files to write the new process's pid into before it runs (cgroup membership).
    cgroup_procs: list[str] = field(default_factory=list)
    # The child's stdout and stderr descriptors (CRI logs: pipes the agent reads); None: both go
    # to log_path, opened for appending.
    output: tuple[int, int] | None = None
    # The fd the process reads as stdin (a container with stdin: true: a pipe); None: /dev/null.
    stdin: int | None = None


@dataclass(slots=True)
class ExitInfo:
    """How a run ended. exit_code None: unknown (the process was not ours to wait for)."""

    exit_code: int | None
    signal: int = 0
    finished_at: float = 0.0


class StartError(Exception):
    """The process could not be started (missing executable, bad working dir, ...)."""


@dataclass(slots=True)
class Handle:
    pid: int
    start_ticks: int
    started_at: float
    exited: asyncio.Future[ExitInfo]
    adopted: bool = False

    @property
    def running(self) -> bool:
        return not self.exited.done()


class Runtime(Protocol):
    def start(self, spec: LaunchSpec) -> Handle: ...

    def adopt(self, pid: int, start_ticks: int, started_at: float) -> Handle | None: ...

    def signal(self, handle: Handle, sig: int) -> None: ...

    async def stop(self, handle: Handle, grace: float) -> ExitInfo: ...
