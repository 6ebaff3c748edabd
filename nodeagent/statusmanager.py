"""Pod status writes, batched: one Batch of status updates for all pods that changed.

A change that ends something a controller waits for (a container exited, a probe changed
readiness) is urgent: it goes out at once, together with whatever else is dirty, or right after
the write in flight (group commit: a busy agent sends fewer, larger batches). Other changes (a
container started) wait up to `interval` (~50 ms), so a process that exits within it is reported
once, as finished, instead of as running and then finished.

Workers only mark their pod dirty; at flush time the manager asks each dirty pod's worker for its
status, lays it over the latest copy of the pod (the informer's, or the object the last write
returned if that is newer) and sends an update only when the result differs, so nothing is
written when nothing changed and the latest state always wins. Each update is a compare-and-swap
on the resourceVersion: on Conflict the pod is read again and the status re-applied on the next
round; when the API is unreachable everything stays dirty and is retried with back-off.

The final grace-0 deletes of pods the agent has stopped ride in the same batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ketch.api import errors
from ketch.client.cache import LastWrites
from ketch.client.clientset import Batch, Client
from ketch.v1 import core_pb2

from .status import merge_status, status_changed

log = logging.getLogger(__name__)

MAX_OPS = 500
StatusFn = Callable[[], core_pb2.PodStatus | None]


class StatusManager:
    def __init__(self, client: Client, cached: Callable[[str], core_pb2.Pod | None],
                 interval: float = 0.05, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.cached = cached  # uid -> the informer's copy
        self.interval = interval
        self.clock = clock
        self._providers: dict[str, StatusFn] = {}
        # uid -> loop time by which its status must be written.
        self._dirty: dict[str, float] = {}
        self._written: LastWrites[core_pb2.Pod] = LastWrites()  # by pod uid
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        # uid -> (name, namespace, done) of pods to delete with grace 0 once stopped.
        self._deletes: dict[str, tuple[str, str, asyncio.Future[None]]] = {}
        self._wake = asyncio.Event()
        # Loop time by which the next batch must go (None: nothing is dirty).
        self._due: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.writes = 0
        self.batches = 0

    # -- used by workers -----------------------------------------------------------------------

    def register(self, uid: str, provider: StatusFn) -> None:
        self._providers[uid] = provider

    def unregister(self, uid: str) -> None:
        self._providers.pop(uid, None)
        self._dirty.pop(uid, None)
        self._written.forget(uid)
        self._resolve(uid)

    def mark(self, uid: str, urgent: bool = False) -> None:
        due = self._request(urgent)
        if due < self._dirty.get(uid, due + 1):
            self._dirty[uid] = due

    def _request(self, urgent: bool) -> float:
        due = asyncio.get_running_loop().time() + (0.0 if urgent else self.interval)
        self._due_by(due)
        return due

    def _due_by(self, due: float) -> None:
        if self._due is None or due < self._due:
            self._due = due
            self._wake.set()

    async def flushed(self, uid: str) -> None:
        """Return once the pod's current status is in the API (or the pod is gone)."""
        self.mark(uid, urgent=True)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(uid, []).append(fut)
        await fut

    async def delete(self, pod: core_pb2.Pod) -> None:
        """Remove a stopped pod from the API (grace 0, UID precondition); returns once done or moot."""
        uid = pod.metadata.uid
        entry = self._deletes.get(uid)
        if entry is None:
            entry = (pod.metadata.name, pod.metadata.namespace, asyncio.get_running_loop().create_future())
            self._deletes[uid] = entry
        self._request(urgent=True)
        await asyncio.shield(entry[2])

    def latest(self, uid: str) -> core_pb2.Pod | None:
        """The cached pod, or our last status write of it while the cache has not caught up."""
        return self._written.latest(uid, self.cached(uid))

    def forget(self, uid: str) -> None:
        """The pod is gone from the API."""
        self._written.forget(uid)
        self._dirty.pop(uid, None)
        self._resolve(uid)
        self._deleted(uid)

    def _deleted(self, uid: str) -> None:
        entry = self._deletes.pop(uid, None)
        if entry is not None and not entry[2].done():
            entry[2].set_result(None)

    # -- running -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="pod-status")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _resolve(self, uid: str) -> None:
        for fut in self._waiters.pop(uid, []):
            if not fut.done():
                fut.set_result(None)

    async def _wait_until_due(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            delay = None if self._due is None else self._due - loop.time()
            if delay is not None and delay <= 0:
                break
            self._wake.clear()
            # A mark meanwhile (an urgent one moves the due time up) wakes us to look again.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
        self._due = None

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            await self._wait_until_due()
            try:
                await self.flush()
                backoff = 0.1
            except errors.StatusError as err:
                log.info("writing pod statuses failed (%s); retrying in %.1fs", err, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._request(urgent=True)
            except Exception:
                log.exception("writing pod statuses failed")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._request(urgent=True)

    def _collect(self) -> tuple[Batch, list[str]]:
        batch = Batch()
        uids: list[str] = []
        now = self.clock()
        for uid, (name, namespace, _) in list(self._deletes.items())[:MAX_OPS]:
            batch.delete("Pod", name, namespace, grace_period_seconds=0, uid=uid)
            uids.append("delete:" + uid)
        loop_now = asyncio.get_running_loop().time()
        for uid, due in list(self._dirty.items()):
            if due > loop_now:
                self._due_by(due)  # not yet: it may still change (a process that exits at once)
                continue
            if len(batch) >= MAX_OPS:
                self._request(urgent=True)
                break
            del self._dirty[uid]
            provider = self._providers.get(uid)
            pod = self.latest(uid)
            if provider is None or pod is None:
                self._resolve(uid)
                continue
            computed = provider()
            if computed is None:
                self._resolve(uid)
                continue
            merged = merge_status(pod, computed, now)
            if not status_changed(pod, merged):
                self._resolve(uid)
                continue
            out = core_pb2.Pod(api_version="v1", kind="Pod")
            md = out.metadata
            md.name, md.namespace, md.uid = pod.metadata.name, pod.metadata.namespace, pod.metadata.uid
            md.resource_version = pod.metadata.resource_version
            out.status.CopyFrom(merged)
            batch.update_status(out)
            uids.append(uid)
        return batch, uids

    async def flush(self) -> None:
        batch, uids = self._collect()
        if not uids:
            return
        try:
            results = await self.client.batch(batch)
        except errors.StatusError:
            for uid in uids:
                self._dirty[uid] = 0.0
            raise
        self.batches += 1
        refetch: list[str] = []
        for uid, res in zip(uids, results, strict=False):
            if uid.startswith("delete:"):
                uid = uid[len("delete:"):]
                if res.error is None or isinstance(res.error, errors.NotFound | errors.Conflict):
                    self._deleted(uid)
                else:
                    log.info("pod %s: final delete failed (%s); retrying", uid, res.error)
                    self._request(urgent=False)
                continue
            if res.error is None:
                self.writes += 1
                if isinstance(res.object, core_pb2.Pod):
                    self._written.remember(uid, res.object)
                if uid not in self._dirty:
                    self._resolve(uid)
            elif isinstance(res.error, errors.Conflict):
                refetch.append(uid)
            elif isinstance(res.error, errors.NotFound):
                self.forget(uid)
            else:
                log.warning("pod %s: status update refused: %s", uid, res.error)
                self._resolve(uid)
        for uid in refetch:
            await self._refetch(uid)

    async def _refetch(self, uid: str) -> None:
        pod = self.latest(uid)
        if pod is None:
            return
        try:
            fresh = await self.client.get("Pod", pod.metadata.name, pod.metadata.namespace)
        except errors.NotFound:
            self.forget(uid)
            return
        except errors.StatusError:
            self._dirty[uid] = 0.0
            raise
        if fresh.metadata.uid != uid:
            self.forget(uid)
            return
        self._written.remember(uid, fresh)
        self.mark(uid, urgent=True)
