"""Reading /proc cheaply: a process's start time, and one pass over every process for usage.

A container is a session (each run starts with setsid), so "the container's processes" are the
processes whose session id is the run's pid, including children that left its process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    end = data.rfind(b")")
    if end < 0:
        return None
    # Fields from the 3rd (state) on; field N is at index N - 3.
    return data[end + 2:].decode("ascii", "replace").split()


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (unique with the pid), or None if gone."""
    fields = _stat_fields(pid)
    if fields is not None:
        try:
            return int(fields[19])
        except (IndexError, ValueError):
            return None
    try:  # not Linux: psutil's create time, in ticks
        return int(psutil.Process(pid).create_time() * CLK_TCK)
    except (psutil.Error, OSError):
        return None


def own_oom_score_adj() -> int:
    """This process's oom_score_adj (0 where there is none to read)."""
    try:
        with open("/proc/self/oom_score_adj", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] in ("Z", "X")


@dataclass(slots=True)
class SessionUsage:
    pids: list[int]
    rss_bytes: int = 0
    cpu_ticks: int = 0


def scan_sessions(sids: set[int] | None = None) -> dict[int, SessionUsage]:
    """Memory (RSS) and CPU time (user+system ticks) per session, in one pass over /proc."""
    out: dict[int, SessionUsage] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None or len(fields) < 22:
            continue
        try:
            sid = int(fields[3])
            if sids is not None and sid not in sids:
                continue
            if fields[0] in ("Z", "X"):
                continue
            ticks = int(fields[11]) + int(fields[12])
            rss = int(fields[21]) * PAGE_SIZE
        except ValueError:
            continue
        usage = out.get(sid)
        if usage is None:
            usage = out[sid] = SessionUsage([])
        usage.pids.append(int(name))
        usage.rss_bytes += rss
        usage.cpu_ticks += ticks
    return out
