"""Which process is which, and whether a port is taken, for `ketch local up|down|status`.

A pid alone names a process only while it lives: after it exits the kernel may give the number to
anything else. A recorded process is therefore its pid and its start time (field 22 of
/proc/PID/stat, clock ticks since boot), and it is ours only while both match, so `down` never
signals a stranger that inherited a stale pid.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from dataclasses import dataclass


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        # fields[0] is field 3 (state); the start time is field 22. A zombie has exited already.
        return None if fields[0] == b"Z" else int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessRef:
    """A process as recorded: its pid and start time."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        start = start_time(pid)
        return None if start is None else cls(pid, start)

    @property
    def alive(self) -> bool:
        """The very process recorded still runs (not another one that got its pid)."""
        return start_time(self.pid) == self.start

    def signal(self, sig: int, group: bool = False) -> bool:
        """Send sig to the process (or its process group, which it leads) if it is still the one
        recorded; False if it is gone."""
        if not self.alive:
            return False
        try:
            if group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: object) -> ProcessRef:
        if not isinstance(data, dict):
            raise ValueError("a process must be an object with pid and start")
        return cls(int(data["pid"]), int(data["start"]))


def wait_gone(procs: list[ProcessRef], timeout: float) -> list[ProcessRef]:
    """Wait until none of procs runs, up to timeout; those still running."""
    deadline = time.monotonic() + timeout
    left = [p for p in procs if p.alive]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if p.alive]
    return left


def stop(procs: list[ProcessRef], timeout: float) -> None:
    """SIGTERM each process, wait up to timeout, then SIGKILL the process groups of those left
    (each member of a local cluster leads its own group, so its children go with it)."""
    for p in procs:
        p.signal(signal.SIGTERM)
    for p in wait_gone(procs, timeout):
        p.signal(signal.SIGKILL, group=True)
    wait_gone(procs, 5)


def port_in_use(host: str, port: int) -> bool:
    """Something listens on host:port (or holds it bound), so a server started there would fail
    or join it. The probe sets SO_REUSEADDR, which ignores connections of an earlier server left in
    TIME_WAIT but never a listener, and not SO_REUSEPORT, so a listener that set it still
    conflicts. Other errors (a port below 1024 as a user) are raised."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return True
            raise
    return False
