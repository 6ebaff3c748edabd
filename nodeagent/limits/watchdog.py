"""The memory-limit watchdog, for hosts where the agent cannot use cgroups.

Every `interval` it sums the resident memory of each watched container's session (one pass over
/proc for all of them) and SIGKILLs a session over its limit, remembering it so the run is
reported OOMKilled. Coarser than the kernel (a fast allocation can overshoot between samples)
but honest about it. CPU limits are not enforced without cgroups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from nodeagent import procfs

log = logging.getLogger(__name__)


class MemoryWatchdog:
    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._limits: dict[int, int] = {}  # session id (run pid) -> bytes
        self.killed: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def watch(self, sid: int, limit_bytes: int) -> None:
        self._limits[sid] = limit_bytes
        self._wake.set()

    def unwatch(self, sid: int) -> bool:
        """Stop watching; returns whether the watchdog killed this run."""
        self._limits.pop(sid, None)
        if sid in self.killed:
            self.killed.discard(sid)
            return True
        return False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="memory-watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def check(self) -> list[int]:
        """One sampling pass; returns the sessions killed."""
        if not self._limits:
            return []
        usage = procfs.scan_sessions(set(self._limits))
        killed = []
        for sid, limit in list(self._limits.items()):
            u = usage.get(sid)
            if u is None or u.rss_bytes <= limit:
                continue
            log.info("session %d uses %d bytes over its limit of %d: killing it", sid, u.rss_bytes, limit)
            with contextlib.suppress(OSError):
                os.killpg(sid, signal.SIGKILL)
            for pid in u.pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            self.killed.add(sid)
            del self._limits[sid]
            killed.append(sid)
        return killed

    async def _run(self) -> None:
        while True:
            if not self._limits:
                self._wake.clear()
                await self._wake.wait()
            try:
                self.check()
            except Exception:
                log.exception("memory watchdog pass failed")
            await asyncio.sleep(self.interval)
