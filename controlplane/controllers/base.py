"""What every controller shares: the worker loop over a rate-limited work queue.

A controller's handlers only enqueue keys; `sync(key)` reads the informer caches, computes and
writes. The loop here is client-go's processNextWorkItem: on success the key's back-off is
forgotten; on error it is re-queued rate-limited; NotFound counts as done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controlplane import metrics  # noqa: F401  (installs the workqueue_* metrics provider)
from ketch.api import errors
from ketch.client.clientset import Client
from ketch.client.clock import Clock, RealClock
from ketch.client.events import EventRecorder
from ketch.client.informer import InformerFactory
from ketch.client.workqueue import RateLimiter, WorkQueue

from .options import ControllerOptions

log = logging.getLogger(__name__)


@dataclass
class ControllerContext:
    client: Client
    informers: InformerFactory
    options: ControllerOptions = field(default_factory=ControllerOptions)
    clock: Clock = field(default_factory=RealClock)
    recorders: dict[str, EventRecorder] = field(default_factory=dict)

    def recorder(self, component: str) -> EventRecorder:
        rec = self.recorders.get(component)
        if rec is None:
            rec = EventRecorder(self.client, component)
            self.recorders[component] = rec
        return rec


class Controller:
    """Subclasses set name, build informers and handlers in __init__, and implement sync."""

    name = "controller"
    # Its work queue's name in the workqueue_* metrics: kube-controller-manager's where it has one.
    queue_name = ""
    workers = 1

    def __init__(self, ctx: ControllerContext, rate_limiter: RateLimiter | None = None) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.clock = ctx.clock
        self.queue: WorkQueue[str] = WorkQueue(self.queue_name or self.name, rate_limiter)
        self.sync_handler: Callable[[str], Any] = self.sync

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    async def run(self) -> None:
        """Wait for the caches, then work until cancelled."""
        await self.ctx.informers.wait_for_sync()
        workers = [asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}")
                   for i in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            self.queue.shutdown()
            for w in workers:
                w.cancel()
            # Awaited, not just cancelled: when run() ends no worker is still mid-sync (a leader
            # that lost its lease must not write after its controllers are reported stopped).
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return
            try:
                await self.sync_handler(key)
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except errors.NotFound:
                self.queue.forget(key)
            except errors.Conflict as err:
                log.debug("%s: %s: conflict, requeueing: %s", self.name, key, err)
                self.queue.add_rate_limited(key)
            except Exception as err:
                if isinstance(err, errors.StatusError):
                    log.info("%s: syncing %s failed, requeueing: %s", self.name, key, err)
                else:
                    log.exception("%s: syncing %s failed, requeueing", self.name, key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)
