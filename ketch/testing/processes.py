"""Stopping the process groups that tests and benchmarks start (each child runs in a session of
its own, so a signal to its group reaches everything it started)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process's group; a group already gone is fine."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for the process; if it is still there after timeout, SIGKILL its group and reap it."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        proc.wait(5)


def stop_groups(procs: Iterable[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM every live group in the order given, then wait for each (SIGKILL after timeout)."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            signal_group(proc, signal.SIGTERM)
    for proc in procs:
        wait_or_kill(proc, timeout)
