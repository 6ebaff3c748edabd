"""Starts the controllers: one shared informer factory, one client, each controller a task.

Controllers are registered by name in CONTROLLERS ("module:Class"); a controller whose module is
not present in this build is skipped with a log line, so the set grows one module at a time.
"""

from __future__ import annotations

import asyncio
import importlib
import logging

from ketch.client.clientset import Client
from ketch.client.informer import InformerFactory

from .base import Controller, ControllerContext
from .options import ControllerOptions

log = logging.getLogger(__name__)

CONTROLLERS: dict[str, str] = {
    "scheduler": "controlplane.scheduler.scheduler:Scheduler",
    "job": "controlplane.controllers.job.controller:JobController",
    "cronjob": "controlplane.controllers.cronjob.controller:CronJobController",
    "daemonset": "controlplane.controllers.daemonset.controller:DaemonSetController",
    "nodelifecycle": "controlplane.controllers.nodelifecycle:NodeLifecycleController",
    "taint-eviction": "controlplane.controllers.tainteviction:TaintEvictionController",
    "garbagecollector": "controlplane.controllers.garbagecollector:GarbageCollector",
    "ttl-after-finished": "controlplane.controllers.ttlafterfinished:TTLAfterFinishedController",
    "podgc": "controlplane.controllers.podgc:PodGCController",
    "namespace": "controlplane.controllers.namespace:NamespaceController",
    "clusterrole-aggregation": "controlplane.controllers.clusterroleaggregation:ClusterRoleAggregationController",
}


def _load(path: str) -> type[Controller] | None:
    module_name, _, cls_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            return None
        raise
    return getattr(module, cls_name)


class ControllerManager:
    def __init__(self, client: Client, options: ControllerOptions, enabled: list[str] | None = None) -> None:
        self.informers = InformerFactory(client)
        self.ctx = ControllerContext(client=client, informers=self.informers, options=options)
        self.controllers: list[Controller] = []
        names = enabled if enabled is not None else list(CONTROLLERS)
        for name in names:
            path = CONTROLLERS.get(name)
            if path is None:
                raise ValueError(f"unknown controller {name!r}; known: {', '.join(CONTROLLERS)}")
            cls = _load(path)
            if cls is None:
                log.info("controller %s is not part of this build", name)
                continue
            self.controllers.append(cls(self.ctx))
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.informers.start()
        for c in self.controllers:
            self._tasks.append(asyncio.create_task(c.run(), name=f"controller-{c.name}"))
        log.info("started controllers: %s", ", ".join(c.name for c in self.controllers) or "none")

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        await self.informers.stop()
        for rec in self.ctx.recorders.values():
            await rec.close()
