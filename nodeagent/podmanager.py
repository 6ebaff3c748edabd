"""The set of pod workers: routes informer events to the worker of each pod UID, remembers which
pods are finished (a uid each: finished pods cost no more), re-adopts what the checkpoints on
disk describe, and stops or leaves the pods when the agent goes.

A pod's uid and container names become file names under pods_root, so a pod whose uid is not a
UUID or whose container names are not DNS-1123 labels is never run (the API server makes no
such pod; this is the agent not trusting that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ketch.api.validation import field
from ketch.api.validation.podlogs import is_uid
from ketch.cancelsafe import wait_for
from ketch.v1 import core_pb2

from .podworkers import ORPHAN_GRACE, PodWorker, WorkerDeps
from .runtime import checkpoint, layout
from .runtime.checkpoint import PodRecord
from .status import TERMINAL_PHASES

log = logging.getLogger(__name__)


def unsafe_names(pod: core_pb2.Pod) -> str:
    """Why the pod's uid or container names cannot name its files ("" when they can)."""
    if not is_uid(pod.metadata.uid):
        return f"its uid {pod.metadata.uid[:100]!r} is not a UUID"
    for c in (*pod.spec.init_containers, *pod.spec.containers):
        if len(c.name) > 63 or field.dns1123_label(c.name):
            return f"its container name {c.name[:100]!r} is not a DNS-1123 label"
    return ""


class PodWorkers:
    """Routes informer events to per-pod workers and remembers which pods are finished."""

    def __init__(self, deps: WorkerDeps) -> None:
        self.deps = deps
        self.workers: dict[str, PodWorker] = {}
        self.finished: set[str] = set()
        self.recovered: dict[str, PodRecord] = {}
        self.accepting = True
        self._background: set[asyncio.Task[Any]] = set()
        self._deleting: set[str] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.refused: set[str] = set()

    def load_checkpoints(self) -> None:
        for rec in checkpoint.load_all(self.deps.pods_root):
            if rec.gone_at is None:
                self.recovered[rec.uid] = rec

    # -- informer handlers -------------------------------------------------------------------

    def update(self, pod: core_pb2.Pod) -> None:
        uid = pod.metadata.uid
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        if uid in self.finished or not self.accepting:
            self._finish_deletion(pod)
            return
        if uid in self.refused:
            return
        why = unsafe_names(pod)
        if why:
            self.refused.add(uid)
            log.error("pod %s/%s is not run: %s", pod.metadata.namespace, pod.metadata.name, why)
            return
        rec = self.recovered.pop(uid, None)
        if rec is not None and rec.finished and not rec.procs:
            if pod.status.phase in TERMINAL_PHASES and not pod.metadata.deletion_timestamp:
                self.finished.add(uid)
                return
        elif rec is None and pod.status.phase in TERMINAL_PHASES:
            # Finished before this agent knew it: never run it again.
            self._finish_deletion(pod)
            return
        worker = PodWorker(self.deps, pod, rec, self._done)
        self.workers[uid] = worker
        self._idle.clear()
        worker.start()

    def _finish_deletion(self, pod: core_pb2.Pod) -> None:
        """A stopped pod that got a graceful delete (it raced our terminal status): finish it."""
        md = pod.metadata
        if not md.deletion_timestamp or md.deletion_grace_period_seconds == 0 or md.uid in self._deleting:
            return
        if pod.status.phase not in TERMINAL_PHASES and md.uid not in self.finished:
            return
        self._deleting.add(md.uid)
        task = asyncio.get_running_loop().create_task(self.deps.status.delete(pod))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def delete(self, pod: core_pb2.Pod) -> None:
        uid = pod.metadata.uid
        if uid in self.refused:  # never run, so it has no files
            self.refused.discard(uid)
            return
        self._deleting.discard(uid)
        self.finished.discard(uid)
        self.deps.status.forget(uid)
        worker = self.workers.get(uid)
        if worker is not None:
            worker.removed()
        else:
            self._mark_gone(uid)

    def _done(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]
        if worker.gone:
            self._mark_gone(worker.uid)
        else:
            self.finished.add(worker.uid)
        if not self.workers:
            self._idle.set()

    def _mark_gone(self, uid: str) -> None:
        """Note in the pod's files when it left the API (log retention counts from then)."""
        task = asyncio.get_running_loop().create_task(self.deps.run_io(self._write_gone, uid, self.deps.clock()))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _write_gone(self, uid: str, now: float) -> None:
        path = layout.state_file(self.deps.pods_root, uid)
        rec = checkpoint.load(path)
        if rec is not None and rec.gone_at is None:
            rec.gone_at = now
            with contextlib.suppress(OSError):
                checkpoint.save(path, rec)

    # -- after the informer synced -----------------------------------------------------------

    async def reap_orphans(self) -> None:
        """Checkpointed pods the API no longer has: stop their processes, keep their logs."""
        orphans, self.recovered = self.recovered, {}
        stops = []
        for rec in orphans.values():
            for name, proc in rec.procs.items():
                handle = self.deps.runtime.adopt(proc.pid, proc.start_ticks, proc.started_at)
                if handle is not None:
                    log.info("pod %s/%s is gone from the API: stopping container %s (pid %d)",
                             rec.namespace, rec.name, name, proc.pid)
                    stops.append(self.deps.runtime.stop(handle, ORPHAN_GRACE))
            rec.procs.clear()
            rec.finished = True
            rec.gone_at = self.deps.clock()
            with contextlib.suppress(OSError):
                checkpoint.save(layout.state_file(self.deps.pods_root, rec.uid), rec)
        await asyncio.gather(*stops, return_exceptions=True)

    # -- queries -------------------------------------------------------------------------------

    def run_active(self, uid: str, container: str, run: int) -> bool:
        worker = self.workers.get(uid)
        return worker is not None and worker.run_active(container, run)

    def worker(self, uid: str) -> PodWorker | None:
        return self.workers.get(uid)

    # -- leaving ---------------------------------------------------------------------------------

    async def drain(self, timeout: float | None = None) -> None:
        """Stop every pod gracefully (node shutdown) and wait for their workers to finish."""
        self.accepting = False
        for worker in list(self.workers.values()):
            worker.stop_for_shutdown()
        with contextlib.suppress(TimeoutError):
            await wait_for(self._idle.wait(), timeout)

    async def detach_all(self) -> None:
        """The agent exits and leaves its pods running."""
        self.accepting = False
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

