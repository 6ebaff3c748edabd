"""An event recorder, as client-go's: controllers report what they did as Event objects.

Recording never blocks the caller and never fails it: events are queued and written in
batches by a background task. Repeats of the same (object, type, reason, message) within ten
minutes bump the count of the existing Event instead of creating another, as Kubernetes'
event correlator does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ketch.api import errors, timeutil
from ketch.api.kinds import info_of
from ketch.v1 import core_pb2

from .clientset import Batch, Client

log = logging.getLogger(__name__)

AGGREGATE_WINDOW = 600.0
MAX_REMEMBERED = 4096


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        self._pending: list[core_pb2.Event] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # (uid, type, reason, message) -> (event namespace, event name, count, first seen)
        self._seen: dict[tuple[str, str, str, str], tuple[str, str, int, float]] = {}

    def event(self, obj: Any, etype: str, reason: str, message: str) -> None:
        """Record an Event about obj (Normal or Warning)."""
        try:
            info = info_of(obj)
        except KeyError:
            return
        md = obj.metadata
        ev = core_pb2.Event(type=etype, reason=reason, message=message)
        ref = ev.involved_object
        ref.kind, ref.api_version, ref.name, ref.namespace, ref.uid = (
            info.kind, info.api_version, md.name, md.namespace, md.uid)
        ref.resource_version = md.resource_version
        ev.metadata.namespace = md.namespace or "default"
        ev.source.component = self.component
        if self.host:
            ev.source.host = self.host
        ev.reporting_component = self.component
        ev.reporting_instance = self.host or self.component
        self._pending.append(ev)
        self._kick()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name=f"events-{self.component}")
        assert self._wakeup is not None
        self._wakeup.set()

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(0.05)  # gather a burst into one batch
            pending, self._pending = self._pending, []
            if pending:
                try:
                    await self._flush(pending)
                except errors.StatusError as err:
                    log.debug("dropping %d events: %s", len(pending), err)
                except Exception:
                    log.exception("writing events failed")

    async def _flush(self, pending: list[core_pb2.Event]) -> None:
        now = time.time()
        stamp = timeutil.format(now)
        batch = Batch()
        new_keys: list[tuple[str, str, str, str] | None] = []
        for ev in pending:
            k = (ev.involved_object.uid, ev.type, ev.reason, ev.message)
            seen = self._seen.get(k)
            if seen is not None and now - seen[3] < AGGREGATE_WINDOW:
                ns, name, count, first = seen
                self._seen[k] = (ns, name, count + 1, first)
                batch.patch("Event", name, {"count": count + 1, "lastTimestamp": stamp}, namespace=ns)
                new_keys.append(None)
                continue
            ev.first_timestamp = ev.last_timestamp = stamp
            ev.event_time = timeutil.format(now, micro=True)
            ev.count = 1
            ev.metadata.name = f"{ev.involved_object.name}.{time.time_ns():x}"
            batch.create(ev)
            new_keys.append(k)
        results = await self.client.batch(batch)
        for k, res, ev in zip(new_keys, results, pending, strict=False):
            if k is not None and res.error is None:
                self._seen[k] = (ev.metadata.namespace, ev.metadata.name, 1, now)
        if len(self._seen) > MAX_REMEMBERED:
            cutoff = now - AGGREGATE_WINDOW
            self._seen = {k: v for k, v in self._seen.items() if v[3] >= cutoff}

    async def flush(self) -> None:
        """Write what is queued now (for shutdown and tests)."""
        pending, self._pending = self._pending, []
        if pending:
            await self._flush(pending)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await self.flush()
        except Exception:
            pass
